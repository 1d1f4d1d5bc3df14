"""whisper-lora prepare: a manifest from a downloaded corpus layout, then checked."""

from __future__ import annotations

import argparse
from pathlib import Path

from whisper_lora.cli import check_data
from whisper_lora.data import prepare
from whisper_lora.data.prepare import import_corpus, portable, write_manifest

HELP = "write a manifest from Common Voice, AISHELL-1, LibriSpeech, Kaldi, audiofolder or a transcribed folder"


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    options = {"language": args.language, "text_column": args.text_column, "allow_empty_text": args.allow_empty_text}
    found = import_corpus(args.format, args.source, split=args.split, **options)
    write_manifest(portable(found.rows, Path(args.output), args.lowercase), args.output)
    print(f"prepare: {len(found.rows)} rows from {args.source} (--format {args.format}) written to {args.output}")
    for line in found.notes[:5] + (["..."] if len(found.notes) > 5 else []):
        print(f"  note: {line}")
    for line in found.problems:
        print(f"  skipped {line}")
    if found.problems:
        print(f"prepare: {len(found.problems)} entries skipped, each named above")
    checked = 0 if args.no_check else check_data.run(args_for_check(args))
    return 1 if found.problems or checked else 0


def args_for_check(args: argparse.Namespace) -> argparse.Namespace:
    """prepare's flags as check-data's, checking the manifest it wrote."""
    return argparse.Namespace(**{**vars(args), "files": [args.output], "json": None, "windows": False})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument("source", help="the corpus folder")
    parser.add_argument("--format", required=True, choices=sorted(prepare.FORMATS), help="the corpus layout")
    parser.add_argument("--output", required=True, help="the manifest to write (.json, or .jsonl for JSON Lines)")
    parser.add_argument(
        "--split", default="train", help="commonvoice: SPLIT.tsv; aishell: wav/SPLIT; audiofolder: SPLIT/ (train)"
    )
    parser.add_argument(
        "--language", default=None, help="language code for every row (kaldi, audiofolder, folder carry none)"
    )
    parser.add_argument("--text_column", default=None, help="audiofolder: the text column (default: found by name)")
    parser.add_argument("--lowercase", action="store_true", help="lowercase the text (LibriSpeech is upper case)")
    parser.add_argument("--no_check", action="store_true", help="do not decode every row's audio afterwards")
    check_data.add_check_flags(parser)

"""whisper-lora check-data: every row's audio and text checked, with a report."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict

from whisper_lora.cli.common import positive_int
from whisper_lora.core.files import write_json_atomic
from whisper_lora.data.manifests import check_manifests, format_report

HELP = "check manifests: every row's audio and text, with a report"


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    from whisper_lora.convert.hf import load_tokenizer

    tokenizer = load_tokenizer(args.model_name_or_path, cache_dir=args.cache_dir)
    report = check_manifests(
        args.files,
        tokenizer,
        max_seconds=args.max_duration,
        workers=args.decode_threads,
        allow_empty_text=args.allow_empty_text,
    )
    print(format_report(report, windows=args.windows))
    if args.json:
        write_json_atomic(
            args.json,
            {
                "ok": [{**asdict(row), "seconds": seconds} for row, seconds in report.ok],
                "problems": [asdict(problem) for problem in report.problems],
                "cue_problems": [asdict(problem) for problem in report.cue_problems],
                "total_seconds": report.total_seconds,
            },
        )
    return 1 if report.problems or report.cue_problems else 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument(
        "files",
        nargs="+",
        help="JSON or JSONL manifests of {audio_path, text[, language, start, end]} or {audio_path, subtitles|sentences}",
    )
    add_check_flags(parser)
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument(
        "--windows", action="store_true", help="list every training window planned from each recording's segments"
    )


def add_check_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model_name_or_path",
        "--model_path",
        default=None,
        help="model whose tokenizer counts label tokens (default: base)",
    )
    parser.add_argument("--cache_dir", default=None, help="Hugging Face cache folder for hub models")
    parser.add_argument("--max_duration", type=float, default=30.0, help="longest usable row in seconds (default: 30)")
    parser.add_argument(
        "--allow_empty_text",
        action="store_true",
        help='accept rows with empty text as audio without speech (else only rows with "no_speech": true)',
    )
    parser.add_argument(
        "--decode_threads",
        "--workers",  # its first name, which serve's --workers (transcriptions at once) made ambiguous
        type=positive_int,
        default=min(4, os.cpu_count() or 1),
        help="audio files decoded at once (default: up to 4)",
    )

"""whisper-lora export: merge an adapter and write transformers, CTranslate2 or whisper.cpp files, with a parity check."""

from __future__ import annotations

import argparse
import functools
import importlib.util
import shutil
import sys
import tempfile
from pathlib import Path

from whisper_lora.core.formats import EXPORT_FORMATS, GGML_TYPES, QUANTIZATIONS
from whisper_lora.infer.parity import agreement, greedy_reader, parity, whispercpp_reader

HELP = "merge the adapter; save it for transformers, CTranslate2 or whisper.cpp"


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    from whisper_lora.convert.export import export_model

    kinds = tuple(kind.strip() for kind in args.ggml_types.split(",") if kind.strip())
    paths = export_model(args.model_path, args.output_dir, args.format, args.quantization, kinds)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if not args.no_parity:
        _export_parity(args.model_path, paths)
    return 0


def _export_parity(model_path: str, paths: dict) -> None:
    """Print how often each export reads the smoke clips as the merged transformers model does."""

    from whisper_lora.demo.run import SMOKE_SENTENCES, speak

    ggml = {kind: path for kind, path in paths.items() if kind.startswith("ggml")}
    if ggml and importlib.util.find_spec("pywhispercpp") is None:
        print("GGML parity check skipped: pywhispercpp is not installed (whisper-lora[ggml])", file=sys.stderr)
        ggml = {}
    if "ct2" not in paths and not ggml:
        return
    if shutil.which("espeak-ng") is None:
        print("parity check skipped: espeak-ng is not installed", file=sys.stderr)
        return
    reference = str(paths.get("hf", model_path))
    with tempfile.TemporaryDirectory() as folder:
        clips = [(str(speak(text, Path(folder) / f"{lang}.wav", voice)), lang) for lang, voice, text in SMOKE_SENTENCES]
        if "ct2" in paths:
            share = parity(reference, paths["ct2"], clips)
            print(f"parity: the transformers and CTranslate2 models agree on {share:.0%} of {len(clips)} clips")
        if ggml:
            read = functools.cache(greedy_reader(reference, "transformers"))  # one reading for every GGML file
        for kind, path in ggml.items():
            share = agreement(read, whispercpp_reader(path), clips)
            print(f"parity: the transformers model and whisper.cpp ({kind}) agree on {share:.0%} of {len(clips)} clips")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument("model_path", help="training output_dir (adapter), or any model name")
    parser.add_argument("--output_dir", required=True, help="new folder for the exported model(s)")
    parser.add_argument(
        "--format",
        default="both",
        choices=EXPORT_FORMATS,
        help="hf, ct2, both (hf/ and ct2/ subfolders), or ggml (whisper.cpp files)",
    )
    parser.add_argument("--quantization", default="int8", choices=QUANTIZATIONS, help="CTranslate2 weight type")
    parser.add_argument(
        "--ggml_types",
        default=",".join(GGML_TYPES),
        help=f"with --format ggml: the whisper.cpp files to write, comma-separated (default: {','.join(GGML_TYPES)})",
    )
    parser.add_argument("--no_parity", action="store_true", help="skip the transcript comparison of the two models")

"""whisper-lora demo: the end-to-end demo, or a smoke test of the embedded model."""

from __future__ import annotations

import argparse

HELP = "make an espeak-ng corpus, fine-tune the base model on it, and compare CER/WER before and after"


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    from whisper_lora.demo.run import run_demo, run_smoke

    if args.smoke:
        run_smoke(args.model_name_or_path)
    else:
        run_demo(args.workdir, args.model_name_or_path, args.epochs)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument(
        "--model_name_or_path", "--model_path", default=None, help="base model (default: the embedded base)"
    )
    parser.add_argument("--workdir", default="demo_output", help="where the corpus and the fine-tuned model go")
    parser.add_argument("--epochs", type=float, default=None, help="training epochs (default: train's, 3)")
    parser.add_argument("--smoke", action="store_true", help="only transcribe two spoken sentences, no training")

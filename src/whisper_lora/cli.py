"""The whisper-lora command line: argument parsing only, each subcommand handing off to its module."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings

from . import __version__
from .errors import TrainingInterrupted, UserError

EXIT_BAD_INPUT = 2


def _check_data(args: argparse.Namespace) -> int:
    from .data import check_manifests, format_report
    from .models import load_tokenizer

    tokenizer = load_tokenizer(args.model_name_or_path, cache_dir=args.cache_dir)
    report = check_manifests(args.files, tokenizer, max_seconds=args.max_duration, workers=args.workers)
    print(format_report(report))
    if args.json:
        from .files import write_json_atomic

        write_json_atomic(args.json, {
            "ok": [{**row.__dict__, "seconds": seconds} for row, seconds in report.ok],
            "problems": [problem.__dict__ for problem in report.problems],
            "total_seconds": report.total_seconds,
        })  # fmt: skip
    return 1 if report.problems else 0


def _add_check_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", help="JSON or JSONL manifests of {audio_path, text[, language, start, end]}")
    parser.add_argument("--model_name_or_path", default=None, help="model whose tokenizer counts label tokens (default: base)")
    parser.add_argument("--cache_dir", default=None, help="Hugging Face cache folder for hub models")
    parser.add_argument("--max_duration", type=float, default=30.0, help="longest usable row in seconds (default: 30)")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="parallel audio decoders")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")


def _models(args: argparse.Namespace) -> int:
    from .models import EMBEDDED, EMBEDDED_ALIASES, cache_root, embedded_hf_dir

    print(f"cache: {cache_root()}  (set WHISPER_LORA_HOME to move it)")
    for short, embedded in EMBEDDED.items():
        names = ", ".join(alias for alias, target in EMBEDDED_ALIASES.items() if target == short)
        print(f"  {names:<28} embedded {embedded.name}, from pip packages: {embedded.pip_names()}")
    print(f"  {'any other name':<28} a local folder (transformers or CTranslate2) or a hub id such as openai/whisper-small")
    for name in args.prepare or []:
        print(f"prepared {name}: {embedded_hf_dir(name)}")
    return 0


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepare", nargs="*", choices=sorted({"base", "tiny.en"}), help="convert embedded models now")


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo, run_smoke

    if args.smoke:
        run_smoke(args.model_name_or_path)
    else:
        run_demo(args.workdir, args.model_name_or_path, args.epochs)
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model_name_or_path", default=None, help="base model (default: the embedded base)")
    parser.add_argument("--workdir", default="demo_output", help="where the corpus and the fine-tuned model go")
    parser.add_argument("--epochs", type=float, default=2.0, help="training epochs (default: 2)")
    parser.add_argument("--smoke", action="store_true", help="only transcribe two spoken sentences, no training")


_TYPES = {"str": str, "int": int, "float": float}


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls) -> None:
    """One --flag per dataclass field, typed from its annotation, with the field's help text."""
    for spec in dataclasses.fields(cls):
        name, help_text = f"--{spec.name}", spec.metadata.get("help")
        if spec.type == "bool":
            parser.add_argument(name, action="store_true", help=help_text)
            continue
        base = spec.type.split(" |")[0].removeprefix("list[").removesuffix("]")
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        default = None if required else spec.default
        parser.add_argument(name, type=_TYPES[base], default=default, required=required,
                            nargs=spec.metadata.get("nargs"), help=help_text)  # fmt: skip


def _train(args: argparse.Namespace) -> int:
    from .train import TrainConfig, train

    config = TrainConfig(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(TrainConfig)})
    metrics = train(config)
    if metrics:
        best = metrics["best"]
        print(f"done: adapter, processor and metrics.json in {config.output_dir}")
        if best.get("step") is not None:
            print(f"best {metrics['metric'].upper()} {best[metrics['metric']]:.2%} at step {best['step']}")
    return 0


def _add_train(parser: argparse.ArgumentParser) -> None:
    from .train import TrainConfig

    add_dataclass_arguments(parser, TrainConfig)


COMMANDS = {
    "train": (_add_train, _train, "fine-tune Whisper with LoRA on JSON/JSONL manifests (whisper_lora_finetune.py)"),
    "check-data": (_add_check_data, _check_data, "check manifests: every row's audio and text, with a report"),
    "models": (_add_models, _models, "list the model names and the cache; convert embedded models ahead of time"),
    "demo": (_add_demo, _demo, "make an espeak-ng corpus, fine-tune the base model on it, and compare CER/WER before and after"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per entry of COMMANDS."""
    parser = argparse.ArgumentParser(prog="whisper-lora", description="Fine-tune Whisper with LoRA and use the result.")
    parser.add_argument("--version", action="version", version=f"whisper-lora {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        add_arguments(sub)
        sub.set_defaults(run=run)
    return parser


def _quiet_transformers() -> None:
    # Weight-loading bars and transformers' notes about its own internals are noise on our command line.
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; known bad input becomes one 'error:' line and exit status 2, never a traceback."""
    args = build_parser().parse_args(argv)
    _quiet_transformers()
    try:
        return args.run(args)
    except TrainingInterrupted as error:
        print(str(error), file=sys.stderr)
        return 130
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

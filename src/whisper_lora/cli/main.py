"""The whisper-lora command line: one module per subcommand, each parsing its flags and handing off to its layer."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings

from huggingface_hub.utils import disable_progress_bars

from whisper_lora import __version__
from whisper_lora.cli import (
    check_data,
    demo,
    evaluate,
    export,
    flags,
    models,
    prepare,
    serve,
    stream,
    train,
    transcribe,
)
from whisper_lora.cli.common import EXIT_BAD_INPUT
from whisper_lora.core.errors import TrainingInterrupted, UserError

# Each command's module has HELP, add_arguments(parser) (or None), run(args) and, where its flags are dataclass
# fields, fields(); a dataclass is imported only for the command that runs, so transcribe never loads torch.
COMMANDS = {
    "export": export,
    "transcribe": transcribe,
    "stream": stream,
    "serve": serve,
    "evaluate": evaluate,
    "train": train,
    "check-data": check_data,
    "prepare": prepare,
    "models": models,
    "demo": demo,
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with a subparser per entry of COMMANDS; only `command`'s gets its flags (all when None)."""
    parser = argparse.ArgumentParser(prog="whisper-lora", description="Fine-tune Whisper with LoRA and use the result.")
    parser.add_argument("--version", action="version", version=f"whisper-lora {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        sub.set_defaults(run=module.run)
        if command not in (None, name):
            continue
        for cls in module.fields() if hasattr(module, "fields") else ():
            flags.add_dataclass(sub, cls)
        if module.add_arguments is not None:
            module.add_arguments(sub)
    return parser


def _quiet_transformers() -> None:
    # Weight-loading bars and transformers' notes about its own internals are noise on our command line.
    # The variable reaches transformers when it is first imported; the hub's bars are switched off here.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    disable_progress_bars()
    if "transformers" in sys.modules:  # imported already (the train command's flags need it)
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes, so that swapping sys.stderr (as tests do) is followed."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _log_to_stderr() -> None:
    # The library's notes (exports, forgetting warnings) go to stderr, so stdout holds only transcripts.
    package = logging.getLogger("whisper_lora")
    if not any(isinstance(handler, _StderrHandler) for handler in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; known bad input becomes one 'error:' line and exit status 2, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else ""  # without one, argparse only prints help or refuses
    args = build_parser(command).parse_args(argv)
    _quiet_transformers()
    _log_to_stderr()
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

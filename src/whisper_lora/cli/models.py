"""whisper-lora models: the model names, the cache, and embedded models converted ahead of time."""

from __future__ import annotations

import argparse

from whisper_lora.core.models import EMBEDDED, EMBEDDED_ALIASES, cache_root

HELP = "list the model names and the cache; convert embedded models ahead of time"


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    from whisper_lora.convert.hf import embedded_hf_dir

    print(f"cache: {cache_root()}  (set WHISPER_LORA_HOME to move it)")
    for short, embedded in EMBEDDED.items():
        names = ", ".join(alias for alias, target in EMBEDDED_ALIASES.items() if target == short)
        print(f"  {names:<28} embedded {embedded.name}, from pip packages: {embedded.pip_names()}")
    print(
        f"  {'any other name':<28} a local folder (transformers or CTranslate2) or a hub id such as openai/whisper-small"
    )
    for name in args.prepare or []:
        print(f"prepared {name}: {embedded_hf_dir(name)}")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument("--prepare", nargs="*", choices=sorted({"base", "tiny.en"}), help="convert embedded models now")

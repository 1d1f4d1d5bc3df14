"""Seed-compatible training entry point: the same as `whisper-lora train`."""

import sys

from whisper_lora.cli.main import main

sys.exit(main(["train", *sys.argv[1:]]))

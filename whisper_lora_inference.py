"""Seed-compatible inference entry point: the same as `whisper-lora transcribe`."""

import sys

from whisper_lora.cli.main import main

sys.exit(main(["transcribe", *sys.argv[1:]]))

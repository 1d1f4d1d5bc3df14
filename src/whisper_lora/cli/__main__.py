"""python -m whisper_lora.cli: the whisper-lora command."""

from whisper_lora.cli.main import main

raise SystemExit(main())

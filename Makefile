# Shortcuts for the README's commands.
VENV := whisper_lora_env

.PHONY: setup demo test
setup:
	./setup_environment.sh --dev
demo:
	./setup_environment.sh && $(VENV)/bin/whisper-lora demo
test:
	./setup_environment.sh --dev && $(VENV)/bin/python -m pytest

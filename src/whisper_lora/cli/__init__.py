"""The whisper-lora command line."""

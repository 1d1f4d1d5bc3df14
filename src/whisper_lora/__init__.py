"""whisper-lora: fine-tune OpenAI Whisper with LoRA on your own audio, then transcribe, evaluate and ship it."""

__version__ = "0.1.0"

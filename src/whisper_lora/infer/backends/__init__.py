"""Decoders behind the Transcriber: CTranslate2 (faster-whisper), transformers and whisper.cpp."""

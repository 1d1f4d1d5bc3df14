"""Model formats: loading transformers Whisper and adapters, CTranslate2 and GGML conversion, export."""

"""The formats a model can be exported to, named once for the command line and the exporter."""

from __future__ import annotations

EXPORT_FORMATS = ("hf", "ct2", "both", "ggml")
GGML_TYPES = ("f16", "q8_0", "q5_0")
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int16", "float16", "bfloat16", "float32")
GGML_MAGIC = 0x67676D6C  # "ggml": the first four bytes of a whisper.cpp model file, little-endian

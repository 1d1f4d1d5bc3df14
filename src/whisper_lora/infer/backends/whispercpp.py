"""whisper.cpp through pywhispercpp: greedy text from a GGML export, to hold it against the other backends."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.core.budget import max_new_tokens
from whisper_lora.core.extras import require


class WhisperCpp:
    """A whisper.cpp model file loaded once, decoding 16 kHz clips greedily with no fallback and no context."""

    def __init__(self, path: str | Path, threads: int | None = None):
        self.model = require("pywhispercpp.model", "checking a GGML file").Model(
            str(path),
            redirect_whispercpp_logs_to=None,  # whisper.cpp's load log is long; errors still raise
            print_progress=False,
            n_threads=threads or min(4, os.cpu_count() or 1),
        )

    def text(self, samples: np.ndarray, language: str | None) -> str:
        """The transcript of one clip, its segments joined."""
        segments = self.model.transcribe(
            samples.astype(np.float32),
            language=language or "",
            detect_language=language is None,
            temperature_inc=0.0,
            max_tokens=max_new_tokens(len(samples) / SAMPLE_RATE, language),  # per segment: a loop stops there
        )
        return " ".join(segment.text.strip() for segment in segments).strip()

"""Transcribe audio with a transformers Whisper model (clips up to 30 s)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .audio import CHUNK_SECONDS, SAMPLE_RATE, decode_audio


def transcribe_clip(
    model,
    processor,
    audio: str | Path | np.ndarray,
    language: str | None = None,
    task: str = "transcribe",
    num_beams: int = 1,
) -> str:
    """Text of one clip of at most 30 s, a path or 16 kHz mono samples; language None means detect it."""
    samples = decode_audio(audio) if isinstance(audio, (str, Path)) else audio
    if len(samples) > CHUNK_SECONDS * SAMPLE_RATE:
        raise ValueError(f"clip is {len(samples) / SAMPLE_RATE:.1f} s; transcribe_clip takes at most {CHUNK_SECONDS} s")
    features = processor.feature_extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    options = dict(task=task, num_beams=num_beams)
    if model.generation_config.is_multilingual is False:
        options = dict(num_beams=num_beams)  # English-only models take no language or task token
    elif language:
        options["language"] = language
    with torch.inference_mode():
        tokens = model.generate(features.to(model.device, model.dtype), **options)
    return processor.batch_decode(tokens, skip_special_tokens=True)[0].strip()

"""Budgets: no decode generates more tokens than its audio can hold, and a short window encodes only what it needs."""

from __future__ import annotations

import math

from whisper_lora.core.languages import tokens_per_second

MAX_TARGET_POSITIONS = 448  # Whisper's decoder length: prompt and generated tokens together
START_TOKENS = 4  # <|startoftranscript|>, language, task, and the first timestamp
MARGIN = 16  # the end of text and a few timestamps, however short the clip
CONDITIONED_PROMPT = 1 + 223 + 3  # <|startofprev|>, the previous text as OpenAI trims it, the start sequence


def max_new_tokens(
    seconds: float, language: str | None, prompt_tokens: int = START_TOKENS, limit: int = MAX_TARGET_POSITIONS
) -> int:
    """New tokens allowed for a window of `seconds` of audio, within what the decoder's `limit` leaves after the prompt."""
    wanted = math.ceil(tokens_per_second(language) * min(seconds, 30.0)) + MARGIN
    return max(1, min(wanted, limit - prompt_tokens))


ENCODER_POSITIONS = 1500  # Whisper's encoder length: 30 s at 50 positions a second
SAMPLES_PER_POSITION = 320  # 16 kHz samples per encoder position (two 10 ms mel frames)
SHORT_WINDOW_MARGIN = 64  # positions (1.28 s) past the audio, the most whisper-acft trains and decodes with


def short_window_positions(samples: int, margin: int = SHORT_WINDOW_MARGIN) -> int | None:
    """Encoder positions for a short window over that many 16 kHz samples; None when it would not be shorter than 30 s."""
    positions = math.ceil(samples / SAMPLES_PER_POSITION) + margin
    return positions if positions < ENCODER_POSITIONS else None

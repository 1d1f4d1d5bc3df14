"""The token budget: no decode generates more tokens than its audio can hold, so a looping one stops early."""

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

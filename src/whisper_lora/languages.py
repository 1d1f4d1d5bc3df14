"""Per-language traits shared by training labels, transcript joining and scoring: one table, used everywhere."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Traits:
    """How a language is written, and how its transcripts are scored by default."""

    spaces: bool = True  # words are separated by spaces (Whisper then writes one before the first word too)
    metric: str = "wer"  # the default error rate: CER where words are not a reliable unit
    chinese: bool = False  # traditional characters fold to simplified before scoring


TRAITS = {
    "zh": Traits(spaces=False, metric="cer", chinese=True),
    "yue": Traits(spaces=False, metric="cer", chinese=True),
    "ja": Traits(spaces=False, metric="cer"),
    "ko": Traits(spaces=True, metric="cer"),  # Korean separates words with spaces, but is scored by character
}


def traits(language: str | None) -> Traits:
    """The traits of a Whisper language code; those of space-separated, word-scored languages otherwise."""
    return TRAITS.get(language or "", Traits())

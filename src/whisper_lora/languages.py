"""Per-language traits shared by training labels, transcript joining and scoring: one table, used everywhere."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Traits:
    """How a language is written, and how its transcripts are scored by default."""

    spaces: bool = True  # words are separated by spaces (Whisper then writes one before the first word too)
    metric: str = "wer"  # the default error rate: CER where words are not a reliable unit
    chinese: bool = False  # traditional characters fold to simplified before scoring
    # Twice the fastest recorded speech measured (10 tokens/s, French, timestamps included); scripts that
    # Whisper's byte-level BPE spells in several tokens per syllable get twice that again, unmeasured.
    tokens_per_second: float = 20.0


TRAITS = {
    "zh": Traits(spaces=False, metric="cer", chinese=True),
    "yue": Traits(spaces=False, metric="cer", chinese=True),
    "ja": Traits(spaces=False, metric="cer"),
    "ko": Traits(spaces=True, metric="cer"),  # Korean separates words with spaces, but is scored by character
}
_MANY_TOKENS = Traits(tokens_per_second=40.0)
TRAITS |= dict.fromkeys(
    ("am", "ar", "bn", "bo", "fa", "gu", "he", "hi", "hy", "ka", "km", "kn", "lo", "ml", "mr", "my", "ne", "pa", "ps")
    + ("sd", "si", "ta", "te", "th", "ur", "yi"),
    _MANY_TOKENS,
)


def traits(language: str | None) -> Traits:
    """The traits of a Whisper language code; those of space-separated, word-scored languages otherwise."""
    return TRAITS.get(language or "", Traits())


def tokens_per_second(language: str | None) -> float:
    """The most tokens a second of speech in the language can need; unknown languages get the widest rate."""
    return traits(language).tokens_per_second if language else _MANY_TOKENS.tokens_per_second

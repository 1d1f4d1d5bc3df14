"""The guard every decoding path passes: a transcript must reach the end of the speech in its audio."""

from __future__ import annotations

import dataclasses
import unicodedata
from collections.abc import Callable

import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.core.languages import traits

SHORTFALL_SECONDS = 1.0  # a transcript ending this much before the speech does has dropped words
RESUME_BACKOFF_SECONDS = 0.2  # decode the rest from a little before the last segment's end


def speech_end(samples: np.ndarray) -> float:
    """Where the last speech in 16 kHz samples ends, in seconds, by faster-whisper's Silero VAD; 0.0 for none."""
    if len(samples) == 0:
        return 0.0
    spans = get_speech_timestamps(samples, VadOptions(min_silence_duration_ms=300, speech_pad_ms=0))
    return spans[-1]["end"] / SAMPLE_RATE if spans else 0.0


def covered_until(segments) -> float:
    """The end of the last segment, in seconds; 0.0 for none."""
    return segments[-1].end if segments else 0.0


def falls_short(segments, samples: np.ndarray) -> str | None:
    """Why segments cover clearly less than the speech in samples, or None when they reach its end."""
    reached, speech = covered_until(segments), speech_end(samples)
    if reached < speech - SHORTFALL_SECONDS:
        return f"the text ended at {reached:.1f} s but the speech goes on to {speech:.1f} s"
    return None


def decode_rest(transcript, samples: np.ndarray, decode: Callable, join: Callable) -> None:
    """Decode the speech after the transcript's last segment with decode(samples) and append it, in place.

    For paths that decode a clip the full way already: a clip whose text stopped early is decoded on
    from its last segment, and the transcript says so in `redecoded`.
    """
    reason = falls_short(transcript.segments, samples) if transcript.segments else None
    if reason is None:
        return
    covered = covered_until(transcript.segments)
    offset = max(covered - RESUME_BACKOFF_SECONDS, 0.0)
    rest = decode(samples[int(offset * SAMPLE_RATE) :])
    said, spaces = join(transcript.segments, transcript.language), traits(transcript.language).spaces
    later = [shift(s, offset) for s in drop_repeated_start(said, rest.segments, spaces)]
    later = [dataclasses.replace(s, start=max(s.start, covered), end=max(s.end, covered)) for s in later]
    transcript.segments = [*transcript.segments, *later]
    transcript.text = join(transcript.segments, transcript.language)
    transcript.redecoded = reason


def flag_unheard(transcript, samples: np.ndarray) -> None:
    """Say in `unheard` when a transcript has no text although its audio holds more than a second of speech."""
    if transcript.segments or transcript.error:
        return
    end = speech_end(samples)
    if end > SHORTFALL_SECONDS:
        transcript.unheard = f"no text, though the voice detector hears speech up to {end:.1f} s"


def _folded(text: str) -> str:
    return "".join(ch for ch in text.casefold() if not unicodedata.category(ch).startswith(("P", "S", "Z")))


def drop_repeated_start(said: str, segments: list, spaces: bool) -> list:
    """The segments without the words at their start that repeat the end of what was said already.

    Decoding on from a little before the last segment's end, or from a segment that closed too early,
    hears again words already transcribed. As in ufal/whisper_streaming's hypothesis buffer, the longest
    run at the start of the new text that equals the end of the old one is dropped (words where the
    language spaces them, characters otherwise; case and punctuation do not count).
    """
    if not segments or not said:
        return segments
    first = segments[0]
    split = str.split if spaces else list
    before = [f for f in map(_folded, split(said)) if f]
    units = split(first.text)
    ends = [i + 1 for i, unit in enumerate(units) if _folded(unit)]  # where each counted unit ends in units
    new = [f for f in map(_folded, units) if f]
    overlap = max((k for k in range(1, min(len(before), len(new)) + 1) if before[-k:] == new[:k]), default=0)
    if overlap == 0:
        return segments
    text = (" " if spaces else "").join(units[ends[overlap - 1] :])
    dropped, words = "".join(new[:overlap]), list(first.words or [])
    while words and _folded(words[0].word) and dropped.startswith(_folded(words[0].word)):
        dropped = dropped[len(_folded(words[0].word)) :]
        words.pop(0)
    if not _folded(text):
        return segments[1:]
    text = " " + text if spaces and first.text.startswith(" ") else text
    return [dataclasses.replace(first, text=text, words=words or None), *segments[1:]]


def shift(segment, seconds: float):
    """The segment, and its words, moved later by seconds."""
    words = [
        dataclasses.replace(w, start=round(w.start + seconds, 2), end=round(w.end + seconds, 2))
        for w in segment.words or []
    ]
    return dataclasses.replace(
        segment, start=round(segment.start + seconds, 2), end=round(segment.end + seconds, 2), words=words or None
    )


def keep_within_audio(transcript, join: Callable) -> None:
    """Drop segments that start where the audio has ended and clamp the rest to its end, in place: nothing is heard past it."""
    end = transcript.duration
    if not any(s.end > end for s in transcript.segments):
        return
    transcript.segments = [_clamp(s, end) for s in transcript.segments if s.start < end]
    transcript.text = join(transcript.segments, transcript.language)


def _clamp(segment, end: float):
    # Words keep the segment's text whole: they are clamped, not dropped.
    words = [dataclasses.replace(w, start=min(w.start, end), end=min(w.end, end)) for w in segment.words or []]
    return dataclasses.replace(segment, end=min(segment.end, end), words=words or None)

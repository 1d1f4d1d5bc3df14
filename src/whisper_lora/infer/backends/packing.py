"""Pack short clips into one 30 s window, 3 s apart, so that one encoder pass serves them all.

Each clip is then decoded on its own from that shared encoding: its prompt ends with the timestamp
where the clip starts, and its segments are read up to the clip's end. No clip sees another's text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from whisper_lora.audio.decode import SAMPLE_RATE

GAP_SECONDS = 3.0  # silence between packed clips, so that each clip's end timestamp is unambiguous
WINDOW_SECONDS = 29.0  # a little under 30 s, so the last clip's end timestamp stays inside the window
MAX_CLIP_SECONDS = 14.0  # longer clips gain little from sharing a window and are decoded on their own
TAIL_SAMPLES = SAMPLE_RATE // 2  # silence after the last clip of a window
TOKENS_PER_SECOND = 10  # decoding budget per clip: above speech with its timestamps in any language
OPENING_MARGIN = 0.2  # a segment opening this close to a clip's end belongs to what follows it
TIMESTAMP_TOLERANCE = 0.1  # seconds: how far Whisper's timestamps stray from the sound they mark


@dataclass(frozen=True)
class ClipSegment:
    """One segment read back from a packed decoding: start and end in seconds, and its text tokens."""

    start: float
    end: float
    tokens: list[int]


@dataclass
class Window:
    """Some clips laid end to end with gaps: which clips (by index) and where each one starts and ends."""

    members: list[int]
    spans: list[tuple[float, float]]
    audio: np.ndarray


def plan_windows(clips: list[np.ndarray], max_clips: int) -> tuple[list[Window], list[int]]:
    """Greedy windows of up to max_clips clips each, in order; also the indices too long to pack."""
    windows: list[Window] = []
    alone: list[int] = []
    members: list[int] = []
    parts: list[np.ndarray] = []
    spans: list[tuple[float, float]] = []
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.float32)

    def close():
        if members:  # the last clip gets a short tail instead of a full gap, so the audio stays under 30 s
            windows.append(Window(list(members), list(spans), np.concatenate([*parts[:-1], gap[:TAIL_SAMPLES]])))
        members.clear()
        parts.clear()
        spans.clear()

    for index, clip in enumerate(clips):
        seconds = len(clip) / SAMPLE_RATE
        if seconds > MAX_CLIP_SECONDS or seconds == 0:
            alone.append(index)
            continue
        position = sum(len(part) for part in parts) / SAMPLE_RATE
        if len(members) == max_clips or position + seconds > WINDOW_SECONDS:
            close()
            position = 0.0
        members.append(index)
        spans.append((position, position + seconds))
        parts.extend([clip, gap])
    close()
    return windows, alone


def clip_prompts(window: Window, prompt: list[int], timestamp_begin: int) -> list[list[int]]:
    """One prompt per member: the shared prompt, then the timestamp token where that member starts."""
    return [[*prompt, timestamp_begin + round(start / 0.02)] for start, _ in window.spans]


def following_starts(window: Window) -> list[float]:
    """For each member, where the next member starts; infinity for the last, which only silence follows."""
    return [start for start, _ in window.spans[1:]] + [float("inf")]


def token_budget(window: Window) -> int:
    """The most tokens any member's decoding may need."""
    return max(int(TOKENS_PER_SECOND * (end - start)) + 8 for start, end in window.spans)


def read_clip(
    tokens: list[int], span: tuple[float, float], following: float, timestamp_begin: int, eot: int
) -> list[ClipSegment] | None:
    """Every segment of a member, in its own time, or None when the decoding does not fit the clip.

    Whisper writes <|t0|> text <|t1|><|t1|> text <|t2|> ... : reading goes on past each closing timestamp,
    through every segment that opens before the clip ends, and stops at the end of text or at a segment
    that opens after the clip (in the gap or in the next clip). A segment may close anywhere in the
    gap: Whisper often ends a segment where the next speech begins. It does not fit when it gives no
    text, runs out of budget inside a segment, closes a segment after `following` (the start of the
    next clip, whose speech it then took in), or closes the first one before the clip has properly begun.
    """
    start, end = span
    seconds = [(token - timestamp_begin) * 0.02 for token in tokens]
    if tokens and tokens[0] == timestamp_begin + round(start / 0.02):
        tokens, seconds = tokens[1:], seconds[1:]  # the prompt's own timestamp, echoed back
    segments: list[ClipSegment] = []
    opening: float | None = start
    text: list[int] = []
    for token, at in zip(tokens, seconds, strict=True):
        if token == eot:
            if text:
                if opening is None:  # text after a closed segment, with no timestamp to open it
                    return None
                segments.append(ClipSegment(opening, end, text))
            opening = None
            break
        if token < timestamp_begin:
            text.append(token)
        elif opening is None:  # a new segment opens: inside the clip, or past it and so not ours
            if at >= end - OPENING_MARGIN:
                break
            opening = at
        else:
            if at > following + TIMESTAMP_TOLERANCE or (not segments and at < start + 0.2):
                return None
            if text:
                segments.append(ClipSegment(opening, min(at, end), text))
            opening, text = None, []
    if opening is not None or not segments:  # out of budget inside a segment, or nothing said
        return None
    length = round(end - start, 3)  # the clip's duration, as its transcript states it
    return [
        ClipSegment(min(round(s.start - start, 2), length), min(round(s.end - start, 2), length), s.tokens)
        for s in segments
    ]

"""Pack short clips into shared 30 s windows with silence between them, and split the window's segments back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE
from .transcribe import Segment, Word

GAP_SECONDS = 3.0  # silence between packed clips: measured on the demo split, shorter gaps let text bleed across
WINDOW_SECONDS = 29.0  # a little under 30 s, so the last clip's end timestamp stays inside the window
MAX_CLIP_SECONDS = 14.0  # longer clips gain little from sharing a window and are decoded on their own
EDGE_SECONDS = 0.2  # overlap with a neighbouring clip that still counts as belonging to one clip


@dataclass
class Window:
    """Some clips laid end to end with gaps: which clips (by index) and where each one starts and ends."""

    members: list[int]
    spans: list[tuple[float, float]]
    audio: np.ndarray


def plan_windows(clips: list[np.ndarray], max_clips: int) -> tuple[list[Window], list[int]]:
    """Greedy windows of up to max_clips clips each, in order; also the indices too long to pack."""
    windows, alone, members, parts, spans = [], [], [], [], []
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), np.float32)

    def close():
        if members:
            windows.append(Window(list(members), list(spans), np.concatenate(parts)))
        members.clear(), parts.clear(), spans.clear()

    for index, clip in enumerate(clips):
        seconds = len(clip) / SAMPLE_RATE
        if seconds > MAX_CLIP_SECONDS or seconds == 0:
            alone.append(index)
            continue
        position = sum(len(part) for part in parts) / SAMPLE_RATE
        if len(members) == max_clips or position + seconds > WINDOW_SECONDS:
            close()
            position = 0.0
        members.append(index), spans.append((position, position + seconds)), parts.extend([clip, gap])
    close()
    return windows, alone


def _owner(spans: list[tuple[float, float]], start: float, end: float) -> int | None:
    """The one clip a stretch [start, end] belongs to, or None when it reaches well into two clips."""
    touched = [k for k, (a, b) in enumerate(spans) if start < b - EDGE_SECONDS and end > a + EDGE_SECONDS]
    if len(touched) > 1:
        return None
    if touched:
        return touched[0]
    middle = (start + end) / 2
    return min(range(len(spans)), key=lambda k: min(abs(middle - spans[k][0]), abs(middle - spans[k][1])))


def split_segments(window: Window, segments: list[Segment]) -> tuple[dict[int, list[Segment]], set[int]]:
    """Each member's segments, shifted to its own time; and the members to decode alone.

    Those are the members a segment straddled, and those that got no text: a model fine-tuned on single
    utterances may end the window early, so an empty member is not taken as silence until decoded alone.
    """
    owned: dict[int, list[Segment]] = {k: [] for k in range(len(window.spans))}
    retry: set[int] = set()
    for segment in segments:
        k = _owner(window.spans, segment.start, segment.end)
        if k is None:
            retry.update(j for j, (a, b) in enumerate(window.spans) if segment.start < b and segment.end > a)
            continue
        owned[k].append(_shift(segment, window.spans[k]))
    retry.update(k for k, found in owned.items() if not found)
    return {window.members[k]: v for k, v in owned.items() if k not in retry}, {window.members[k] for k in retry}


def _shift(segment: Segment, span: tuple[float, float]) -> Segment:
    offset, length = span[0], span[1] - span[0]

    def clamp(t: float) -> float:
        return round(min(max(t - offset, 0.0), length), 2)

    words = [Word(clamp(w.start), clamp(w.end), w.word, w.probability) for w in segment.words or []]
    return Segment(clamp(segment.start), clamp(segment.end), segment.text, words or None)

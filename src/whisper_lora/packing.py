"""Pack short clips into one 30 s window, 3 s apart, so that one encoder pass serves them all.

Each clip is then decoded on its own from that shared encoding: its prompt ends with the timestamp
where the clip starts, and its text runs to the next timestamp. No clip sees another's text.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .audio import SAMPLE_RATE

GAP_SECONDS = 3.0  # silence between packed clips, so that each clip's end timestamp is unambiguous
WINDOW_SECONDS = 29.0  # a little under 30 s, so the last clip's end timestamp stays inside the window
MAX_CLIP_SECONDS = 14.0  # longer clips gain little from sharing a window and are decoded on their own
TAIL_SAMPLES = SAMPLE_RATE // 2  # silence after the last clip of a window
TOKENS_PER_SECOND = 8  # decoding budget per clip: well above speech in any language, so text is never cut


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
        if members:  # the last clip gets a short tail instead of a full gap, so the audio stays under 30 s
            windows.append(Window(list(members), list(spans), np.concatenate([*parts[:-1], gap[:TAIL_SAMPLES]])))
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


def clip_prompts(window: Window, prompt: list[int], timestamp_begin: int) -> list[list[int]]:
    """One prompt per member: the shared prompt, then the timestamp token where that member starts."""
    return [[*prompt, timestamp_begin + round(start / 0.02)] for start, _ in window.spans]


def token_budget(window: Window) -> int:
    """The most tokens any member's decoding may need."""
    return max(int(TOKENS_PER_SECOND * (end - start)) + 8 for start, end in window.spans)


def read_clip(tokens: list[int], span: tuple[float, float], timestamp_begin: int, eot: int) -> tuple[list[int], float] | None:
    """A member's text tokens and its end in its own time, or None when the decoding does not fit the clip.

    It does not fit when it gives no text, runs out of budget without closing, or closes past the
    middle of the next gap (the decoder skipped to another clip) or before the clip has properly begun.
    """
    start, end = span
    if tokens and tokens[0] == timestamp_begin + round(start / 0.02):
        tokens = tokens[1:]  # the prompt's own timestamp, echoed back
    text, closing = [], None
    for token in tokens:
        if token >= timestamp_begin or token == eot:
            closing = (token - timestamp_begin) * 0.02 if token >= timestamp_begin else end
            break
        text.append(token)
    if not text or closing is None or not start + 0.2 <= closing <= end + GAP_SECONDS / 2:
        return None
    return text, round(min(closing, end) - start, 2)

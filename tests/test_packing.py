"""Packing short clips into one window, their prompts, and reading each clip's tokens back, without a model."""

import numpy as np

from whisper_lora.packing import (
    GAP_SECONDS,
    MAX_CLIP_SECONDS,
    WINDOW_SECONDS,
    Window,
    clip_prompts,
    plan_windows,
    read_clip,
    token_budget,
)

STAMP0, EOT = 50365, 50257  # <|0.00|> and <|endoftext|> in the multilingual vocabulary


def clip(seconds: float, value: float = 0.5) -> np.ndarray:
    return np.full(int(seconds * 16000), value, np.float32)


def stamp(seconds: float) -> int:
    return STAMP0 + round(seconds / 0.02)


def test_windows_hold_at_most_max_clips_and_fit_in_30_s():
    clips = [clip(2.0, i) for i in range(11)] + [clip(MAX_CLIP_SECONDS + 1)] + [clip(9.0)] * 3
    windows, alone = plan_windows(clips, max_clips=4)
    assert alone == [11]
    members = [m for w in windows for m in w.members]
    assert members == [i for i in range(len(clips)) if i != 11]  # every other clip once, in order
    for window in windows:
        assert len(window.members) <= 4
        assert window.spans[-1][1] <= WINDOW_SECONDS and len(window.audio) / 16000 < 30
        for index, (start, end) in zip(window.members, window.spans):
            placed = window.audio[int(start * 16000) : int(end * 16000)]
            assert np.array_equal(placed, clips[index])  # each span points at its own clip's samples
        gaps = [b[0] - a[1] for a, b in zip(window.spans, window.spans[1:])]
        assert all(abs(g - GAP_SECONDS) < 1e-6 for g in gaps)
        assert not window.audio[int(window.spans[-1][1] * 16000) :].any()  # only silence after the last clip


def test_empty_clips_are_decoded_alone():
    windows, alone = plan_windows([clip(1.0), clip(0.0), clip(1.0)], max_clips=8)
    assert alone == [1] and windows[0].members == [0, 2]


def window_of(*lengths: float) -> Window:
    windows, _ = plan_windows([clip(s) for s in lengths], max_clips=8)
    return windows[0]


def test_each_prompt_ends_at_its_clip_start():
    window = window_of(2.0, 3.0)
    prompts = clip_prompts(window, [1, 2, 3], STAMP0)
    assert prompts == [[1, 2, 3, stamp(0.0)], [1, 2, 3, stamp(2.0 + GAP_SECONDS)]]
    assert token_budget(window) == 8 * 3 + 8


def test_text_runs_to_the_closing_timestamp_in_the_clip_own_time():
    span = (5.0, 7.5)
    tokens = [stamp(5.0), 10, 11, 12, stamp(7.4), stamp(10.5), 13, 14]  # then the next clip, ignored
    assert read_clip(tokens, span, STAMP0, EOT) == ([10, 11, 12], 2.4)
    assert read_clip([10, 11, EOT], span, STAMP0, EOT) == ([10, 11], 2.5)  # end of text: the clip's end
    assert read_clip([10, 11, stamp(7.9)], span, STAMP0, EOT) == ([10, 11], 2.5)  # clamped to the clip


def test_decodings_that_do_not_fit_the_clip_are_refused():
    span = (5.0, 7.5)
    assert read_clip([stamp(5.0), stamp(7.5)], span, STAMP0, EOT) is None  # no text
    assert read_clip([10, 11, stamp(12.0)], span, STAMP0, EOT) is None  # skipped on to the next clip's speech
    assert read_clip([10, 11, stamp(5.1)], span, STAMP0, EOT) is None  # closed before the clip began
    assert read_clip([10, 11, 12], span, STAMP0, EOT) is None  # out of budget, never closed

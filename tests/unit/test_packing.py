"""Packing short clips into one window, their prompts, and reading each clip's tokens back, without a model."""

from itertools import pairwise

import numpy as np

from whisper_lora.infer.backends.packing import (
    GAP_SECONDS,
    MAX_CLIP_SECONDS,
    WINDOW_SECONDS,
    Window,
    clip_prompts,
    following_starts,
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
        for index, (start, end) in zip(window.members, window.spans, strict=True):
            placed = window.audio[int(start * 16000) : int(end * 16000)]
            assert np.array_equal(placed, clips[index])  # each span points at its own clip's samples
        gaps = [b[0] - a[1] for a, b in pairwise(window.spans)]
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
    assert following_starts(window) == [2.0 + GAP_SECONDS, float("inf")]


def test_the_budget_covers_fast_speech_with_timestamps_in_the_longest_member():
    window = window_of(2.0, MAX_CLIP_SECONDS, 1.0)
    fast_speech = 5 * MAX_CLIP_SECONDS + 2 * (MAX_CLIP_SECONDS / 2)  # 5 tokens/s, a segment every 2 s
    assert token_budget(window) >= fast_speech


SPAN, FOLLOWING = (5.0, 7.5), 10.5  # a clip from 5.0 s to 7.5 s; the next clip starts at 10.5 s


def segments(tokens):
    read = read_clip(tokens, SPAN, FOLLOWING, STAMP0, EOT)
    return None if read is None else [(s.start, s.end, s.tokens) for s in read]


def test_every_segment_of_a_clip_is_read_in_its_own_time():
    tokens = [stamp(5.0), 10, 11, stamp(6.0), stamp(6.2), 12, 13, stamp(7.4), stamp(10.5), 14, 15]
    assert segments(tokens) == [(0.0, 1.0, [10, 11]), (1.2, 2.4, [12, 13])]  # the next clip's 14, 15 left out


def test_a_clip_ends_at_end_of_text_or_at_a_segment_opening_after_it():
    assert segments([10, 11, EOT]) == [(0.0, 2.5, [10, 11])]  # end of text: the clip's end
    assert segments([10, stamp(6.0), stamp(6.0), 11, EOT]) == [(0.0, 1.0, [10]), (1.0, 2.5, [11])]
    assert segments([10, stamp(7.0), stamp(7.4), 11, 12]) == [(0.0, 2.0, [10])]  # opens at the very end: not ours


def test_a_segment_may_close_anywhere_in_the_gap_and_is_clamped_to_the_clip():
    assert segments([10, 11, stamp(7.9)]) == [(0.0, 2.5, [10, 11])]
    assert segments([10, 11, stamp(10.5)]) == [(0.0, 2.5, [10, 11])]  # closed where the next speech begins
    last = read_clip([10, stamp(9.0)], SPAN, float("inf"), STAMP0, EOT)  # only silence after the last clip
    assert [(s.start, s.end) for s in last] == [(0.0, 2.5)]


def test_decodings_that_do_not_fit_the_clip_are_refused():
    assert segments([stamp(5.0), stamp(7.5)]) is None  # no text
    assert segments([10, 11, stamp(12.0)]) is None  # ran on into the next clip's speech
    assert segments([10, stamp(6.0), stamp(6.0), 11, stamp(11.0)]) is None  # the same, in a later segment
    assert segments([10, 11, stamp(5.1)]) is None  # closed before the clip began
    assert segments([10, 11, 12]) is None  # out of budget, never closed
    assert segments([10, stamp(6.0), stamp(6.0), 11, 12]) is None  # out of budget inside the second segment
    assert segments([10, stamp(6.0), 11, EOT]) is None  # text after a closed segment, never opened

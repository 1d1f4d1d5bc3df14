"""Packing short clips into shared windows and splitting the window's segments back, without a model."""

import numpy as np

from whisper_lora.packing import GAP_SECONDS, MAX_CLIP_SECONDS, WINDOW_SECONDS, Window, plan_windows, split_segments
from whisper_lora.transcribe import Segment, Word


def clip(seconds: float, value: float = 0.5) -> np.ndarray:
    return np.full(int(seconds * 16000), value, np.float32)


def test_windows_hold_at_most_max_clips_and_fit_in_30_s():
    clips = [clip(2.0, i) for i in range(11)] + [clip(MAX_CLIP_SECONDS + 1)] + [clip(9.0)] * 3
    windows, alone = plan_windows(clips, max_clips=4)
    assert alone == [11]
    members = [m for w in windows for m in w.members]
    assert members == [i for i in range(len(clips)) if i != 11]  # every other clip once, in order
    for window in windows:
        assert len(window.members) <= 4
        assert window.spans[-1][1] <= WINDOW_SECONDS
        for index, (start, end) in zip(window.members, window.spans):
            placed = window.audio[int(start * 16000) : int(end * 16000)]
            assert np.array_equal(placed, clips[index])  # each span points at its own clip's samples
        gaps = [b[0] - a[1] for a, b in zip(window.spans, window.spans[1:])]
        assert all(abs(g - GAP_SECONDS) < 1e-6 for g in gaps)


def test_empty_clips_are_decoded_alone():
    windows, alone = plan_windows([clip(1.0), clip(0.0), clip(1.0)], max_clips=8)
    assert alone == [1] and windows[0].members == [0, 2]


def window_of(*lengths: float) -> Window:
    windows, _ = plan_windows([clip(s) for s in lengths], max_clips=8)
    return windows[0]


def test_segments_go_back_to_their_clips_in_clip_time():
    window = window_of(2.0, 3.0)  # spans (0, 2) and (2 + gap, 5 + gap)
    second = 2.0 + GAP_SECONDS
    words = [Word(second + 0.1, second + 0.5, " hello", 0.9)]
    owned, retry = split_segments(window, [Segment(0.0, 1.9, "one"), Segment(second + 0.1, second + 2.9, "two", words)])
    assert retry == set()
    assert owned[0] == [Segment(0.0, 1.9, "one")]
    assert owned[1][0].start == 0.1 and owned[1][0].end == 2.9 and owned[1][0].words[0].start == 0.1


def test_a_segment_across_two_clips_sends_both_to_be_decoded_alone():
    window = window_of(2.0, 2.0, 2.0)
    third = 2 * (2.0 + GAP_SECONDS)
    segments = [Segment(0.0, 2.0 + GAP_SECONDS + 1.5, "one two"), Segment(third, third + 2.0, "three")]
    owned, retry = split_segments(window, segments)
    assert retry == {0, 1} and list(owned) == [2]


def test_a_clip_that_got_no_text_is_retried_alone():
    window = window_of(2.0, 2.0)
    owned, retry = split_segments(window, [Segment(0.0, 2.0, "one")])  # the model stopped after the first
    assert retry == {1} and list(owned) == [0]


def test_times_are_clamped_to_the_clip():
    window = window_of(2.0, 2.0)
    second = 2.0 + GAP_SECONDS
    owned, _ = split_segments(window, [Segment(0.0, 2.1, "one"), Segment(second - 0.1, second + 2.1, "two")])
    assert owned[0][0].end == 2.0 and owned[1][0].start == 0.0 and owned[1][0].end == 2.0

"""Short windows: the encoder reads the audio and a 1.28 s margin, padded as the reference implementations pad it."""

import numpy as np
import pytest

from whisper_lora.core.budget import short_window_positions
from whisper_lora.infer.backends.ct2 import short_features


@pytest.mark.parametrize(
    ("seconds", "positions"), [(1.0, 50 + 64), (0.01, 1 + 64), (28.7, 1435 + 64), (28.72, None), (45.0, None)]
)
def test_a_short_window_is_the_audio_at_50_positions_a_second_and_a_margin(seconds, positions):
    assert short_window_positions(round(seconds * 16000)) == positions


def test_the_margin_is_padded_with_the_log_mel_floor_not_with_zeros():
    rng = np.random.default_rng(0)
    audio = rng.uniform(-1.0, 0.5, size=(80, 250)).astype(np.float32)
    window = np.pad(audio, ((0, 0), (0, 3000 - 250)))  # faster-whisper's padding: zeros after the audio
    short = short_features(window)
    assert short.shape == (80, 2 * (125 + 64))
    np.testing.assert_array_equal(short[:, :250], audio)
    assert np.all(short[:, 250:] == pytest.approx(audio.max() - 2.0))
    assert window[:, 250:].max() == 0.0  # the padded window itself is left alone


def test_a_window_the_audio_fills_is_read_whole():
    full = np.full((1, 80, 3000), 0.3, dtype=np.float32)
    assert short_features(full) is full
    silent = np.zeros((80, 3000), dtype=np.float32)
    assert short_features(silent) is silent

"""The live engine on recorded speech with the embedded model: memory stays flat over a session."""

import numpy as np
import pytest

from helpers import real_speech
from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.stream import LiveTranscriber
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.serve.state import rss_mb

pytestmark = pytest.mark.integration


def test_a_live_session_holds_its_memory_flat():
    # benchmarks/stream_latency.py runs the same loop for 30 minutes; here 3, the slope is what counts.
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    speech = np.concatenate([part for p in real_speech("en")[:12] for part in (decode_audio(p.audio_path), pause)])
    samples = np.tile(speech, int(np.ceil(180 * SAMPLE_RATE / len(speech))))[: 180 * SAMPLE_RATE]
    live = LiveTranscriber(Transcriber(None, batch_size=1), TranscribeOptions(language="en"))
    piece, after_one, words = 5 * SAMPLE_RATE, None, 0
    for start in range(0, len(samples), piece):
        live.feed(samples[start : start + piece])
        words += len(live.step().committed)
        if after_one is None and start + piece >= 60 * SAMPLE_RATE:
            after_one = rss_mb()
    words += len(live.finish())
    assert words > 200 and len(live.audio) == 0  # it transcribed the speech, and let go of the buffer
    assert rss_mb() - after_one < 25, (after_one, rss_mb())

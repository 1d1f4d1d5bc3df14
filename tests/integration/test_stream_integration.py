"""The live engine on recorded speech with the embedded model: memory stays flat, and a turn ends on what was said."""

import json
import subprocess
import sys

import numpy as np
import pytest

from helpers import real_speech
from whisper_lora.audio.decode import decode_audio
from whisper_lora.audio.encode import pcm16
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.stream import LiveTranscriber, join_words
from whisper_lora.infer.transcriber import Transcriber

pytestmark = pytest.mark.integration

# In a process of its own, as a server's session would be: a test worker's RSS moves with the tests before it.
SESSION = """
import json, sys
import numpy as np
from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.stream import LiveTranscriber
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.core.memory import rss_mb

short_window, paths = sys.argv[1] == "short", sys.argv[2:]
pause = np.zeros(SAMPLE_RATE // 2, np.float32)
speech = np.concatenate([part for path in paths for part in (decode_audio(path), pause)])
samples = np.tile(speech, int(np.ceil(240 * SAMPLE_RATE / len(speech))))[: 240 * SAMPLE_RATE]
live = LiveTranscriber(Transcriber(None, batch_size=1), TranscribeOptions(language="en", short_window=short_window))
piece, rss, words = (5 if short_window else 10) * SAMPLE_RATE, {}, 0  # 30 s windows: half the steps
for start in range(0, len(samples), piece):
    live.feed(samples[start : start + piece])
    words += len(live.step().committed)
    rss[(start + piece) // SAMPLE_RATE] = rss_mb()
words += len(live.finish())
print(json.dumps({"words": words, "buffer": len(live.audio), "rss": rss}))
"""


# Short windows, uncapped, grew 78 MB from minute 2 to 4, in both minutes; capped, 2 MB alone and 28 MB beside the
# whole suite. A one-time step is no leak: 30 s windows moved 42 MB once beside the suite (0 alone), and the first
# decoding that loops and is sampled again moved them 30 MB alone, 111 MB beside the suite, then nothing.
@pytest.mark.parametrize("window", ["30 s", "short"])
def test_a_live_session_holds_its_memory_flat(window):
    # benchmarks/stream_latency.py runs the same loop for 30 minutes; here 4, and the slope after the first 2 counts.
    # Short windows meet a new encoder length at almost every step: each is a new oneDNN kernel to keep, or not.
    paths = [p.audio_path for p in real_speech("en")[:12]]
    done = subprocess.run(
        [sys.executable, "-c", SESSION, window, *paths], check=False, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    rss = {int(second): mb for second, mb in found["rss"].items()}
    assert found["words"] > 300 and found["buffer"] == 0  # it transcribed the speech, and let go of the buffer
    print(f"RSS at 1, 2, 3 and 4 minutes: {[round(rss[s]) for s in (60, 120, 180, 240)]} MB")
    third, fourth = rss[180] - rss[120], rss[240] - rss[180]
    assert min(third, fourth) < 20 and third + fourth < 150, rss  # no minute-on-minute growth


def test_a_turn_that_ends_in_a_pause_commits_no_words_invented_in_it():
    # A realtime turn's last buffer, to the sample, from a session paced as under load: this prompt from 7.76 s on
    # and 0.16 s of the pause after it, as PCM16, with the prompt's first sentences as the engine's prompt. The base
    # model went on past the speech, repeating them at probabilities near 0 in the buffer's last frame, and the turn
    # committed them (the flaky live page test). The invention hangs on these exact samples, so it may not happen on
    # another CPU; tests/unit/test_stream.py holds the rule everywhere.
    prompt = next(p for p in real_speech("en") if p.audio_path.endswith("demo-echotest.g722"))
    heard = "You're about to enter an echo test. In this mode, everything you say will be repeated back to you just as soon as it is received."
    said = prompt.text.split("received.", 1)[1]  # The purpose of this test ... by pressing the pound key.
    audio = np.zeros(230_003, np.float32)
    tail = decode_audio(prompt.audio_path)[124_204:]
    audio[: len(tail)] = pcm16(tail) / 32768  # as the page sends it
    live = LiveTranscriber(Transcriber(None), TranscribeOptions(language="en", initial_prompt=heard))
    live.feed(audio)
    text = join_words(live.finish())
    assert error_rate([said], [text], "wer", "en") < 0.1, text

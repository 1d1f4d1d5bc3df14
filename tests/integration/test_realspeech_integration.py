"""Every decoding path on recorded human speech, multi-sentence prompts included, against one-at-a-time decoding."""

import numpy as np
import pytest

from helpers import real_speech
from whisper_lora.audio.decode import decode_audio
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.coverage import falls_short
from whisper_lora.infer.transcriber import Clip, Transcriber

pytestmark = pytest.mark.integration
ENGLISH = TranscribeOptions(language="en")


@pytest.fixture(scope="module")
def prompts():
    """English test prompts: every multi-sentence one, then single sentences, 24 in all."""
    found = real_speech("en")
    multi = [p for p in found if p.sentences > 1]
    assert len(multi) >= 8
    return multi + [p for p in found if p.sentences == 1][: 24 - len(multi)]


@pytest.fixture(scope="module")
def clips(prompts):
    return [Clip(p.audio_path, decode_audio(p.audio_path)) for p in prompts]


@pytest.fixture(scope="module")
def one_at_a_time(clips):
    """The reference path: faster-whisper on each clip alone."""
    return Transcriber("base", batch_size=1).clips(clips, ENGLISH)


def wer(prompts, transcripts, only_multi=False) -> float:
    pairs = [(p.text, t.text) for p, t in zip(prompts, transcripts, strict=True) if p.sentences > 1 or not only_multi]
    return error_rate([r for r, _ in pairs], [h for _, h in pairs], "wer", "en")


def test_one_at_a_time_is_accurate_on_real_speech(prompts, one_at_a_time):
    assert wer(prompts, one_at_a_time) < 0.08 and wer(prompts, one_at_a_time, only_multi=True) < 0.08


def test_packing_itself_reads_every_sentence_of_multi_sentence_clips(prompts, clips):
    from whisper_lora.infer.backends.ct2 import transcribe_clips_ct2

    transcriber = Transcriber("base")
    packed = transcribe_clips_ct2(transcriber.engine.model, clips, ENGLISH, batch_size=8)  # no guard behind it
    kept = [(p, t) for p, t in zip(prompts, packed, strict=True) if not t.redecoded]
    assert len(kept) >= 0.75 * len(clips)
    assert sum(p.sentences > 1 for p, _ in kept) >= 6, [t.redecoded for t in packed]
    assert wer(*zip(*kept, strict=True), only_multi=True) < 0.08, [(p.text, t.text) for p, t in kept if p.sentences > 1]


def test_the_default_packed_path_is_as_accurate_as_one_at_a_time(prompts, clips, one_at_a_time):
    packed = Transcriber("base", batch_size=8).clips(clips, ENGLISH)
    assert wer(prompts, packed, only_multi=True) < 0.08
    assert wer(prompts, packed) <= wer(prompts, one_at_a_time) + 0.005
    for clip, transcript in zip(clips, packed, strict=True):
        assert falls_short(transcript.segments, clip.samples) is None, transcript
        times = [x for s in transcript.segments for x in (s.start, s.end)]
        assert times == sorted(times) and times[-1] <= transcript.duration


def test_transformers_batches_keep_every_sentence(prompts, clips, one_at_a_time):
    multi = [k for k, p in enumerate(prompts) if p.sentences > 1]
    batched = Transcriber("base", backend="transformers", batch_size=8).clips([clips[k] for k in multi], ENGLISH)
    chosen = [prompts[k] for k in multi]
    assert wer(chosen, batched) <= wer(chosen, [one_at_a_time[k] for k in multi]) + 0.02
    assert all(falls_short(t.segments, clips[k].samples) is None for k, t in zip(multi, batched, strict=True))


@pytest.mark.parametrize("backend", ["ct2", "transformers"])
def test_a_long_recording_of_real_prompts_keeps_every_sentence(prompts, clips, backend):
    multi = [k for k, p in enumerate(prompts) if p.sentences > 1][:6]
    pause = np.zeros(16000, np.float32)
    audio = np.concatenate([part for k in multi for part in (clips[k].samples, pause)])
    assert len(audio) / 16000 > 60
    result = Transcriber("base", backend=backend).clips([Clip("long", audio)], ENGLISH)[0]
    reference = " ".join(prompts[k].text for k in multi)
    assert error_rate([reference], [result.text], "wer", "en") < 0.08, result.text
    times = [x for s in result.segments for x in (s.start, s.end)]
    assert times == sorted(times) and falls_short(result.segments, audio) is None

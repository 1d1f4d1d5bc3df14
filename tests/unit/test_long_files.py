"""Long files are decoded and transcribed block by block: memory stays bounded, and the blocks join into one transcript."""

import tracemalloc

import numpy as np
import pytest

from helpers import silent_flac, sine, write_audio
from whisper_lora.audio.decode import SAMPLE_RATE, AudioError, decode_audio, decode_blocks, quietest_cut
from whisper_lora.core.records import Segment, TranscribeOptions, Transcript
from whisper_lora.infer import transcriber as transcriber_module
from whisper_lora.infer.transcriber import Transcriber


class Recorder:
    """A backend that hears nothing but what it is given: one segment per clip, naming the call."""

    multilingual = True

    def __init__(self):
        self.calls: list[tuple[int, TranscribeOptions]] = []

    def transcribe(self, clips, options):
        transcripts = []
        for clip in clips:
            self.calls.append((len(clip.samples), options))
            seconds = len(clip.samples) / SAMPLE_RATE
            text = f"block{len(self.calls)}"
            segments = [Segment(0.0, seconds, text)]
            transcripts.append(Transcript(clip.name, text, segments, options.language or "en", 0.9, seconds))
        return transcripts

    def transcribe_alone(self, samples, options, name):
        raise AssertionError("the recorder's text always reaches the end")


@pytest.fixture
def recorder():
    transcriber = Transcriber.__new__(Transcriber)
    transcriber.model_path, transcriber.batch_size, transcriber.backend, transcriber.device = None, 8, "ct2", "cpu"
    transcriber.engine = Recorder()
    return transcriber


def test_blocks_join_into_the_whole_decoding(tmp_path):
    path = write_audio(tmp_path / "tone.flac", sine(5.3, 16000, 440.0), 16000)
    blocks = list(decode_blocks(path, 2.0))
    assert [len(b) for b in blocks] == [32000, 32000, 20800]
    assert np.array_equal(np.concatenate(blocks), decode_audio(path))
    (tmp_path / "empty.wav").touch()
    with pytest.raises(AudioError, match="empty file"):
        next(decode_blocks(tmp_path / "empty.wav", 2.0))


def test_the_cut_falls_in_the_quiet_between_words():
    audio = sine(12.0, 16000, 440.0).reshape(-1).copy()
    audio[round(8.0 * SAMPLE_RATE) : round(8.3 * SAMPLE_RATE)] = 0.0  # a pause 4 s before the end
    cut = quietest_cut(audio)
    assert 8.0 * SAMPLE_RATE <= cut <= 8.3 * SAMPLE_RATE
    assert quietest_cut(np.zeros(100, np.float32)) == 100  # too short to search: cut at the end


def test_a_long_file_is_transcribed_block_by_block_with_times_shifted(recorder, tmp_path, monkeypatch):
    monkeypatch.setattr(transcriber_module, "BLOCK_SECONDS", 2.0)
    audio = sine(5.3, 16000, 440.0).copy()
    audio[0, round(1.5 * SAMPLE_RATE) : round(1.6 * SAMPLE_RATE)] = 0.0  # the quiet moment in the first block
    path = write_audio(tmp_path / "long.wav", audio, 16000)
    transcript = recorder.files([str(path)], TranscribeOptions())[0]
    (first, first_options), *later = recorder.engine.calls
    assert transcript.duration == 5.3 and transcript.language == "en" and transcript.error is None
    assert 1.5 <= transcript.segments[1].start <= 1.6  # the first block was cut in its pause
    assert [s.text for s in transcript.segments] == ["block1", "block2", "block3"]
    assert transcript.text == "block1 block2 block3"
    assert all(a.end == b.start for a, b in zip(transcript.segments, transcript.segments[1:], strict=False))
    assert transcript.segments[-1].end == 5.3
    assert first_options.language is None and first_options.initial_prompt is None
    assert [(o.language, o.initial_prompt) for _, o in later] == [("en", None), ("en", None)]  # each block afresh
    assert max(length for length, _ in recorder.engine.calls) <= 2 * 2.0 * SAMPLE_RATE  # a block and a carry


def test_the_initial_prompt_steers_the_first_block_only(recorder, tmp_path, monkeypatch):
    monkeypatch.setattr(transcriber_module, "BLOCK_SECONDS", 2.0)
    path = write_audio(tmp_path / "long.wav", sine(4.5, 16000, 440.0), 16000)
    options = TranscribeOptions(language="de", initial_prompt="Glossar")
    recorder.files([str(path)], options)
    assert [(o.language, o.initial_prompt) for _, o in recorder.engine.calls] == [
        ("de", "Glossar"),
        ("de", None),
        ("de", None),
    ]


def peak_bytes(transcriber, path) -> tuple[int, Transcript]:
    """The most memory Python held while transcribing the file, and its transcript."""
    tracemalloc.start()
    try:
        transcript = transcriber.files([str(path)], TranscribeOptions(language="en"))[0]
        return tracemalloc.get_traced_memory()[1], transcript
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_length_of_a_file(recorder, tmp_path):
    twenty_minutes, _ = peak_bytes(recorder, silent_flac(tmp_path / "twenty.flac", 1200))
    hour, transcript = peak_bytes(recorder, silent_flac(tmp_path / "hour.flac", 3600))
    blocks = lambda seconds: seconds // transcriber_module.BLOCK_SECONDS  # noqa: E731
    assert transcript.duration == 3600.0 and len(recorder.engine.calls) == blocks(1200) + blocks(3600)
    whole = 3600 * SAMPLE_RATE * 4  # the hour's float32 samples: 230 MB
    assert hour < 1.1 * twenty_minutes and hour < whole / 2, (hour / 1e6, twenty_minutes / 1e6)


def test_short_files_are_decoded_whole(recorder, tmp_path):
    short = [write_audio(tmp_path / f"{k}.wav", sine(1.0, 16000, 440.0), 16000) for k in range(3)]
    transcripts = recorder.files([str(p) for p in short], TranscribeOptions(language="en"))
    assert [t.duration for t in transcripts] == [1.0, 1.0, 1.0] and len(recorder.engine.calls) == 3

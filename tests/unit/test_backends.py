"""What every backend promises, on a tiny random Whisper and tones (no espeak-ng): order, errors, times, resume."""

import json

import pytest

from helpers import run_inference, sine, write_audio
from whisper_lora.core.budget import max_new_tokens
from whisper_lora.core.records import Runtime, TranscribeOptions, Transcript, join_segments
from whisper_lora.infer.file_jobs import in_batches, run_key, transcribe_many
from whisper_lora.infer.transcriber import Transcriber

SECONDS = (0.7, 1.5, 3.0)
# A random model never says end-of-text, so each decoding runs to its token limit: one temperature, and a short limit.
QUICK = TranscribeOptions(language="en", return_timestamps=True, temperature=(0.0,))


@pytest.fixture
def tone_paths(tmp_path):
    folder = tmp_path / "tones"
    folder.mkdir()
    paths = [
        str(write_audio(folder / f"{i}.wav", sine(s, 16000, 300.0 * (i + 1)), 16000)) for i, s in enumerate(SECONDS)
    ]
    return [*paths, str(folder / "missing.wav")]


# ct2 packs clips at batch 3 and decodes them alone at 1; transformers batches both ways through one generate call.
@pytest.mark.parametrize("backend, batch_size", [("ct2", 1), ("ct2", 3), ("transformers", 3)])
def test_every_file_gets_one_transcript_in_order_with_times_inside_its_audio(
    backend, batch_size, tiny_ct2_dir, short_model_dir, tone_paths
):
    model = tiny_ct2_dir if backend == "ct2" else short_model_dir
    transcripts = Transcriber(str(model), backend, "cpu", None, batch_size).files(tone_paths, QUICK)
    assert [t.path for t in transcripts] == tone_paths
    assert transcripts[-1].error == "file not found" and not transcripts[-1].segments
    for transcript, seconds in zip(transcripts[:-1], SECONDS, strict=True):  # the last is the missing file
        assert transcript.error is None and transcript.duration == pytest.approx(seconds, abs=0.01)
        starts = [s.start for s in transcript.segments]
        assert starts == sorted(starts)
        assert all(0.0 <= s.start <= s.end <= seconds for s in transcript.segments), transcript.segments
        assert transcript.text == join_segments(transcript.segments, "en")


# A random model's 40 tokens compress badly and score far under -1 log-probability: the fallback must fire.
@pytest.mark.parametrize("temperatures", [(0.0,), (0.0, 0.6)])
def test_a_short_clip_that_fails_the_thresholds_is_decoded_again_at_the_next_temperature(
    temperatures, short_model_dir, tone_paths, monkeypatch
):
    from transformers.generation.utils import GenerationMixin

    tried, generate = [], GenerationMixin.generate

    def spy(self, *args, generation_config=None, **kwargs):
        tried.append(generation_config.temperature if generation_config.do_sample else 0.0)
        return generate(self, *args, generation_config=generation_config, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    options = TranscribeOptions(language="en", temperature=temperatures, compression_ratio_threshold=0.1)
    [transcript] = Transcriber(str(short_model_dir), "transformers", "cpu").files(tone_paths[:1], options)
    # The coverage guard may decode the clip's rest once more, with the same fallback.
    assert transcript.error is None and tried == list(temperatures) * (len(tried) // len(temperatures)), tried


def test_word_timestamps_are_refused_on_transformers_before_any_decoding(tiny_model_dir, tone_paths):
    from whisper_lora.core.errors import UserError

    with pytest.raises(UserError, match="need --backend ct2"):
        Transcriber(str(tiny_model_dir), "transformers", "cpu").files(
            tone_paths, TranscribeOptions(word_timestamps=True)
        )


def test_a_crash_keeps_the_finished_files_and_the_rerun_decodes_only_the_rest(tmp_path):
    sidecar, paths, asked = tmp_path / "out.json.partial.jsonl", ["a.wav", "b.wav", "c.wav"], []

    def crashing(batch):
        if "c.wav" in batch:
            raise KeyboardInterrupt
        return [Transcript(p, f"text of {p}", duration=1.0) for p in batch]

    with pytest.raises(KeyboardInterrupt):
        transcribe_many(in_batches(crashing, 1), paths, sidecar)
    with open(sidecar, "a") as handle:
        handle.write('{"path": "c.wav", "te')  # killed in the middle of a line

    def counting(batch):
        asked.extend(batch)
        return [Transcript(p, f"again {p}", duration=1.0) for p in batch]

    done = transcribe_many(in_batches(counting, 2), paths, sidecar)
    assert asked == ["c.wav"] and [t.text for t in done] == ["text of a.wav", "text of b.wav", "again c.wav"]


def test_the_batch_command_resumes_from_its_sidecar(tiny_ct2_dir, tone_paths, tmp_path):
    listing, output = tmp_path / "list.txt", tmp_path / "results.json"
    listing.write_text("\n".join(tone_paths[:3]) + "\n")
    earlier = {
        "path": tone_paths[0],
        "text": "from an earlier run",
        "segments": [],
        "language": "en",
        "language_probability": None,
        "duration": 0.7,
        "error": None,
    }
    sidecar = tmp_path / "results.json.partial.jsonl"
    flags = ["--model_path", tiny_ct2_dir, "--audio_list", listing, "--output_file", output, "--temperature", "0"]
    key = run_key(Runtime(model_path=str(tiny_ct2_dir)), TranscribeOptions(language="en", temperature=[0.0]))
    sidecar.write_text(json.dumps({"run": key}) + "\n" + json.dumps(earlier) + "\n")
    result = run_inference(*flags, "--language", "en")
    assert result.returncode == 0, result.stderr
    records = json.loads(output.read_text())
    assert [r["path"] for r in records] == tone_paths[:3] and records[0]["text"] == "from an earlier run"
    assert all(r["error"] is None and r["duration"] > 1 for r in records[1:]) and sidecar.exists()
    sidecar.write_text(json.dumps({"run": key}) + "\n" + json.dumps(earlier) + "\n")  # another language now
    result = run_inference(*flags, "--language", "de")
    assert result.returncode == 0 and "holds results of another model or other options" in result.stderr
    assert "from an earlier run" not in output.read_text()
    kept = list(tmp_path.glob("results.json.partial.*.jsonl"))
    assert len(kept) == 1 and "from an earlier run" in kept[0].read_text()


def test_text_past_the_audio_is_dropped_and_times_are_clamped_to_its_end():
    from whisper_lora.core.records import Segment, Word
    from whisper_lora.infer.coverage import keep_within_audio

    words = [Word(0.2, 0.9, " near", 0.9), Word(1.0, 1.6, " end", 0.9), Word(2.1, 2.4, " after", 0.5)]
    segments = [Segment(0.0, 0.8, "start"), Segment(0.9, 2.5, "near end after", words), Segment(3.0, 9.0, "ghost")]
    transcript = Transcript("a.wav", "start near end after ghost", segments, "en", None, 2.0)
    keep_within_audio(transcript, join_segments)
    assert [(s.start, s.end, s.text) for s in transcript.segments] == [
        (0.0, 0.8, "start"),
        (0.9, 2.0, "near end after"),
    ]
    assert [(w.start, w.end) for w in transcript.segments[1].words] == [(0.2, 0.9), (1.0, 1.6), (2.0, 2.0)]
    assert transcript.text == "start near end after"


def test_transformers_stops_a_looping_clip_at_its_budget(tiny_model_dir, tone_paths, monkeypatch):
    from transformers.generation.utils import GenerationMixin

    lengths, generate = [], GenerationMixin.generate

    def spy(self, *args, **kwargs):
        output = generate(self, *args, **kwargs)
        lengths.append(output.shape[-1] if hasattr(output, "shape") else output["sequences"].shape[-1])
        return output

    monkeypatch.setattr(GenerationMixin, "generate", spy)
    options = TranscribeOptions(language="en", temperature=[0.0])
    Transcriber(str(tiny_model_dir), "transformers", "cpu").files(tone_paths[:1], options)
    # A random model never ends its text: without the budget it runs to 448 tokens.
    assert lengths and max(lengths) <= 4 + max_new_tokens(0.7, "en"), lengths


def test_faster_whisper_gets_the_budget_and_the_compression_threshold(tiny_model_dir, tone_paths, monkeypatch):
    from faster_whisper import WhisperModel

    seen, transcribe = [], WhisperModel.transcribe

    def spy(self, audio, **kwargs):
        seen.append(kwargs)
        return transcribe(self, audio, **kwargs)

    monkeypatch.setattr(WhisperModel, "transcribe", spy)
    options = TranscribeOptions(language="en", compression_ratio_threshold=1.0, condition_on_previous_text=False)
    Transcriber(str(tiny_model_dir), "ct2", "cpu", batch_size=1).files(tone_paths[:1], options)
    assert seen[0]["max_new_tokens"] == max_new_tokens(0.7, "en")
    assert seen[0]["compression_ratio_threshold"] == pytest.approx(2.4 / 1.35)


@pytest.mark.parametrize("backend", ["transformers", "ct2"])
@pytest.mark.parametrize(
    "options, refused",
    [
        (TranscribeOptions(task="translate"), "--task translate: this model is English-only"),
        (TranscribeOptions(language="zh"), "--language zh: this model is English-only"),
        (TranscribeOptions(language="en"), None),
    ],
)
def test_an_english_only_model_refuses_what_it_would_silently_ignore(
    tiny_model_dir, tone_paths, backend, options, refused, monkeypatch
):
    from whisper_lora.core.errors import UserError

    transcriber = Transcriber(str(tiny_model_dir), backend, "cpu")
    monkeypatch.setattr(transcriber.engine, "multilingual", False)
    if refused:
        with pytest.raises(UserError, match=refused):
            transcriber.files(tone_paths[:1], options)
    else:
        assert len(transcriber.files(tone_paths[:1], replace_temperature(options))) == 1


def replace_temperature(options: TranscribeOptions) -> TranscribeOptions:
    """Greedy only: a random model fails every threshold, and one pass is enough here."""
    from dataclasses import replace

    return replace(options, temperature=[0.0])


@pytest.mark.parametrize(
    "changed, packed",
    [
        ({}, True),
        ({"temperature": [0.0]}, False),
        ({"logprob_threshold": -0.5}, False),
        ({"no_speech_threshold": 0.3}, False),
    ],
)
def test_clips_decoded_with_thresholds_the_user_set_take_the_path_that_honours_them(
    tiny_model_dir, tone_paths, monkeypatch, changed, packed
):
    from whisper_lora.infer.backends import ct2

    windows, decode_window = [], ct2._decode_window
    monkeypatch.setattr(ct2, "_decode_window", lambda *a: windows.append(1) or decode_window(*a))
    options = TranscribeOptions(language="en", **changed)
    assert len(Transcriber(str(tiny_model_dir), "ct2", "cpu").files(tone_paths[:3], options)) == 3
    assert bool(windows) == packed


def test_a_folder_that_is_no_ctranslate2_whisper_model_is_refused_by_name(tmp_path, tiny_ct2_dir):
    import shutil

    from whisper_lora.core.errors import UserError

    broken = tmp_path / "broken"
    shutil.copytree(tiny_ct2_dir, broken)
    (broken / "model.bin").write_bytes(b"not a CTranslate2 model at all")
    with pytest.raises(
        UserError, match=r"broken: not a Whisper model that CTranslate2 4\.\d+\.\d+ can read"
    ) as refused:
        Transcriber(str(broken), "ct2", "cpu")
    assert "Traceback" not in str(refused.value)

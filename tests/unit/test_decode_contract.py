"""The decode contract: every transcription option reaches the decoder of every backend, or is refused by name."""

import dataclasses
from types import SimpleNamespace

import pytest

from helpers import sine, write_audio
from whisper_lora.core.errors import UserError
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.transcriber import Transcriber

# field -> (a value other than the default, what faster-whisper's transcribe() gets, what transformers' generate()
# gets, what pywhispercpp's transcribe() gets). None for transformers: the option is honoured another way, checked
# below; "refused": a UserError names it.
CONTRACT = {
    "language": ("de", ("language", "de"), ("language", "de"), ("language", "de")),
    "task": ("translate", ("task", "translate"), ("task", "translate"), ("translate", True)),
    "beam_size": (2, ("beam_size", 2), ("num_beams", 2), ("beam_search", {"beam_size": 2, "patience": -1.0})),
    "temperature": ([0.0, 0.5], ("temperature", [0.0, 0.5]), ("temperature", (0.0, 0.5)), "refused"),
    "initial_prompt": (
        "Glossary: tone.",
        ("initial_prompt", "Glossary: tone."),
        ("prompt_ids", "set"),
        ("initial_prompt", "Glossary: tone."),
    ),
    "compression_ratio_threshold": (
        2.0,
        ("compression_ratio_threshold", 2.0 * 2.4 / 1.35),
        ("compression_ratio_threshold", 2.0),
        "refused",
    ),
    "logprob_threshold": (-0.5, ("log_prob_threshold", -0.5), ("logprob_threshold", -0.5), ("logprob_thold", -0.5)),
    "condition_on_previous_text": (False, ("condition_on_previous_text", False), None, ("n_max_text_ctx", 0)),
    "no_speech_threshold": (0.0, ("no_speech_threshold", 0.0), None, ("no_speech_thold", 0.0)),
    "no_repeat_ngram_size": (3, ("no_repeat_ngram_size", 3), ("no_repeat_ngram_size", 3), "refused"),
    "word_timestamps": (True, ("word_timestamps", True), "refused", "refused"),
    "vad_filter": (True, ("vad_filter", True), "refused", "refused"),
    "return_timestamps": (True, None, None, None),
    "short_window": (True, ("encoder frames", 2 * (50 + 64)), "refused", ("audio_ctx", 50 + 64)),  # a 1 s clip
}
BACKENDS = ("ct2", "transformers", "whispercpp")


def test_the_contract_names_every_option():
    assert set(CONTRACT) == {f.name for f in dataclasses.fields(TranscribeOptions)}


@pytest.fixture
def clip(tmp_path):
    return str(write_audio(tmp_path / "tone.wav", sine(1.0, 16000, 330.0), 16000))


@pytest.fixture
def spy(monkeypatch):
    """The keyword arguments of every faster-whisper transcribe(), transformers generate() and pywhispercpp
    transcribe() call."""
    from faster_whisper import WhisperModel
    from pywhispercpp.model import Model
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

    calls: dict[str, list] = {backend: [] for backend in BACKENDS}
    transcribe, generate, whispercpp = WhisperModel.transcribe, WhisperGenerationMixin.generate, Model.transcribe
    encode = WhisperModel.encode

    def ct2_spy(self, audio, **kwargs):
        calls["ct2"].append(kwargs)
        if kwargs.get("word_timestamps"):  # the random model's alignment heads crash CTranslate2's aligner
            return iter([]), SimpleNamespace(language="en", language_probability=1.0)
        return transcribe(self, audio, **kwargs)

    def hf_spy(self, *args, **kwargs):
        calls["transformers"].append(kwargs)
        return generate(self, *args, **kwargs)

    def whispercpp_spy(self, audio, **kwargs):
        calls["whispercpp"].append(kwargs)
        return whispercpp(self, audio, **kwargs)

    def encode_spy(self, features):
        output = encode(self, features)
        calls["ct2"][-1]["encoder frames"] = 2 * output.shape[1]  # what the encoder read, in mel frames
        return output

    monkeypatch.setattr(Model, "transcribe", whispercpp_spy)
    monkeypatch.setattr(WhisperModel, "encode", encode_spy)
    monkeypatch.setattr(WhisperModel, "transcribe", ct2_spy)
    monkeypatch.setattr(WhisperGenerationMixin, "generate", hf_spy)
    return calls


@pytest.fixture(scope="module")
def loaded():
    """One transcriber per backend for the module: the model is the same in every test."""
    return {}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [name for name in CONTRACT if name != "return_timestamps"])
def test_every_option_reaches_the_decoder_or_is_refused(request, loaded, clip, spy, backend, name):
    value, *expectations = CONTRACT[name]
    expected = dict(zip(BACKENDS, expectations, strict=True))[backend]
    greedy = {"temperature": [0.0]} if name != "temperature" else {}  # a random model fails every threshold
    options = TranscribeOptions(**{**greedy, name: value})
    if backend not in loaded:
        model = request.getfixturevalue("tiny_ggml_file" if backend == "whispercpp" else "tiny_model_dir")
        loaded[backend] = Transcriber(str(model), backend, "cpu", batch_size=1)
    transcriber = loaded[backend]
    if expected == "refused":
        with pytest.raises(UserError, match=f"--{name}"):
            transcriber.files([clip], options)
        return
    transcript = transcriber.files([clip], options)[0]
    if expected is None:  # transformers on a clip of one window
        if name == "no_speech_threshold":  # the first step's P(no speech) is above 0: left empty, not decoded
            assert transcript.text == "" and not spy["transformers"]
        else:  # condition_on_previous_text: a clip of one window has no previous text to condition on
            assert spy["transformers"] and transcript.error is None
        return
    key, wanted = expected
    kwargs = spy[backend][0]
    got = kwargs.get(key)
    if wanted == "set":
        assert got is not None, (key, kwargs)
    elif isinstance(wanted, float):
        assert got == pytest.approx(wanted), (key, kwargs)
    else:
        assert got == wanted, (key, kwargs)

"""The decode contract: every transcription option reaches the decoder of every backend, or is refused by name."""

import dataclasses
from types import SimpleNamespace

import pytest

from helpers import sine, write_audio
from whisper_lora.core.errors import UserError
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.transcriber import Transcriber

# field -> (a value other than the default, what faster-whisper's transcribe() gets, what transformers' generate() gets)
# None for transformers: the option is honoured another way, checked below; "refused": a UserError names it.
CONTRACT = {
    "language": ("de", ("language", "de"), ("language", "de")),
    "task": ("translate", ("task", "translate"), ("task", "translate")),
    "beam_size": (2, ("beam_size", 2), ("num_beams", 2)),
    "temperature": ([0.0, 0.5], ("temperature", [0.0, 0.5]), ("temperature", (0.0, 0.5))),
    "initial_prompt": ("Glossary: tone.", ("initial_prompt", "Glossary: tone."), ("prompt_ids", "set")),
    "compression_ratio_threshold": (
        2.0,
        ("compression_ratio_threshold", 2.0 * 2.4 / 1.35),
        ("compression_ratio_threshold", 2.0),
    ),
    "logprob_threshold": (-0.5, ("log_prob_threshold", -0.5), ("logprob_threshold", -0.5)),
    "condition_on_previous_text": (False, ("condition_on_previous_text", False), None),
    "no_speech_threshold": (0.0, ("no_speech_threshold", 0.0), None),
    "word_timestamps": (True, ("word_timestamps", True), "refused"),
    "vad_filter": (True, ("vad_filter", True), "refused"),
    "return_timestamps": (True, None, None),
}


def test_the_contract_names_every_option():
    assert set(CONTRACT) == {f.name for f in dataclasses.fields(TranscribeOptions)}


@pytest.fixture
def clip(tmp_path):
    return str(write_audio(tmp_path / "tone.wav", sine(1.0, 16000, 330.0), 16000))


@pytest.fixture
def spy(monkeypatch):
    """The keyword arguments of every faster-whisper transcribe() and transformers generate() call."""
    from faster_whisper import WhisperModel
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

    calls = {"ct2": [], "transformers": []}
    transcribe, generate = WhisperModel.transcribe, WhisperGenerationMixin.generate

    def ct2_spy(self, audio, **kwargs):
        calls["ct2"].append(kwargs)
        if kwargs.get("word_timestamps"):  # the random model's alignment heads crash CTranslate2's aligner
            return iter([]), SimpleNamespace(language="en", language_probability=1.0)
        return transcribe(self, audio, **kwargs)

    def hf_spy(self, *args, **kwargs):
        calls["transformers"].append(kwargs)
        return generate(self, *args, **kwargs)

    monkeypatch.setattr(WhisperModel, "transcribe", ct2_spy)
    monkeypatch.setattr(WhisperGenerationMixin, "generate", hf_spy)
    return calls


@pytest.fixture(scope="module")
def loaded():
    """One transcriber per backend for the module: the model is the same in every test."""
    return {}


@pytest.mark.parametrize("backend", ["ct2", "transformers"])
@pytest.mark.parametrize("name", [name for name in CONTRACT if name != "return_timestamps"])
def test_every_option_reaches_the_decoder_or_is_refused(request, loaded, clip, spy, backend, name):
    value, ct2_expects, hf_expects = CONTRACT[name]
    expected = ct2_expects if backend == "ct2" else hf_expects
    greedy = {"temperature": [0.0]} if name != "temperature" else {}  # a random model fails every threshold
    options = TranscribeOptions(**{**greedy, name: value})
    if backend not in loaded:
        loaded[backend] = Transcriber(str(request.getfixturevalue("tiny_model_dir")), backend, "cpu", batch_size=1)
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

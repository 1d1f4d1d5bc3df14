"""The whisper.cpp backend: which models it takes, what it refuses, and how options become whisper.cpp's parameters."""

import pytest

from helpers import sine, write_audio
from whisper_lora.core.errors import UserError
from whisper_lora.core.models import ModelError, resolve_model
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.backends.whispercpp import decode_params, refusal, temperature_ladder
from whisper_lora.infer.transcriber import Transcriber, pick_backend

pytest.importorskip("pywhispercpp")  # a failure under CI=true (conftest.py)


@pytest.mark.parametrize(
    ("temperatures", "ladder"),
    [
        ((0.0, 0.2, 0.4, 0.6, 0.8, 1.0), (0.0, 0.2)),
        ((0.5,), (0.5, 0.0)),
        ((0.2, 0.6, 1.0), (0.2, 0.4)),
        ((0.0, 0.5), None),  # stops short of 1.0
        ((0.0, 0.2, 0.6, 1.0), None),  # uneven steps
        ((1.0, 0.5, 0.0), None),  # downwards
    ],
)
def test_fallback_temperatures_become_a_start_and_a_step(temperatures, ladder):
    assert temperature_ladder(temperatures) == (pytest.approx(ladder) if ladder else None)
    assert (refusal(TranscribeOptions(temperature=list(temperatures))) is None) == (ladder is not None)


def test_the_default_options_are_whisper_cpps_own():
    params = decode_params(TranscribeOptions(), 16000 * 60)
    assert refusal(TranscribeOptions()) is None
    assert (params["temperature"], params["temperature_inc"]) == pytest.approx((0.0, 0.2))
    assert params["n_max_text_ctx"] > 0  # conditioned on the previous window, as openai/whisper does
    assert params["no_context"] is True  # but never on the previous file's text
    assert params["language"] == "" and params["detect_language"] is False  # True would stop after detection
    assert (params["logprob_thold"], params["no_speech_thold"]) == (-1.0, 0.6)
    assert params["suppress_nst"] is True  # ct2 and transformers suppress the non-speech symbols by default


def test_a_first_window_prompt_without_conditioning_is_refused():
    options = TranscribeOptions(initial_prompt="Glossary", condition_on_previous_text=False)
    assert "--initial_prompt with --no_condition_on_previous_text" in refusal(options)


def test_a_ggml_file_is_a_model_and_other_files_are_not(tiny_ggml_file, tmp_path):
    assert resolve_model(tiny_ggml_file).kind == "ggml"
    assert pick_backend(str(tiny_ggml_file), "auto") == "whispercpp"
    with pytest.raises(UserError, match="a whisper.cpp file runs on --backend whispercpp"):
        pick_backend(str(tiny_ggml_file), "ct2")
    other = tmp_path / "notes.bin"
    other.write_bytes(b"\0" * 64)
    with pytest.raises(ModelError, match="is a file but not a whisper.cpp model"):
        resolve_model(other)


def test_other_models_are_refused_with_the_command_that_exports_them(tiny_model_dir):
    with pytest.raises(UserError, match=f"whisper-lora export {tiny_model_dir} --format ggml"):
        Transcriber(str(tiny_model_dir), "whispercpp", "cpu")


@pytest.mark.parametrize(
    ("device", "compute_type", "message"),
    [("cuda", None, "--device cuda"), ("cpu", "int8", "--compute_type int8")],
)
def test_settings_it_cannot_honour_are_refused(tiny_ggml_file, device, compute_type, message):
    from whisper_lora.infer.backends.whispercpp import WhisperCppBackend

    with pytest.raises(UserError, match=message):
        WhisperCppBackend.load(str(tiny_ggml_file), device, compute_type)


def test_it_transcribes_files_with_beams_and_with_the_language_detected(tiny_ggml_file, tmp_path):
    clip = str(write_audio(tmp_path / "tone.wav", sine(1.0, 16000, 330.0), 16000))
    transcriber = Transcriber(str(tiny_ggml_file), "auto", "auto")
    assert transcriber.backend == "whispercpp" and transcriber.device == "cpu"
    assert Transcriber(str(tiny_ggml_file), workers=2).engine.contexts.qsize() == 2  # one context per worker
    model = transcriber.engine.contexts.queue[0]
    for beams, strategy in ((3, "BEAM_SEARCH"), (1, "GREEDY")):
        transcript = transcriber.files([clip], TranscribeOptions(beam_size=beams, temperature=[0.0]))[0]
        assert transcript.error is None and transcript.duration == 1.0
        assert transcript.language and transcript.language != ""  # whisper.cpp's detected code
        assert model._params.strategy.name.endswith(strategy)

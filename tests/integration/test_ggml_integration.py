"""The GGML export of the embedded models, read by whisper.cpp, against their CTranslate2 export, on espeak-ng and real speech."""

import time

import pytest

from helpers import have_espeak, real_speech
from whisper_lora.convert.export import export_model
from whisper_lora.core.metrics import error_rate
from whisper_lora.data.sentences import ENGLISH
from whisper_lora.demo.run import speak
from whisper_lora.infer.parity import greedy_reader, whispercpp_reader

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)"),
]
pytest.importorskip("pywhispercpp")  # a failure under CI=true (conftest.py)

# The bound, 1 point above the CTranslate2 export's WER (float32, so that only whisper.cpp's rounding
# shows), held in words because the CT2 side moves by a word or two between machines: on these 193 words base
# read 10 errors on one 2-core machine and 8 on CI's, while each GGML file read the same on both (f16 10, q8_0 9,
# q5_0 13). Not below CT2: faster-whisper's greedy path reads some clips differently from both whisper.cpp and
# transformers (tiny.en: "Ed in the room" for Edinburgh). q5_0 rounds harder, so it is held to 6 words.
WORSE_BY_WORDS = {"f16": 3, "q8_0": 3, "q5_0": 6}


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    """(path, transcript) pairs: four espeak-ng sentences and four real multi-sentence prompts, about 120 words."""
    folder = tmp_path_factory.mktemp("english")
    spoken = [(str(speak(text, folder / f"{i}.wav", "en")), text) for i, text in enumerate(ENGLISH[:4])]
    recorded = [(p.audio_path, p.text) for p in real_speech("en") if p.sentences > 1][:4]
    return spoken + recorded


def word_error(read, clips) -> float:
    return error_rate([text for _, text in clips], [read(path, "en") for path, _ in clips], "wer", "en")


def check_against_ct2(model_path, kinds, clips, folder) -> dict:
    """WER of the CTranslate2 export and of each GGML file, each read greedily; each GGML type within its bound."""
    ct2 = export_model(model_path, folder / "ct2", "ct2", "float32")["ct2"]
    files = export_model(model_path, folder / "ggml", "ggml", ggml_types=kinds)
    rates = {"ct2": word_error(greedy_reader(ct2, "ct2"), clips)}
    for kind in kinds:
        started = time.monotonic()
        rates[kind] = word_error(whispercpp_reader(files[f"ggml {kind}"]), clips)
        print(
            f"{model_path} {kind}: WER {rates[kind]:.3f} against CT2 {rates['ct2']:.3f}, {time.monotonic() - started:.0f} s"
        )
    words = sum(len(text.split()) for _, text in clips)
    for kind in kinds:
        assert rates[kind] <= rates["ct2"] + WORSE_BY_WORDS[kind] / words, (words, rates)
    return rates


def test_base_reads_as_its_ct2_export_in_q8_0(english, tmp_path):
    rates = check_against_ct2("base", ("q8_0",), english, tmp_path)  # the file to use; f16 and q5_0: README
    assert rates["ct2"] < 0.1, rates  # the comparison is between models that read the speech


def test_the_whispercpp_backend_keeps_each_file_to_itself(tmp_path):
    """whisper.cpp prompts a call with the previous call's text unless told not to: English before Spanish."""
    from whisper_lora.core.records import TranscribeOptions
    from whisper_lora.infer.transcriber import Transcriber

    path = export_model("base", tmp_path / "ggml", "ggml", ggml_types=("q8_0",))["ggml q8_0"]
    english, spanish = real_speech("en")[:4], real_speech("es")[:4]
    model = Transcriber(str(path))
    read = {p.language: [] for p in english + spanish}
    for prompt in english + spanish:  # default options: each file's windows are conditioned on its own text
        transcript = model.files([prompt.audio_path], TranscribeOptions(language=prompt.language))[0]
        read[prompt.language].append(transcript.text)
    assert error_rate([p.text for p in english], read["en"], "wer", "en") < 0.15, read["en"]
    assert error_rate([p.text for p in spanish], read["es"], "wer", "es") < 0.35, read["es"]

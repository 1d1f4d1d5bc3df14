"""The converted embedded Whisper agrees with CTranslate2 and faster-whisper on the original folder."""

import ctranslate2
import numpy as np
import pytest
import torch
from faster_whisper import WhisperModel

from helpers import espeak, have_espeak
from whisper_lora.audio.decode import decode_audio
from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.metrics import default_metric, error_rate, normalize_text
from whisper_lora.core.models import embedded_ct2_dir
from whisper_lora.infer.backends.hf import transcribe_clip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)"),
]

# (language, voice, words per minute, sentence); all are read correctly by whisper-base in both runtimes.
CLIPS = [
    ("en", "en-us", 140, "Please call Stella and ask her to bring these things with her from the store."),
    ("en", "en", 130, "I would like a cup of coffee with milk and sugar, please."),
    ("zh", "cmn-latn-pinyin", 100, "我爱你"),
]


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    return [
        (lang, text, espeak(text, folder / f"{i}.wav", voice, speed))
        for i, (lang, voice, speed, text) in enumerate(CLIPS)
    ]


def ct2_prompt(tokenizer, language):
    tokens = ["<|startoftranscript|>", f"<|{language}|>", "<|transcribe|>", "<|notimestamps|>"]
    return tokenizer.convert_tokens_to_ids(tokens if language else [tokens[0], tokens[-1]])


@pytest.mark.parametrize("name", ["base", "tiny.en"])
def test_same_tokens_as_ctranslate2_on_the_same_features(name, base, clips):
    model, processor = base if name == "base" else load_whisper(name)
    multilingual = model.generation_config.is_multilingual
    ct2 = ctranslate2.models.Whisper(str(embedded_ct2_dir(name)), device="cpu", compute_type="float32")
    for language, _, wav in clips if multilingual else clips[:2]:
        features = processor.feature_extractor(
            decode_audio(wav), sampling_rate=16000, return_tensors="np"
        ).input_features
        prompt = ct2_prompt(processor.tokenizer, language if multilingual else None)
        options = dict(language=language, task="transcribe") if multilingual else {}
        ours = model.generate(torch.from_numpy(features), **options).tolist()[0]
        theirs = ct2.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(features)), [prompt], beam_size=1)
        assert [t for t in ours if t < prompt[0] - 1] == theirs[0].sequences_ids[0], (name, language)  # text tokens


def test_same_words_as_faster_whisper(base, clips):
    model, processor = base
    faster = WhisperModel(str(embedded_ct2_dir("base")), device="cpu", compute_type="float32", cpu_threads=2)
    for language, reference, wav in clips:
        ours = transcribe_clip(model, processor, wav, language=language)
        segments, _ = faster.transcribe(
            str(wav),
            language=language,
            beam_size=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
        )
        theirs = "".join(segment.text for segment in segments)
        assert normalize_text(ours, language) == normalize_text(theirs, language)
        assert error_rate([reference], [ours], default_metric(language), language) <= 0.1


def test_mandarin_comes_out_simplified(base, clips):
    language, reference, wav = clips[2]
    assert transcribe_clip(*base, wav, language=language) == "我爱你"


def test_language_is_detected_when_not_given(base, clips):
    _, reference, wav = clips[0]
    assert normalize_text(transcribe_clip(*base, wav)) == normalize_text(reference)


def test_tiny_en_transcribes_english(clips):
    model, processor = load_whisper("tiny.en")
    assert model.generation_config.is_multilingual is False and model.config.vocab_size == 51864
    _, reference, wav = clips[0]
    assert error_rate([reference], [transcribe_clip(model, processor, wav)], "wer") <= 0.25

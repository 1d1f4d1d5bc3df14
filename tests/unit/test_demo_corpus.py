"""The demo's corpus: reused only when made from the same parts, and kept apart from the out-of-domain sets."""

import json
import random
from pathlib import Path

import av
import numpy as np
import pytest

from helpers import sine, write_audio
from whisper_lora.audio.noise import add_noise
from whisper_lora.data.sentences import ENGLISH, MANDARIN
from whisper_lora.demo import run as demo


def quiet_speak(spoken: list):
    def speak(text, path, voice, speed=150, pitch=50):
        spoken.append(text)
        return write_audio(path, sine(0.5, 16000), 16000)

    return speak


def test_a_corpus_is_reused_only_when_made_from_the_same_parts(tmp_path, monkeypatch):
    spoken: list[str] = []
    monkeypatch.setattr(demo, "speak", quiet_speak(spoken))
    train, _ = demo.build_corpus(tmp_path, zh=(3, 1), en=(0, 0))
    assert len(spoken) == 4
    demo.build_corpus(tmp_path, zh=(3, 1), en=(0, 0))
    assert len(spoken) == 4  # the same counts, seed and parts: nothing spoken again
    monkeypatch.setattr(demo, "MANDARIN_PARTS", (("猫", "狗"), ("今天", "明天"), ("睡觉",)))
    demo.build_corpus(tmp_path, zh=(3, 1), en=(0, 0))  # the same counts and seed, other parts
    assert len(spoken) == 8 and all(row["text"].endswith("睡觉") for row in json.loads(train.read_text()))


def test_out_of_domain_sentences_share_few_words_with_the_templates():
    for parts, sentences in ((demo.MANDARIN_PARTS, MANDARIN), (demo.ENGLISH_PARTS, ENGLISH)):
        words = {word.strip(".") for part in parts for word in part if len(word.strip(".")) > 1}
        shared = {word for word in words if any(word in sentence for sentence in sentences)}
        assert len(shared) <= 2, shared  # 晚上 is one


def test_the_mandarin_training_rows_hear_hundreds_of_characters():
    # 66 characters once: out-of-domain sentences then mostly held syllables training never spoke.
    rows = demo._sentences(demo.MANDARIN_PARTS, "", 240, random.Random(0))
    assert len(set("".join(rows))) >= 300


def test_the_shifted_set_differs_from_the_out_of_domain_one_in_text_voice_container_rate_and_noise(
    tmp_path, monkeypatch
):
    voices: list[tuple] = []

    def speak(text, path, voice, speed=150, pitch=50):
        voices.append((voice, speed, pitch))
        return write_audio(path, sine(1.0, 22050), 22050)  # espeak-ng writes 22 kHz WAV

    monkeypatch.setattr(demo, "speak", speak)
    ood = json.loads(demo.build_out_of_domain(tmp_path, seed=3, zh=16, en=2).read_text())
    corpus_voices, voices[:] = list(voices), []
    shifted = json.loads(demo.build_shifted(tmp_path, seed=3, zh=16, en=2).read_text())
    assert len(shifted) == 18 and not {r["text"] for r in shifted} & {r["text"] for r in ood}
    assert all(not 125 <= speed <= 175 and not 30 <= pitch <= 70 and "+" in voice for voice, speed, pitch in voices)
    assert all("+" not in voice for voice, _, _ in corpus_voices)
    first = tmp_path / shifted[0]["audio_path"]
    assert first.suffix == ".mp3" and {Path(r["audio_path"]).suffix for r in shifted} == {".mp3", ".ogg"}
    with av.open(str(first)) as container:
        assert container.streams.audio[0].rate == 8000


@pytest.mark.parametrize("kind", ["white noise", "brown noise"])
def test_noise_is_mixed_in_at_the_asked_signal_to_noise_ratio(kind):
    speech = 0.3 * sine(2.0, 16000)[0]
    mixed = add_noise(speech, 20.0, kind, seed=1)
    assert 10 * np.log10(np.mean(speech**2) / np.mean((mixed - speech) ** 2)) == pytest.approx(20.0, abs=0.01)

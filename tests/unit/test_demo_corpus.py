"""The demo's corpus: reused only when made from the same parts, and kept apart from the out-of-domain sentences."""

import json
import random

from helpers import sine, write_audio
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

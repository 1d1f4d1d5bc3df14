"""Training examples: prompt tokens, masked labels, timestamps, and the collator."""

import numpy as np
import pytest
from helpers import sine, write_audio

from whisper_lora.data import Row
from whisper_lora.dataset import IGNORE_INDEX, LabelOptions, SpeechCollator, SpeechDataset, encode_example


def names(tokenizer, ids):
    return [tokenizer.convert_ids_to_tokens(i) if i != IGNORE_INDEX else None for i in ids]


def test_plain_example_predicts_the_language_and_masks_the_rest_of_the_prompt(tokenizer):
    example = encode_example(tokenizer, "你好", "zh", LabelOptions(), seconds=None)
    assert names(tokenizer, example["decoder_input_ids"][:4]) == ["<|startoftranscript|>", "<|zh|>", "<|transcribe|>", "<|notimestamps|>"]
    assert names(tokenizer, example["labels"][:3]) == ["<|zh|>", None, None]
    assert names(tokenizer, example["labels"])[-1] == "<|endoftext|>"
    assert tokenizer.decode(example["labels"][3:-1]) == "你好"
    assert len(example["decoder_input_ids"]) == len(example["labels"])


def test_timestamped_example_predicts_both_timestamps(tokenizer):
    example = encode_example(tokenizer, "hello there", "en", LabelOptions(), seconds=2.345)
    labels = names(tokenizer, example["labels"])
    assert labels[:2] == ["<|en|>", None]  # the language is predicted; <|transcribe|> is given
    assert labels[2] == "<|0.00|>" and labels[-2] == "<|2.34|>" and labels[-1] == "<|endoftext|>"
    assert tokenizer.decode(example["labels"][3:-2]) == " hello there"  # space-separated languages lead with a space


def test_english_only_models_take_no_language_or_task(tokenizer):
    example = encode_example(tokenizer, "hi", "en", LabelOptions(multilingual=False), seconds=None)
    assert names(tokenizer, example["decoder_input_ids"][:2]) == ["<|startoftranscript|>", "<|notimestamps|>"]
    assert example["labels"][0] == IGNORE_INDEX


def test_rows_without_a_language_predict_no_language_token(tokenizer):
    example = encode_example(tokenizer, "hi", None, LabelOptions(), seconds=None)
    assert names(tokenizer, example["decoder_input_ids"][:3]) == ["<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>"]
    assert example["labels"][:2] == [IGNORE_INDEX] * 2


def test_long_clips_cap_at_the_last_timestamp(tokenizer):
    example = encode_example(tokenizer, "x", "en", LabelOptions(), seconds=45.0)
    assert names(tokenizer, example["labels"])[-2] == "<|30.00|>"


@pytest.fixture
def rows(tmp_path):
    paths = [write_audio(tmp_path / f"{i}.wav", sine(1.0 + i, 16000, 300.0 * (i + 1)), 16000) for i in range(4)]
    return [Row("m.json", i + 1, str(p), f"tone number {i}", language="en") for i, p in enumerate(paths)]


def test_dataset_and_collator(rows, tokenizer):
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    dataset = SpeechDataset(rows, processor, LabelOptions(timestamp_fraction=0.5, seed=1))
    examples = [dataset[i] for i in range(len(dataset))]
    timestamped = ["<|0.00|>" in names(tokenizer, e["labels"]) for e in examples]
    assert any(timestamped) and not all(timestamped)
    assert [dataset[i]["labels"] for i in range(4)] == [e["labels"] for e in examples]  # the choice is stable
    batch = SpeechCollator(50257)(examples)
    assert batch["input_features"].shape == (4, 80, 3000) and batch["input_features"].dtype.is_floating_point
    width = max(len(e["labels"]) for e in examples)
    assert batch["labels"].shape == batch["decoder_input_ids"].shape == (4, width)
    shortest = min(range(4), key=lambda i: len(examples[i]["labels"]))
    assert batch["labels"][shortest, -1] == IGNORE_INDEX and batch["decoder_input_ids"][shortest, -1] == 50257
    assert not np.isnan(batch["input_features"].numpy()).any()


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_stem_cache_matches_the_encoder_and_decodes_each_row_once(rows, tokenizer, depth):
    import torch
    from helpers import tiny_whisper
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from whisper_lora.dataset import EncoderStemCache, encoder_top

    model = tiny_whisper()
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    options = LabelOptions(timestamp_fraction=0.5, seed=1)
    plain = SpeechDataset(rows, processor, options)
    cached = SpeechDataset(rows, processor, options, EncoderStemCache(model.model.encoder, depth, budget_bytes=10**9))
    decoded = []
    cached.samples = lambda index, original=cached.samples: decoded.append(index) or original(index)
    collate = SpeechCollator(50257)
    first, again = collate([cached[i] for i in range(4)]), collate([cached[i] for i in range(4)])
    assert decoded == [0, 1, 2, 3] and torch.equal(first["encoder_stem"], again["encoder_stem"])
    assert torch.equal(first["labels"], again["labels"])
    reference = collate([plain[i] for i in range(4)])
    stem = first.pop("encoder_stem")
    with torch.no_grad():
        expected = model(**reference).loss
        topped = model(encoder_outputs=(encoder_top(model.model.encoder, stem, depth),), **first).loss
    assert torch.allclose(topped, expected, rtol=1e-3)


def test_encoder_cache_respects_its_budget(rows, tokenizer):
    from helpers import tiny_whisper
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from whisper_lora.dataset import EncoderStemCache

    cache = EncoderStemCache(tiny_whisper().model.encoder, 1, budget_bytes=2 * 1500 * 64 * 2)  # room for two outputs
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    dataset = SpeechDataset(rows, processor, LabelOptions(), cache)
    for i in range(4):
        dataset[i]
    assert sorted(cache.outputs) == [0, 1] and cache.used == 2 * 1500 * 64 * 2

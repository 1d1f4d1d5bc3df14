"""Training examples: prompt tokens, masked labels, timestamps, and the collator."""

from itertools import pairwise

import numpy as np
import pytest

from helpers import sine, write_audio
from whisper_lora.data.manifests import Row
from whisper_lora.train.dataset import IGNORE_INDEX, LabelOptions, SpeechCollator, SpeechDataset, encode_example


def names(tokenizer, ids):
    return [tokenizer.convert_ids_to_tokens(i) if i != IGNORE_INDEX else None for i in ids]


def test_plain_example_predicts_the_language_and_masks_the_rest_of_the_prompt(tokenizer):
    example = encode_example(tokenizer, "你好", "zh", LabelOptions(), seconds=None)
    assert names(tokenizer, example["decoder_input_ids"][:4]) == [
        "<|startoftranscript|>",
        "<|zh|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ]
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
    assert names(tokenizer, example["decoder_input_ids"][:3]) == [
        "<|startoftranscript|>",
        "<|transcribe|>",
        "<|notimestamps|>",
    ]
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
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from helpers import tiny_whisper
    from whisper_lora.train.dataset import EncoderStemCache, encoder_top

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
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from helpers import tiny_whisper
    from whisper_lora.train.dataset import EncoderStemCache

    cache = EncoderStemCache(tiny_whisper().model.encoder, 1, budget_bytes=2 * 1500 * 64 * 2)  # room for two outputs
    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    dataset = SpeechDataset(rows, processor, LabelOptions(), cache)
    for i in range(4):
        dataset[i]
    assert sorted(cache.outputs) == [0, 1] and cache.used == 2 * 1500 * 64 * 2


def test_packing_groups_rows_of_one_language_within_the_window_and_the_row_limit(tokenizer):
    from whisper_lora.train.dataset import PACK_GAP, PACK_SECONDS, pack_rows

    rows = [Row("m.json", i + 1, f"{i}.wav", f"row {i}", language="en" if i % 3 else "fr") for i in range(30)]
    seconds = [2.0 + (i % 5) for i in range(30)]
    windows = pack_rows(rows, seconds, tokenizer, LabelOptions(seed=3), max_rows=4)
    assert sorted(i for window in windows for i in window) == list(range(30))  # every row once
    for window in windows:
        assert len({rows[i].language for i in window}) == 1 and 1 <= len(window) <= 4
        assert sum(seconds[i] for i in window) + PACK_GAP[1] * (len(window) - 1) <= PACK_SECONDS
    assert len(windows) < 15  # most windows hold several rows
    assert pack_rows(rows, seconds, tokenizer, LabelOptions(seed=3), max_rows=1) != windows
    assert all(len(w) == 1 for w in pack_rows(rows, seconds, tokenizer, LabelOptions(seed=3), max_rows=1))


def test_a_packed_window_transcribes_its_rows_in_order_between_their_timestamps(rows, tokenizer):
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    from whisper_lora.train.dataset import PACK_GAP

    processor = WhisperProcessor(feature_extractor=WhisperFeatureExtractor(), tokenizer=tokenizer)
    dataset = SpeechDataset(rows, processor, LabelOptions(timestamp_fraction=1.0), windows=[[2, 0, 1], [3]])
    assert len(dataset) == 2
    example = dataset[0]
    spans = [span for _, span in dataset.pieces[0]]
    assert [round(end - start, 2) for start, end in spans] == [3.0, 1.0, 2.0]  # rows 2, 0, 1 of 3, 1 and 2 s
    gaps = [later[0] - earlier[1] for earlier, later in pairwise(spans)]
    assert all(PACK_GAP[0] <= gap <= PACK_GAP[1] for gap in gaps)
    labels = names(tokenizer, example["labels"])
    stamps = [(i, label) for i, label in enumerate(labels) if label and label.startswith("<|") and label[2].isdigit()]
    assert [float(label[2:-2]) for _, label in stamps] == pytest.approx(
        [round(x / 0.02) * 0.02 for span in spans for x in span]
    )
    texts = [
        tokenizer.decode(example["labels"][a + 1 : b]) for (a, _), (b, _) in zip(stamps[::2], stamps[1::2], strict=True)
    ]
    assert texts == [" tone number 2", " tone number 0", " tone number 1"]
    silent = example["input_features"][:, round(spans[0][1] * 100) + 5 : round(spans[1][0] * 100) - 5]
    assert silent.max() < example["input_features"][:, : round(spans[0][1] * 100)].max()  # the gap is silence
    plain = SpeechDataset(rows, processor, LabelOptions(timestamp_fraction=0.0), windows=[[2, 0, 1]])[0]
    assert tokenizer.decode(plain["labels"][3:-1]) == " tone number 2 tone number 0 tone number 1"


def test_korean_labels_lead_with_a_space_as_whisper_writes_them(tokenizer):
    example = encode_example(tokenizer, "안녕하세요 여러분", "ko", LabelOptions(), seconds=None)
    assert tokenizer.decode(example["labels"][3:-1]) == " 안녕하세요 여러분"
    japanese = encode_example(tokenizer, "こんにちは", "ja", LabelOptions(), seconds=None)
    assert tokenizer.decode(japanese["labels"][3:-1]) == "こんにちは"


def test_one_language_table_joins_scores_and_labels_alike():
    from whisper_lora.core.metrics import default_metric
    from whisper_lora.core.records import Segment, join_segments

    segments = [Segment(0.0, 1.0, "안녕하세요"), Segment(1.0, 2.0, "여러분")]
    assert join_segments(segments, "ko") == "안녕하세요 여러분" and default_metric("ko") == "cer"
    assert join_segments([Segment(0, 1, "你好"), Segment(1, 2, "世界")], "zh") == "你好世界"
    assert join_segments([Segment(0, 1, "hello"), Segment(1, 2, "world")], "en") == "hello world"
    assert default_metric("ja") == "cer" and default_metric("en") == "wer" and default_metric(None) == "wer"


def test_a_row_without_speech_is_whispers_empty_transcript(tokenizer):
    for seconds in (None, 3.0):
        example = encode_example(tokenizer, "", "en", LabelOptions(), seconds=seconds)
        prompt = names(tokenizer, example["decoder_input_ids"])
        assert prompt[:3] == ["<|startoftranscript|>", "<|en|>", "<|transcribe|>"]
        labels = names(tokenizer, example["labels"])
        assert labels[0] == "<|nocaptions|>" and labels[-1] == "<|endoftext|>"  # no language: Whisper's no-speech
        assert [label for label in example["labels"][1:-1] if label != IGNORE_INDEX] == []  # no text, no timestamps


def test_audio_without_speech_in_a_packed_window_is_a_gap_between_segments(tokenizer):
    from whisper_lora.train.dataset import encode_window

    example = encode_window(tokenizer, ["one", "", "three"], "en", LabelOptions(), [(0.0, 1.0), (2.0, 5.0), (6.0, 7.0)])
    labels = names(tokenizer, example["labels"])
    assert labels[0] == "<|en|>"  # a window with speech in it predicts its language
    stamps = [label for label in labels if label and label.startswith("<|") and label[2].isdigit()]
    assert stamps == ["<|0.00|>", "<|1.00|>", "<|6.00|>", "<|7.00|>"]
    text = [label for label in example["labels"] if label != IGNORE_INDEX]
    assert tokenizer.decode(text, skip_special_tokens=True) == " one three"

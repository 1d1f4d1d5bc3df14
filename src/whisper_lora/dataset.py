"""Training examples: decoded audio to log-mel features, transcripts to Whisper's prompt and label tokens."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from .audio import SAMPLE_RATE, decode_audio
from .ct2 import TIME_PRECISION, TIMESTAMP_TOKENS
from .data import Row
from .metrics import CHARACTER_LANGUAGES

IGNORE_INDEX = -100  # label positions the loss skips


@dataclass(frozen=True)
class LabelOptions:
    """How transcripts become token sequences."""

    language: str | None = None  # used for rows without their own 'language'
    task: str = "transcribe"
    timestamp_fraction: float = 0.5  # share of rows trained as one timestamped segment
    seed: int = 42
    multilingual: bool = True  # English-only models take no language or task token


def _text_tokens(tokenizer, text: str, language: str | None) -> list[int]:
    # Whisper writes a space before each word of space-separated languages, the first one included.
    text = text.strip() if language in CHARACTER_LANGUAGES else " " + text.strip()
    return tokenizer(text, add_special_tokens=False).input_ids


def timestamp_token(tokenizer, seconds: float) -> int:
    """The timestamp token nearest to seconds, within Whisper's 30 s window."""
    index = min(round(seconds / TIME_PRECISION), TIMESTAMP_TOKENS - 1)
    return tokenizer.convert_tokens_to_ids("<|0.00|>") + index


def encode_example(tokenizer, text: str, language: str | None, options: LabelOptions, seconds: float | None) -> dict:
    """decoder_input_ids and labels for one transcript; seconds=None trains without timestamps.

    The task and <|notimestamps|> are masked out of the labels, as the model is always given them. The
    language token stays a label: predicting it is how Whisper detects the language, and a model never
    trained on it drifts (measured: a fine-tuned model called espeak Mandarin English or Thai).
    """
    ids = tokenizer.convert_tokens_to_ids
    prompt = [ids("<|startoftranscript|>")]
    if options.multilingual:
        prompt += ([ids(f"<|{language}|>")] if language else []) + [ids(f"<|{options.task}|>")]
    text_ids = _text_tokens(tokenizer, text, language)
    if seconds is None:
        forced = prompt + [ids("<|notimestamps|>")]
        tokens = forced + text_ids + [ids("<|endoftext|>")]
    else:
        forced = prompt
        end = timestamp_token(tokenizer, seconds)
        tokens = forced + [timestamp_token(tokenizer, 0.0)] + text_ids + [end, ids("<|endoftext|>")]
    labels = tokens[1:]
    keep_language = 1 if options.multilingual and language else 0
    labels[keep_language : len(forced) - 1] = [IGNORE_INDEX] * (len(forced) - 1 - keep_language)
    return {"decoder_input_ids": tokens[:-1], "labels": labels}


def encoder_stem(encoder, features: torch.Tensor, depth: int) -> torch.Tensor:
    """Hidden states after the encoder's convolutions, positions and its first depth layers."""
    hidden = torch.nn.functional.gelu(encoder.conv1(features))
    hidden = torch.nn.functional.gelu(encoder.conv2(hidden)).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    for layer in encoder.layers[:depth]:
        hidden = layer(hidden, None)
    return hidden


def encoder_top(encoder, stem: torch.Tensor, depth: int) -> torch.Tensor:
    """The rest of the encoder from encoder_stem's output: layers from depth on, then the final norm."""
    for layer in encoder.layers[depth:]:
        stem = layer(stem, None)
    return encoder.layer_norm(stem)


class EncoderStemCache:
    """Outputs of the frozen lower encoder layers kept in memory (float16) up to a byte budget.

    Training runs only the layers above them, and later epochs skip decoding the audio. Valid only while
    those layers have nothing to train and the input features do not change between epochs.
    """

    def __init__(self, encoder, depth: int, budget_bytes: int, bf16: bool = False):
        self.encoder, self.depth, self.budget, self.bf16 = encoder, depth, budget_bytes, bf16
        self.used, self.outputs = 0, {}

    def __call__(self, index: int, features: np.ndarray | None) -> torch.Tensor:
        if index in self.outputs:
            return self.outputs[index].float()
        parameter = next(self.encoder.parameters())
        inputs = torch.from_numpy(features)[None].to(parameter.device, parameter.dtype)
        with torch.no_grad(), torch.autocast(parameter.device.type, torch.bfloat16, enabled=self.bf16):
            hidden = encoder_stem(self.encoder, inputs, self.depth)[0].float().cpu()
        size = hidden.numel() * 2
        if self.used + size <= self.budget:
            self.outputs[index], self.used = hidden.half(), self.used + size
            return self.outputs[index].float()  # the same rounding in every epoch
        return hidden


class SpeechDataset(torch.utils.data.Dataset):
    """Rows decoded on access into {input_features or encoder_stem, decoder_input_ids, labels}."""

    def __init__(self, rows: list[Row], processor, options: LabelOptions, encoder_cache: EncoderStemCache | None = None):
        self.rows, self.processor, self.options, self.encoder_cache = rows, processor, options, encoder_cache
        self.seconds: dict[int, float] = {}  # decoded durations, for timestamp labels

    def __len__(self) -> int:
        return len(self.rows)

    def samples(self, index: int) -> np.ndarray:
        row = self.rows[index]
        return decode_audio(row.audio_path, row.start, row.end)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel features of 16 kHz samples, padded to Whisper's 30 s window."""
        extractor = self.processor.feature_extractor
        return extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]

    def language(self, index: int) -> str | None:
        return self.rows[index].language or self.options.language

    def __getitem__(self, index: int) -> dict:
        options = self.options
        timestamped = random.Random(options.seed * 1_000_003 + index).random() < options.timestamp_fraction
        cache = self.encoder_cache
        if cache is not None and index in cache.outputs:
            audio = {"encoder_stem": cache(index, None)}  # the audio need not be decoded again
        else:
            samples = self.samples(index)
            self.seconds[index] = len(samples) / SAMPLE_RATE
            features = self.features(samples)
            audio = {"input_features": features} if cache is None else {"encoder_stem": cache(index, features)}
        seconds = self.seconds[index] if timestamped else None
        example = encode_example(self.processor.tokenizer, self.rows[index].text, self.language(index), options, seconds)
        return {**audio, **example}


class SpeechCollator:
    """Stacks features and right-pads decoder inputs (with end-of-text) and labels (with IGNORE_INDEX)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["labels"]) for e in examples)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in examples])

        batch = {"decoder_input_ids": pad("decoder_input_ids", self.pad_token_id), "labels": pad("labels", IGNORE_INDEX)}
        if "encoder_stem" in examples[0]:
            batch["encoder_stem"] = torch.stack([e["encoder_stem"] for e in examples])
        else:
            batch["input_features"] = torch.from_numpy(np.stack([e["input_features"] for e in examples]))
        return batch

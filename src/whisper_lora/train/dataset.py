"""Training examples: decoded audio to log-mel features, transcripts to Whisper's prompt and label tokens."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.audio.perturb import perturb
from whisper_lora.convert.ct2 import TIME_PRECISION, TIMESTAMP_TOKENS
from whisper_lora.convert.hf import no_speech_token
from whisper_lora.core.languages import traits
from whisper_lora.data.manifests import Row

IGNORE_INDEX = -100  # label positions the loss skips
PACK_SECONDS = 29.0  # audio in one training window, leaving room for the last end timestamp
PACK_GAP = (1.0, 3.0)  # seconds of silence between packed rows, drawn per gap
PROMPT_TOKENS = 4  # start, language, task and end of text
MAX_LABEL_TOKENS = 440  # under the decoder's 448 positions


@dataclass(frozen=True)
class LabelOptions:
    """How transcripts become token sequences."""

    language: str | None = None  # used for rows without their own 'language'
    task: str = "transcribe"
    timestamp_fraction: float = 0.5  # share of windows transcribed with timestamps
    seed: int = 42
    multilingual: bool = True  # English-only models take no language or task token


def _text_tokens(tokenizer, text: str, language: str | None) -> list[int]:
    if not text.strip():
        return []  # a row without speech
    # Whisper writes a space before each word of space-separated languages, the first one included.
    text = " " + text.strip() if traits(language).spaces else text.strip()
    return tokenizer(text, add_special_tokens=False).input_ids


def timestamp_token(tokenizer, seconds: float) -> int:
    """The timestamp token nearest to seconds, within Whisper's 30 s window."""
    index = min(round(seconds / TIME_PRECISION), TIMESTAMP_TOKENS - 1)
    return tokenizer.convert_tokens_to_ids("<|0.00|>") + index


def encode_example(tokenizer, text: str, language: str | None, options: LabelOptions, seconds: float | None) -> dict:
    """decoder_input_ids and labels for one transcript; seconds=None trains without timestamps."""
    return encode_window(tokenizer, [text], language, options, None if seconds is None else [(0.0, seconds)])


def encode_window(
    tokenizer, texts: list[str], language: str | None, options: LabelOptions, spans: list[tuple[float, float]] | None
) -> dict:
    """decoder_input_ids and labels for the transcripts of one window; spans=None trains without timestamps.

    With spans, each transcript is a segment between its start and end timestamps, as Whisper writes
    them. An empty transcript (a row without speech) adds no tokens. A window without speech is labelled as
    Whisper was trained on one: <|nospeech|> where the language would be predicted (the probability that
    decoders compare with --no_speech_threshold), and the end of text right after the prompt. The task and <|notimestamps|> are masked out of the labels, as the model is always given them.
    The language token stays a label: predicting it is how Whisper detects the language, and a model
    never trained on it drifts (measured: a fine-tuned model called espeak Mandarin English or Thai).
    """
    ids = tokenizer.convert_tokens_to_ids
    prompt = [ids("<|startoftranscript|>")]
    if options.multilingual:
        prompt += ([ids(f"<|{language}|>")] if language else []) + [ids(f"<|{options.task}|>")]
    pieces = [_text_tokens(tokenizer, text, language) for text in texts]
    if spans is None:
        forced = prompt + [ids("<|notimestamps|>")]
        tokens = forced + [token for piece in pieces for token in piece] + [ids("<|endoftext|>")]
    else:
        forced, tokens = prompt, list(prompt)
        for piece, (start, end) in zip(pieces, spans, strict=True):
            if piece:  # audio without speech is a gap between segments, as in Whisper's own labels
                tokens += [timestamp_token(tokenizer, start), *piece, timestamp_token(tokenizer, end)]
        tokens.append(ids("<|endoftext|>"))
    labels = tokens[1:]
    keep_language = 1 if options.multilingual and language else 0
    labels[keep_language : len(forced) - 1] = [IGNORE_INDEX] * (len(forced) - 1 - keep_language)
    if not any(pieces):
        labels[0] = no_speech_token(tokenizer)
    return {"decoder_input_ids": tokens[:-1], "labels": labels}


def pack_rows(
    rows: list[Row], seconds: list[float], tokenizer, options: LabelOptions, max_rows: int
) -> list[list[int]]:
    """Row indices grouped into training windows of one language, in a seeded order, filled greedily.

    A window holds at most max_rows rows and fits in PACK_SECONDS with the widest gaps between them,
    and its timestamped transcript fits the decoder.
    """
    order = list(range(len(rows)))
    random.Random(options.seed).shuffle(order)
    windows: list[list[int]] = []
    filling: dict = {}  # language -> (members, seconds with gaps, label tokens)
    for index in order:
        language = rows[index].language or options.language
        size = sum(len(_text_tokens(tokenizer, text, language)) + 2 for text, _ in pieces(rows[index], seconds[index]))
        members, used, count = filling.get(language, ([], 0.0, PROMPT_TOKENS))
        full = len(members) >= max_rows or used + seconds[index] > PACK_SECONDS or count + size > MAX_LABEL_TOKENS
        if members and full:
            windows.append(members)
            members, used, count = [], 0.0, PROMPT_TOKENS
        filling[language] = (members + [index], used + seconds[index] + PACK_GAP[1], count + size)
    return windows + [members for members, _, _ in filling.values()]


def pieces(row: Row, seconds: float) -> list[tuple[str, tuple[float, float]]]:
    """A row's transcripts and where each sits in its audio: its timed segments, or its whole text over seconds."""
    if row.segments is None:
        return [(row.text, (0.0, seconds))]
    return [(cue.text, (cue.start, cue.end)) for cue in row.segments]


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
        self.used = 0
        self.outputs: dict[int, torch.Tensor] = {}

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
    """Windows of rows decoded on access into {input_features or encoder_stem, decoder_input_ids, labels}.

    A window is one row unless `windows` (from pack_rows) groups several: they are then laid end to end
    with silence between them, and transcribed one after the other. With `perturbations` each reading of a
    window draws its own speed and noise (audio.perturb), and its timestamps follow the speed.
    """

    def __init__(
        self,
        rows: list[Row],
        processor,
        options: LabelOptions,
        encoder_cache: EncoderStemCache | None = None,
        windows: list[list[int]] | None = None,
        with_lengths: bool = False,
        perturbations: tuple[str, ...] = (),
    ):
        self.rows, self.processor, self.options, self.encoder_cache = rows, processor, options, encoder_cache
        self.with_lengths = with_lengths  # each example's audio_samples, for the short-context objective
        self.perturbations = perturbations
        self.windows = windows or [[index] for index in range(len(rows))]
        self.readings = [0] * len(self.windows)  # how often each window was read, which seeds its perturbation
        self.pieces: dict[int, list[tuple[str, tuple[float, float]]]] = {}  # each window's transcripts and spans

    def __len__(self) -> int:
        return len(self.windows)

    def samples(self, index: int) -> np.ndarray:
        row = self.rows[index]
        return decode_audio(row.audio_path, row.start, row.end)

    def features(self, samples: np.ndarray) -> np.ndarray:
        """Log-mel features of 16 kHz samples, padded to Whisper's 30 s window."""
        extractor = self.processor.feature_extractor
        return extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features[0]

    def language(self, index: int) -> str | None:
        return self.rows[index].language or self.options.language

    def window_samples(self, window: int) -> np.ndarray:
        """The window's rows end to end, with seeded gaps of silence; records their transcripts' spans."""
        gaps = random.Random(self.options.seed * 7_919 + window)
        parts, found, position = [], [], 0
        for number, index in enumerate(self.windows[window]):
            if number:
                parts.append(np.zeros(int(gaps.uniform(*PACK_GAP) * SAMPLE_RATE), np.float32))
                position += len(parts[-1])
            parts.append(self.samples(index))
            offset = position / SAMPLE_RATE
            row_pieces = pieces(self.rows[index], len(parts[-1]) / SAMPLE_RATE)
            found += [(text, (offset + start, offset + end)) for text, (start, end) in row_pieces]
            position += len(parts[-1])
        self.pieces[window] = found
        return np.concatenate(parts)

    def _perturbed(self, window: int, samples: np.ndarray) -> np.ndarray:
        if not self.perturbations:
            return samples
        self.readings[window] += 1
        rng = random.Random((self.options.seed * 1_000_003 + window) * 7_919 + self.readings[window])
        samples, factor = perturb(samples, self.perturbations, rng, PACK_SECONDS)
        self.pieces[window] = [(text, (start / factor, end / factor)) for text, (start, end) in self.pieces[window]]
        return samples

    def __getitem__(self, window: int) -> dict:
        options, members = self.options, self.windows[window]
        timestamped = random.Random(options.seed * 1_000_003 + window).random() < options.timestamp_fraction
        cache = self.encoder_cache
        audio: dict[str, Any]
        if cache is not None and window in cache.outputs:
            audio = {"encoder_stem": cache(window, None)}  # the audio need not be decoded again
        else:
            samples = self._perturbed(window, self.window_samples(window))
            features = self.features(samples)
            audio = {"input_features": features} if cache is None else {"encoder_stem": cache(window, features)}
            audio |= {"audio_samples": len(samples)} if self.with_lengths else {}
        texts = [text for text, _ in self.pieces[window]]
        spans = [span for _, span in self.pieces[window]] if timestamped else None
        return {**audio, **encode_window(self.processor.tokenizer, texts, self.language(members[0]), options, spans)}


class SpeechCollator:
    """Stacks features and right-pads decoder inputs (with end-of-text) and labels (with IGNORE_INDEX)."""

    def __init__(self, pad_token_id: int):
        self.pad_token_id = pad_token_id

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        width = max(len(e["labels"]) for e in examples)

        def pad(key: str, value: int) -> torch.Tensor:
            return torch.tensor([e[key] + [value] * (width - len(e[key])) for e in examples])

        batch = {
            "decoder_input_ids": pad("decoder_input_ids", self.pad_token_id),
            "labels": pad("labels", IGNORE_INDEX),
        }
        if "encoder_stem" in examples[0]:
            batch["encoder_stem"] = torch.stack([e["encoder_stem"] for e in examples])
        else:
            batch["input_features"] = torch.from_numpy(np.stack([e["input_features"] for e in examples]))
        if "audio_samples" in examples[0]:
            batch["audio_samples"] = torch.tensor([e["audio_samples"] for e in examples])
        return batch

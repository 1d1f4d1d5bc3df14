"""Transcribe audio with a transformers Whisper: clips, and long files by sequential 30 s decoding."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from whisper_lora.audio.decode import CHUNK_SAMPLES, CHUNK_SECONDS, SAMPLE_RATE, decode_audio
from whisper_lora.convert.hf import load_whisper, no_speech_token
from whisper_lora.core.budget import MAX_TARGET_POSITIONS, START_TOKENS, max_new_tokens
from whisper_lora.core.languages import normalize_language
from whisper_lora.core.records import Segment, TranscribeOptions, Transcript, join_segments


class _BudgetNotice(logging.Filter):
    """Drops transformers' per-call notice that max_new_tokens overrides the model's max_length: the budget is meant to."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`max_new_tokens` will take precedence" not in record.getMessage()


logging.getLogger("transformers.generation.utils").addFilter(_BudgetNotice())


def first_steps(model, processor, features: torch.Tensor) -> list[tuple[str | None, float | None, float]]:
    """From one decoder step on each clip's first window: its likeliest language, that one's probability, P(no speech)."""
    config = model.generation_config
    start = torch.full((len(features), 1), config.decoder_start_token_id, device=model.device)
    with torch.inference_mode():
        logits = model(input_features=features[:, :, : CHUNK_SECONDS * 100], decoder_input_ids=start).logits[:, -1]
    no_speech_id = no_speech_token(processor.tokenizer)
    no_speech = logits.float().softmax(-1)[:, no_speech_id].tolist()
    if not getattr(config, "lang_to_id", None):
        return [(None, None, p) for p in no_speech]
    ids = torch.tensor(list(config.lang_to_id.values()), device=logits.device)
    probabilities = logits[:, ids].float().softmax(-1)
    names = [name.strip("<|>") for name in config.lang_to_id]
    best = probabilities.argmax(-1).tolist()
    return [(names[b], float(probabilities[i, b]), no_speech[i]) for i, b in enumerate(best)]


def _features(processor, samples: np.ndarray, model) -> tuple[torch.Tensor, torch.Tensor | None]:
    extractor = processor.feature_extractor
    if len(samples) <= CHUNK_SAMPLES:
        inputs = extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        return inputs.input_features.to(model.device, model.dtype), None
    inputs = extractor(
        samples,
        sampling_rate=SAMPLE_RATE,
        return_tensors="pt",
        truncation=False,
        padding="longest",
        return_attention_mask=True,
    )
    return inputs.input_features.to(model.device, model.dtype), inputs.attention_mask.to(model.device)


def _generate_options(
    model, processor, options: TranscribeOptions, language: str | None, seconds: float | None = None
) -> dict:
    """generate()'s arguments; seconds (the longest clip's) marks short-form decoding, which gets a token budget."""
    kwargs: dict[str, Any] = {"num_beams": options.beam_size, "return_segments": True}
    if model.generation_config.is_multilingual:
        kwargs.update(task=options.task, **({"language": language} if language else {}))
    prompt_tokens = START_TOKENS
    if options.initial_prompt:
        kwargs["prompt_ids"] = processor.get_prompt_ids(options.initial_prompt, return_tensors="pt").to(model.device)
        prompt_tokens += len(kwargs["prompt_ids"])
    # transformers runs its temperature fallback on short clips too: a looping or unsure window is decoded again
    kwargs.update(
        return_timestamps=True,  # the coverage guard reads the segment times
        temperature=options.temperature,
        compression_ratio_threshold=options.compression_ratio_threshold,
        logprob_threshold=options.logprob_threshold,
    )
    if options.no_repeat_ngram_size:
        kwargs["no_repeat_ngram_size"] = options.no_repeat_ngram_size
    if seconds is None:  # long-form: a full 30 s window may need all the tokens Whisper allows
        kwargs.update(
            condition_on_prev_tokens=options.condition_on_previous_text,
            no_speech_threshold=options.no_speech_threshold,
        )
    else:
        limit = model.generation_config.max_length or MAX_TARGET_POSITIONS
        kwargs.update(max_new_tokens=max_new_tokens(seconds, language, prompt_tokens, limit), max_length=None)
    return kwargs


def _segments(processor, output, duration: float, index: int = 0) -> list[Segment]:
    segments, previous_end = [], 0.0
    for piece in output["segments"][index]:
        text = processor.tokenizer.decode(piece["tokens"], skip_special_tokens=True).strip()
        if not text:
            continue
        start = min(max(float(piece["start"]), previous_end), duration)
        end = min(max(float(piece["end"]), start), duration)
        segments.append(Segment(round(start, 2), round(end, 2), text))
        previous_end = end
    return segments


def transcribe_samples(model, processor, samples: np.ndarray, options: TranscribeOptions, path: str = "") -> Transcript:
    """Transcribe 16 kHz mono samples of any length."""
    duration = len(samples) / SAMPLE_RATE
    if len(samples) <= CHUNK_SAMPLES:
        return transcribe_batch(model, processor, [samples], options, [path])[0]
    features, attention_mask = _features(processor, samples, model)
    detected, probability, _ = first_steps(model, processor, features)[0]
    language = normalize_language(options.language) if options.language else detected
    kwargs = _generate_options(model, processor, options, language)
    with torch.inference_mode():
        output = model.generate(input_features=features, attention_mask=attention_mask, **kwargs)
    segments = _segments(processor, output, duration)
    probability = None if options.language else probability
    return Transcript(
        path, join_segments(segments, language), segments, language or "en", probability, round(duration, 3)
    )


def transcribe_batch(
    model, processor, clips: list[np.ndarray], options: TranscribeOptions, names: list[str]
) -> list[Transcript]:
    """Clips of at most 30 s decoded together: one batched first step, then one generate call per language."""
    results = {i: Transcript(names[i], language=options.language) for i, clip in enumerate(clips) if len(clip) == 0}
    live = [i for i in range(len(clips)) if i not in results]
    if not live:
        return [results[i] for i in range(len(clips))]
    inputs = processor.feature_extractor([clips[i] for i in live], sampling_rate=SAMPLE_RATE, return_tensors="pt")
    features = inputs.input_features.to(model.device, model.dtype)
    groups: dict[str | None, list[int]] = {}
    for row, (detected, probability, no_speech) in enumerate(first_steps(model, processor, features)):
        i = live[row]
        language = normalize_language(options.language) if options.language else detected
        guessed = None if options.language else probability
        results[i] = Transcript(names[i], "", [], language or "en", guessed, round(len(clips[i]) / SAMPLE_RATE, 3))
        if no_speech <= options.no_speech_threshold:  # above it: silence or noise, left empty
            groups.setdefault(language, []).append(row)
    for language, rows in groups.items():
        seconds = max(len(clips[live[row]]) for row in rows) / SAMPLE_RATE
        kwargs = _generate_options(model, processor, options, language, seconds)
        with torch.inference_mode():
            output = model.generate(input_features=features[rows], **kwargs)
        for k, row in enumerate(rows):
            result = results[live[row]]
            result.segments = _short_segments(processor, output, k, result.duration)
            result.text = join_segments(result.segments, language)
    return [results[i] for i in range(len(clips))]


def _short_segments(processor, output, index: int, duration: float) -> list[Segment]:
    if isinstance(output, dict) and "segments" in output:
        return _segments(processor, output, duration, index)
    sequences = output["sequences"] if isinstance(output, dict) else output
    text = processor.tokenizer.decode(sequences[index], skip_special_tokens=True).strip()
    return [Segment(0.0, round(duration, 2), text)] if text else []


def transcribe_clip(
    model,
    processor,
    audio: str | Path | np.ndarray,
    language: str | None = None,
    task: str = "transcribe",
    num_beams: int = 1,
) -> str:
    """Text of one clip of at most 30 s, a path or 16 kHz mono samples; language None means detect it."""
    samples = decode_audio(audio) if isinstance(audio, (str, Path)) else audio
    if len(samples) > CHUNK_SAMPLES:
        raise ValueError(f"clip is {len(samples) / SAMPLE_RATE:.1f} s; transcribe_clip takes at most {CHUNK_SECONDS} s")
    options = TranscribeOptions(language=language, task=task, beam_size=num_beams)
    return transcribe_samples(model, processor, samples, options).text


class HFBackend:
    """A transformers Whisper (any model, hub ids included): clips of up to 30 s batched per generate call."""

    def __init__(self, model, processor, batch_size: int = 8):
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.multilingual = bool(model.generation_config.is_multilingual)

    @classmethod
    def load(
        cls, model_path: str | None, device: str, compute_type: str | None = None, batch_size: int = 8, workers: int = 1
    ) -> HFBackend:
        """The backend for a model name, folder or hub id; compute_type is CTranslate2's, and threads share the model."""
        return cls(*load_whisper(model_path, device=device), batch_size)

    @classmethod
    def supports(cls, options: TranscribeOptions) -> str | None:
        """Word timestamps and VAD come from faster-whisper; transformers' encoder takes whole 30 s windows only."""
        if options.word_timestamps or options.vad_filter:
            return "--word_timestamps and --vad_filter need --backend ct2 (or auto)"
        if options.short_window:
            return "--short_window: transformers' Whisper encoder reads whole 30 s windows; use --backend ct2 or whispercpp"
        return None

    def transcribe(self, clips: list, options: TranscribeOptions) -> list[Transcript]:
        """Clips of up to 30 s in batches, longer ones one by one with OpenAI's sequential decoding."""
        short = [k for k, c in enumerate(clips) if len(c.samples) <= CHUNK_SAMPLES]
        results = {
            k: transcribe_samples(self.model, self.processor, c.samples, options, c.name)
            for k, c in enumerate(clips)
            if len(c.samples) > CHUNK_SAMPLES
        }
        for first in range(0, len(short), self.batch_size):
            batch = short[first : first + self.batch_size]
            found = transcribe_batch(
                self.model, self.processor, [clips[k].samples for k in batch], options, [clips[k].name for k in batch]
            )
            results.update(zip(batch, found, strict=True))
        return [results[k] for k in range(len(clips))]

    def transcribe_alone(self, samples: np.ndarray, options: TranscribeOptions, name: str) -> Transcript:
        """One clip of any length the full way."""
        return transcribe_samples(self.model, self.processor, samples, options, name)

    def stream(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[str | None, Iterator[Segment]]:
        """The language and the segments; transformers' long-form generate gives them all at once, at the end."""
        transcript = self.transcribe_alone(samples, options, "stream")
        return transcript.language, iter(transcript.segments)

"""Transcribe audio with a transformers Whisper: clips, and long files by sequential 30 s decoding."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .audio import CHUNK_SAMPLES, CHUNK_SECONDS, SAMPLE_RATE, decode_audio
from .data import normalize_language
from .errors import UserError
from .languages import traits

FALLBACK_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # openai/whisper's ladder, tried in order


@dataclass(frozen=True)
class TranscribeOptions:
    """How to decode. Long audio always decodes with timestamps, as OpenAI's sequential algorithm needs them."""

    language: str | None = None  # None: detect it from the first 30 s
    task: str = "transcribe"  # or translate (to English)
    return_timestamps: bool = False  # keep segment times in the output
    beam_size: int = 1
    temperature: tuple[float, ...] = FALLBACK_TEMPERATURES  # for long audio
    condition_on_previous_text: bool = True  # feed the previous window's text as a prompt
    initial_prompt: str | None = None  # words or spellings to steer the first window
    compression_ratio_threshold: float = 1.35  # transformers measures it on token ids, hence not 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    word_timestamps: bool = False  # CTranslate2 backend only
    vad_filter: bool = False  # CTranslate2 backend only: skip non-speech with faster-whisper's Silero VAD

    def __post_init__(self):
        if self.task not in ("transcribe", "translate"):
            raise UserError(f"--task must be transcribe or translate, not {self.task!r}")
        if self.language is not None and normalize_language(self.language) is None:
            raise UserError(f"--language {self.language!r} is not a Whisper language (use a code such as zh or en)")
        if self.beam_size < 1:
            raise UserError("--beam_size must be at least 1")


@dataclass
class Word:
    """One word with its start and end in seconds and the model's probability for it."""

    start: float
    end: float
    word: str
    probability: float


@dataclass
class Segment:
    """A stretch of speech with its start and end in seconds, and its words when asked for."""

    start: float
    end: float
    text: str
    words: list[Word] | None = None


@dataclass
class Transcript:
    """The result for one file; error is set instead of segments when the file could not be transcribed."""

    path: str
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    language: str | None = None
    language_probability: float | None = None
    duration: float = 0.0
    error: str | None = None
    redecoded: str | None = None  # why the first decoding fell short of the speech and was decoded again


def first_steps(model, processor, features: torch.Tensor) -> list[tuple[str | None, float | None, float]]:
    """From one decoder step on each clip's first window: its likeliest language, that one's probability, P(no speech)."""
    config = model.generation_config
    start = torch.full((len(features), 1), config.decoder_start_token_id, device=model.device)
    with torch.inference_mode():
        logits = model(input_features=features[:, :, : CHUNK_SECONDS * 100], decoder_input_ids=start).logits[:, -1]
    no_speech_id = processor.tokenizer.convert_tokens_to_ids("<|nocaptions|>")
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


def _generate_options(model, processor, options: TranscribeOptions, language: str | None, long_form: bool) -> dict:
    kwargs: dict[str, Any] = {"num_beams": options.beam_size, "return_segments": True}
    if model.generation_config.is_multilingual:
        kwargs.update(task=options.task, **({"language": language} if language else {}))
    if options.initial_prompt:
        kwargs["prompt_ids"] = processor.get_prompt_ids(options.initial_prompt, return_tensors="pt").to(model.device)
    if long_form:
        kwargs.update(
            return_timestamps=True,
            temperature=options.temperature,
            condition_on_prev_tokens=options.condition_on_previous_text,
            compression_ratio_threshold=options.compression_ratio_threshold,
            logprob_threshold=options.logprob_threshold,
            no_speech_threshold=options.no_speech_threshold,
        )
    else:
        kwargs["return_timestamps"] = True  # the coverage guard reads the segment times
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
    kwargs = _generate_options(model, processor, options, language, long_form=True)
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
        probability = None if options.language else probability
        results[i] = Transcript(names[i], "", [], language or "en", probability, round(len(clips[i]) / SAMPLE_RATE, 3))
        if no_speech <= options.no_speech_threshold:  # above it: silence or noise, left empty
            groups.setdefault(language, []).append(row)
    for language, rows in groups.items():
        kwargs = _generate_options(model, processor, options, language, long_form=False)
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


def join_segments(segments: list[Segment], language: str | None) -> str:
    """The transcript's text: segments joined with spaces, or without for languages written without them."""
    return (" " if traits(language).spaces else "").join(s.text for s in segments)


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

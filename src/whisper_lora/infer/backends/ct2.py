"""Transcribe through CTranslate2 with faster-whisper: the fast path for exported, CT2 and embedded models."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import ctranslate2
import numpy as np
from faster_whisper import WhisperModel
from faster_whisper.audio import pad_or_trim
from faster_whisper.tokenizer import Tokenizer
from faster_whisper.transcribe import get_compression_ratio
from filelock import FileLock

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.core.budget import (
    CONDITIONED_PROMPT,
    SAMPLES_PER_POSITION,
    START_TOKENS,
    max_new_tokens,
    short_window_positions,
)
from whisper_lora.core.errors import UserError
from whisper_lora.core.files import fingerprint, write_json_atomic
from whisper_lora.core.models import cache_root, embedded_ct2_dir, resolve_model
from whisper_lora.core.records import Segment, TranscribeOptions, Transcript, Word, join_segments
from whisper_lora.infer.backends.packing import clip_prompts, following_starts, plan_windows, read_clip, token_budget
from whisper_lora.infer.coverage import falls_short

log = logging.getLogger(__name__)

# oneDNN, under CTranslate2 on CPUs, keeps the kernels it builds for each input shape it meets, 1024 by default:
# short windows meet a new encoder length at almost every step, and a live session grew by 240 MB in 10 minutes.
ONEDNN_CACHE_CAPACITY = "16"
SHORT_WINDOW: ContextVar[bool] = ContextVar("short_window", default=False)  # set by encoder_window
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")  # what an adapter's export is made from
EXPORT_SOURCE = "export_source.json"  # in an export: the fingerprint of what it was made from


def ct2_folder(model_path: str | None) -> Path | None:
    """A CTranslate2 folder for the model, exporting a trained adapter once (kept beside it); None for hub ids."""
    source = resolve_model(model_path)
    if source.kind == "embedded":
        return embedded_ct2_dir(source.location)
    if source.kind == "ct2_dir":
        return Path(source.location)
    if source.kind == "adapter":
        target = Path(source.location) / "ct2"
    elif source.kind == "hf_dir":
        key = hashlib.sha1(str(Path(source.location).resolve()).encode()).hexdigest()[:16]
        target = cache_root() / "exports" / key
    else:
        return None
    folder = Path(source.location)
    files = [folder / name for name in ADAPTER_FILES] if source.kind == "adapter" else _model_files(folder)
    wanted = {"source": str(folder.resolve()), "files": fingerprint([f for f in files if f.is_file()])}
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):  # one export at a time; nobody removes a folder another has just published
        if _export_source(target) != wanted:
            _export(source.location, target)
            write_json_atomic(target / EXPORT_SOURCE, wanted)
    return target


def _model_files(folder: Path) -> list[Path]:
    return [path for path in folder.iterdir() if path.is_file() and not path.name.startswith(".")]


def _export_source(target: Path) -> dict | None:
    """What the export in target was made from, or None when there is no complete export."""
    try:
        return json.loads((target / EXPORT_SOURCE).read_text()) if (target / "model.bin").is_file() else None
    except (OSError, ValueError):
        return None


def _export(location: str, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    log.info("exporting %s to CTranslate2 once, into %s (about a minute for whisper-base on 2 cores)", location, target)
    from whisper_lora.convert.export import export_model  # torch and transformers, for this one step

    started = time.perf_counter()
    export_model(location, target, fmt="ct2", quantization="float16")
    log.info("exported in %.0f s; later starts reuse it", time.perf_counter() - started)


class ShortWindowWhisper(WhisperModel):
    """faster-whisper's model, whose encoder reads a short window over the audio when a call sets SHORT_WINDOW."""

    def encode(self, features: np.ndarray) -> ctranslate2.StorageView:
        """The encoder's output over the window, or over its audio and a margin (CTranslate2 >= 3.19)."""
        return super().encode(short_features(features) if SHORT_WINDOW.get() else features)


def short_features(features: np.ndarray) -> np.ndarray:
    """A window's audio frames and a margin, padded past the audio as openai/whisper and whisper.cpp pad it.

    faster-whisper pads a window's log-mel with zeros, which no audio frame is, so the audio ends at the last
    frame that is not all zeros. The reference implementations pad the samples with silence instead, which the
    log-mel floors at the loudest frame less 8 (2 once normalised): what a short-context adapter trains on.
    """
    heard = np.flatnonzero(features.reshape(-1, features.shape[-1]).any(axis=0))
    audio_frames = int(heard[-1]) + 1 if len(heard) else 0
    positions = short_window_positions(audio_frames * SAMPLES_PER_POSITION // 2)
    if positions is None or not audio_frames:
        return features
    short = np.array(features[..., : 2 * positions], dtype=np.float32)
    short[..., audio_frames:] = short[..., :audio_frames].max() - 2.0
    return short


@contextmanager
def encoder_window(options: TranscribeOptions) -> Iterator[None]:
    """Within it, faster-whisper's encoder reads short windows when the options ask for them."""
    before = SHORT_WINDOW.get()
    SHORT_WINDOW.set(options.short_window)
    try:
        yield
    finally:
        SHORT_WINDOW.set(before)  # not reset(token): a generator may be closed from another context


def load_faster_whisper(model_path: str | None, device: str, compute_type: str | None, workers: int = 1):
    """A faster_whisper.WhisperModel running `workers` decodings at once, or a UserError naming why it cannot load."""
    folder = ct2_folder(model_path)
    if folder is None:
        raise UserError(f"{model_path}: hub models have no CTranslate2 folder here; use --backend transformers")
    compute_type = compute_type or ("float16" if device == "cuda" else "int8")
    # Read once, at the first kernel oneDNN builds: here it comes after any training torch did in this process.
    os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", ONEDNN_CACHE_CAPACITY)
    try:
        return ShortWindowWhisper(str(folder), device=device, compute_type=compute_type, num_workers=workers)
    except (RuntimeError, ValueError, OSError) as error:  # CTranslate2 says what it could not read
        raise UserError(
            f"{folder}: not a Whisper model that CTranslate2 {ctranslate2.__version__} can read: {error}"
        ) from None


class CT2Backend:
    """faster-whisper on the model's CTranslate2 folder; short clips of one language are packed into shared windows."""

    def __init__(self, model, batch_size: int = 8):
        self.model, self.batch_size = model, batch_size
        self.multilingual = bool(model.model.is_multilingual)

    @classmethod
    def load(
        cls, model_path: str | None, device: str, compute_type: str | None, batch_size: int = 8, workers: int = 1
    ) -> CT2Backend:
        """The backend for a model name or folder, exporting a trained adapter once."""
        return cls(load_faster_whisper(model_path, device, compute_type, workers), batch_size)

    @classmethod
    def supports(cls, options: TranscribeOptions) -> str | None:
        """faster-whisper honours every option."""
        return None

    def transcribe(self, clips: list, options: TranscribeOptions) -> list[Transcript]:
        """Transcripts of the clips, packed where transcribe_clips_ct2 can."""
        return transcribe_clips_ct2(self.model, clips, options, self.batch_size)

    def transcribe_alone(self, samples: np.ndarray, options: TranscribeOptions, name: str) -> Transcript:
        """One clip with faster-whisper's own long-form decoding and fallbacks."""
        return transcribe_samples_ct2(self.model, samples, options, name)

    def stream(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[str | None, Iterator[Segment]]:
        """The language, and the segments as faster-whisper decodes them, window by window."""
        with encoder_window(options):  # faster-whisper detects the language here
            segments, info = self.model.transcribe(samples, **_decode_options(options, len(samples)))
        return info.language, _short_window_segments(segments, options)


def _short_window_segments(segments, options: TranscribeOptions) -> Iterator[Segment]:
    with encoder_window(options):  # faster-whisper encodes each window as the caller asks for it
        yield from (_segment(s) for s in segments if s.text.strip())


def transcribe_samples_ct2(model, samples: np.ndarray, options: TranscribeOptions, path: str = "") -> Transcript:
    """Transcribe 16 kHz mono samples of any length with faster-whisper."""
    with encoder_window(options):
        segments, info = model.transcribe(samples, **_decode_options(options, len(samples)))
        ours = [_segment(s) for s in segments if s.text.strip()]
    probability = None if options.language else round(float(info.language_probability), 4)
    return _transcript(path, ours, info.language, probability, len(samples))


def transcribe_clips_ct2(model, clips: list, options: TranscribeOptions, batch_size: int) -> list[Transcript]:
    """Transcribe Clips; with a known language, up to batch_size short ones share each encoder pass.

    A packed clip whose text does not reach the end of its speech is decoded again on its own, and
    its transcript says why in `redecoded`.
    """
    results: dict[int, Transcript] = {}
    alone: dict[int, str | None] = dict.fromkeys(range(len(clips)))
    if _can_pack(options) and batch_size > 1 and len(clips) > 1:
        windows, unpacked = plan_windows([c.samples for c in clips], batch_size)
        alone = dict.fromkeys(unpacked)
        for window in windows:
            for k, segments in _decode_window(model, window, options).items():
                if segments is None:
                    alone[k] = "the packed decoding did not fit the clip"
                elif reason := falls_short(segments, clips[k].samples):
                    alone[k] = reason  # decoded again the ordinary way, with every fallback
                else:
                    results[k] = _transcript(clips[k].name, segments, options.language, None, len(clips[k].samples))
    for k, reason in sorted(alone.items()):
        results[k] = transcribe_samples_ct2(model, clips[k].samples, options, clips[k].name)
        results[k].redecoded = reason
    return [results[k] for k in range(len(clips))]


# Packed windows are decoded once, greedily or by beam; a clip that falls short of its speech is decoded
# again alone with every fallback. Thresholds and temperatures the user changed apply per window, so
# clips decoded with them take faster-whisper's own path, as with --batch_size 1.
UNPACKED_WHEN_SET = (
    "temperature",
    "compression_ratio_threshold",
    "logprob_threshold",
    "no_speech_threshold",
    "no_repeat_ngram_size",
    "short_window",  # each clip's own short window
)


def _can_pack(options: TranscribeOptions) -> bool:
    # Packing needs the language up front, and gives segment times without word times or VAD.
    if not options.language or options.word_timestamps or options.vad_filter:
        return False
    defaults = TranscribeOptions()
    return all(getattr(options, name) == getattr(defaults, name) for name in UNPACKED_WHEN_SET)


def _decode_window(model, window, options: TranscribeOptions) -> dict[int, list[Segment] | None]:
    """Each member's segments, in its own time, from one encoder pass over the window; None where it did not fit."""
    tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual, options.task, options.language)
    prompt = list(tokenizer.sot_sequence)
    if options.initial_prompt:
        prompt = [tokenizer.sot_prev, *tokenizer.encode(" " + options.initial_prompt.strip())[-223:], *prompt]
    features = pad_or_trim(model.feature_extractor(window.audio)).astype(np.float32)
    encoded = np.array(model.model.encode(ctranslate2.StorageView.from_array(features[None]), to_cpu=True))
    shared = ctranslate2.StorageView.from_array(np.ascontiguousarray(np.repeat(encoded, len(window.members), axis=0)))
    decoded = model.model.generate(
        shared,
        clip_prompts(window, prompt, tokenizer.timestamp_begin),
        beam_size=options.beam_size,
        max_length=token_budget(window),
        suppress_blank=False,
    )
    found = {}
    for k, span, following, result in zip(window.members, window.spans, following_starts(window), decoded, strict=True):
        read = read_clip(result.sequences_ids[0], span, following, tokenizer.timestamp_begin, tokenizer.eot) or []
        segments = [Segment(s.start, s.end, text) for s in read if (text := tokenizer.decode(s.tokens).strip())]
        found[k] = segments or None
    return found


# faster-whisper's gzip ratio of the text: openai/whisper's 2.4 where our option's token-id measure gives 1.35
TEXT_RATIO_PER_TOKEN_RATIO = 2.4 / 1.35


def text_ratio_threshold(options: TranscribeOptions) -> float:
    """--compression_ratio_threshold as faster-whisper measures it, on the text."""
    return options.compression_ratio_threshold * TEXT_RATIO_PER_TOKEN_RATIO


def repeats_itself(text: str, options: TranscribeOptions) -> bool:
    """Whether text is more repetitive than --compression_ratio_threshold allows, as faster-whisper judges a window."""
    return get_compression_ratio(text) > text_ratio_threshold(options)


def _decode_options(options: TranscribeOptions, samples: int) -> dict:
    """faster-whisper's arguments for a clip of that many samples: every option, and the token budget per window."""
    # Any window after the first may be prompted with the previous text; faster-whisper refuses a budget
    # that does not fit beside it, and a window cut short by the budget is decoded on from its last timestamp.
    prompt = CONDITIONED_PROMPT if options.condition_on_previous_text or options.initial_prompt else START_TOKENS
    return dict(
        max_new_tokens=max_new_tokens(samples / SAMPLE_RATE, options.language, prompt),
        compression_ratio_threshold=text_ratio_threshold(options),
        language=options.language,
        task=options.task,
        beam_size=options.beam_size,
        temperature=list(options.temperature),
        condition_on_previous_text=options.condition_on_previous_text,
        initial_prompt=options.initial_prompt,
        log_prob_threshold=options.logprob_threshold,
        no_speech_threshold=options.no_speech_threshold,
        no_repeat_ngram_size=options.no_repeat_ngram_size,
        word_timestamps=options.word_timestamps,
        vad_filter=options.vad_filter,
        without_timestamps=False,  # as accurate on short clips, and the coverage guard needs the times
    )


def _transcript(path, segments: list[Segment], language, probability, samples: int) -> Transcript:
    return Transcript(
        str(path), join_segments(segments, language), segments, language, probability, round(samples / SAMPLE_RATE, 3)
    )


def _segment(segment) -> Segment:
    words = [Word(round(w.start, 2), round(w.end, 2), w.word, round(w.probability, 3)) for w in segment.words or []]
    return Segment(round(segment.start, 2), round(segment.end, 2), segment.text.strip(), words or None)

"""whisper.cpp through pywhispercpp: a backend for GGML files, with whisper.cpp's own long-form decoding and fallbacks."""

from __future__ import annotations

import math
import os
import queue
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import numpy as np

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.core.budget import CONDITIONED_PROMPT, START_TOKENS, max_new_tokens, short_window_positions
from whisper_lora.core.errors import UserError
from whisper_lora.core.extras import require
from whisper_lora.core.models import resolve_model
from whisper_lora.core.records import Segment, TranscribeOptions, Transcript, join_segments

CENTISECONDS = 100  # whisper.cpp's unit for segment times
DEFAULTS = TranscribeOptions()


def temperature_ladder(temperatures: Sequence[float]) -> tuple[float, float] | None:
    """whisper.cpp's (temperature, temperature_inc) for a fallback list, or None when it cannot express the list.

    whisper.cpp tries temperature, then steps of temperature_inc up to 1.0; a step of 0 means one temperature.
    """
    if len(temperatures) == 1:
        return temperatures[0], 0.0
    steps = [b - a for a, b in pairwise(temperatures)]
    even = all(math.isclose(step, steps[0], abs_tol=1e-6) for step in steps) and steps[0] > 0
    return (temperatures[0], steps[0]) if even and math.isclose(temperatures[-1], 1.0, abs_tol=1e-6) else None


def refusal(options: TranscribeOptions) -> str | None:
    """Why whisper.cpp cannot honour the options, naming the flag; None when it can."""
    if options.word_timestamps:
        return "--word_timestamps: the whisper.cpp backend gives segment times only; use --backend ct2"
    if options.vad_filter:
        return "--vad_filter: whisper.cpp's voice detector needs its own model file; use --backend ct2"
    if options.no_repeat_ngram_size:
        return "--no_repeat_ngram_size: whisper.cpp has no such constraint; use --backend ct2 or transformers"
    if options.compression_ratio_threshold != DEFAULTS.compression_ratio_threshold:
        return (
            "--compression_ratio_threshold: whisper.cpp judges repetition by token entropy (its entropy_thold, 2.4), "
            "not by compression ratio; leave the flag out, or use --backend ct2 or transformers"
        )
    if options.initial_prompt and not options.condition_on_previous_text:
        return (
            "--initial_prompt with --no_condition_on_previous_text: whisper.cpp prompts with no text at all when "
            "conditioning is off; use --backend ct2 or transformers"
        )
    if temperature_ladder(options.temperature) is None:
        listed = ",".join(f"{t:g}" for t in options.temperature)
        return (
            f"--temperature {listed}: whisper.cpp tries one temperature, or a start and even steps up to 1.0 "
            "(such as 0,0.2,0.4,0.6,0.8,1.0)"
        )
    return None


def decode_params(options: TranscribeOptions, samples: int) -> dict:
    """pywhispercpp's parameters for a clip of that many samples: every option, and a token budget per window."""
    start, step = temperature_ladder(options.temperature) or (0.0, 0.0)
    prompt = CONDITIONED_PROMPT if options.condition_on_previous_text or options.initial_prompt else START_TOKENS
    return dict(
        language=options.language or "",  # empty: detect it
        detect_language=False,  # True makes whisper.cpp stop after detecting the language
        translate=options.task == "translate",
        beam_search={"beam_size": options.beam_size, "patience": -1.0},
        temperature=start,
        temperature_inc=step,
        no_context=True,  # whisper.cpp otherwise prompts a call with the text of the one before: another file
        n_max_text_ctx=16384 if options.condition_on_previous_text else 0,  # prompting with past text, off at 0
        initial_prompt=options.initial_prompt or "",
        logprob_thold=options.logprob_threshold,
        no_speech_thold=options.no_speech_threshold,
        suppress_nst=True,  # the symbols faster-whisper (suppress_tokens [-1]) and transformers suppress too
        max_tokens=max_new_tokens(samples / SAMPLE_RATE, options.language, prompt),
        audio_ctx=(short_window_positions(samples) or 0) if options.short_window else 0,  # 0: the whole window
        no_timestamps=False,
        print_progress=False,
    )


def load_context(path: str | Path, threads: int | None = None):
    """A pywhispercpp Model on a GGML file, or a UserError naming why whisper.cpp cannot load it."""
    model_class = require("pywhispercpp.model", "the whisper.cpp backend").Model
    try:
        return model_class(
            str(path),
            redirect_whispercpp_logs_to=None,  # whisper.cpp's load log is long; errors still raise
            print_progress=False,
            n_threads=threads or min(4, os.cpu_count() or 1),
        )
    except (RuntimeError, ValueError, OSError) as error:
        raise UserError(f"{path}: whisper.cpp cannot load this file: {error}") from None


class WhisperCppBackend:
    """whisper.cpp on a GGML file: one context per worker, each decoding one clip at a time."""

    def __init__(self, path: str | Path, workers: int = 1, threads: int | None = None):
        self.contexts: queue.Queue = queue.Queue()
        for _ in range(workers):
            self.contexts.put(load_context(path, threads))
        self.multilingual = bool(_whisper().whisper_is_multilingual(self.contexts.queue[0]._ctx))

    @classmethod
    def load(
        cls, model_path: str | None, device: str, compute_type: str | None, batch_size: int = 8, workers: int = 1
    ) -> WhisperCppBackend:
        """The backend for a whisper.cpp file; other models are refused with the command that makes one."""
        source = resolve_model(model_path)
        if source.kind != "ggml":
            raise UserError(
                f"--backend whispercpp reads a whisper.cpp model file, and {model_path or 'base'} is not one; make one "
                f"with: whisper-lora export {model_path or 'base'} --format ggml --ggml_types f16 --output_dir DIR"
            )
        if device == "cuda":
            raise UserError("--device cuda: the whisper.cpp backend runs on the CPU here; use --backend ct2")
        if compute_type:
            raise UserError(f"--compute_type {compute_type}: a whisper.cpp file's weight type is chosen at export")
        return cls(source.location, workers)

    @classmethod
    def supports(cls, options: TranscribeOptions) -> str | None:
        """None when whisper.cpp can honour every option, else why not."""
        return refusal(options)

    def transcribe(self, clips: list, options: TranscribeOptions) -> list[Transcript]:
        """Transcripts of the clips, one decoding each (whisper.cpp has no batched decoding)."""
        return [self.transcribe_alone(clip.samples, options, clip.name) for clip in clips]

    def transcribe_alone(self, samples: np.ndarray, options: TranscribeOptions, name: str) -> Transcript:
        """One clip of any length, window by window, with whisper.cpp's fallbacks."""
        language, segments = self.stream(samples, options)
        found = list(segments)
        duration = round(len(samples) / SAMPLE_RATE, 3)
        return Transcript(name, join_segments(found, language), found, language, None, duration)

    def stream(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[str | None, Iterator[Segment]]:
        """The language, and the clip's segments (decoded whole: whisper.cpp returns when it is done)."""
        with self._context() as model:
            model._params.strategy = _strategy(options.beam_size)  # pywhispercpp fixes it at load otherwise
            found = model.transcribe(
                np.ascontiguousarray(samples, dtype=np.float32), **decode_params(options, len(samples))
            )
            language = options.language or _whisper().whisper_lang_str(_whisper().whisper_full_lang_id(model._ctx))
        segments = [
            Segment(round(s.t0 / CENTISECONDS, 2), round(s.t1 / CENTISECONDS, 2), s.text.strip())
            for s in found
            if s.text.strip()
        ]
        return language, iter(segments)

    @contextmanager
    def _context(self):
        model = self.contexts.get()
        try:
            yield model
        finally:
            self.contexts.put(model)


def _whisper():
    return require("_pywhispercpp", "the whisper.cpp backend")


def _strategy(beam_size: int):
    strategies = _whisper().whisper_sampling_strategy
    return strategies.WHISPER_SAMPLING_BEAM_SEARCH if beam_size > 1 else strategies.WHISPER_SAMPLING_GREEDY

"""Decoding backends behind one protocol, and the Transcriber over them: CTranslate2 (faster-whisper), transformers
or whisper.cpp."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from itertools import chain, islice
from typing import Protocol

import ctranslate2
import numpy as np

from whisper_lora.audio.decode import SAMPLE_RATE, AudioError, decode_blocks, quietest_cut
from whisper_lora.core.errors import UserError
from whisper_lora.core.memory import release_free_memory
from whisper_lora.core.models import resolve_model
from whisper_lora.core.records import Clip, Runtime, Segment, TranscribeOptions, Transcript, join_segments
from whisper_lora.infer.backends.ct2 import CT2Backend
from whisper_lora.infer.backends.whispercpp import WhisperCppBackend
from whisper_lora.infer.coverage import decode_rest, flag_unheard, keep_within_audio, shift

BLOCK_SECONDS = 120.0  # a longer file is transcribed in blocks of this length, in bounded memory


def cuda_available(backend: str) -> bool:
    """Whether the backend's own runtime sees a CUDA device (CTranslate2 answers without loading torch)."""
    if backend == "ct2":
        return ctranslate2.get_cuda_device_count() > 0
    if backend == "whispercpp":
        return False  # pywhispercpp's wheels are built for the CPU
    import torch

    return torch.cuda.is_available()


def pick_device(name: str, backend: str = "ct2") -> str:
    """'cuda' or 'cpu' for --device auto|cuda|cpu, refusing cuda when the backend sees none."""
    if name == "auto":
        return "cuda" if cuda_available(backend) else "cpu"
    if name == "cuda" and not cuda_available(backend):
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return name


def pick_backend(model_path: str | None, backend: str) -> str:
    """'ct2', 'transformers' or 'whispercpp'; auto takes whisper.cpp for its files, transformers for hub ids, else ct2."""
    kind = resolve_model(model_path).kind
    if backend == "auto":
        return {"hub": "transformers", "ggml": "whispercpp"}.get(kind, "ct2")
    if kind == "ggml" and backend != "whispercpp":
        raise UserError(f"{model_path}: a whisper.cpp file runs on --backend whispercpp (or auto), not {backend}")
    return backend


def english_only_refusal(options: TranscribeOptions) -> str | None:
    """Why an English-only model cannot honour the options: it neither translates nor hears other languages."""
    if options.task != "transcribe":
        return f"--task {options.task}: this model is English-only; translation needs a multilingual model"
    if options.language and options.language.lower() not in ("en", "english"):
        return f"--language {options.language}: this model is English-only; use --language en or a multilingual model"
    return None


class Backend(Protocol):
    """One way to run a Whisper model. Strategies such as packing live behind transcribe()."""

    multilingual: bool  # False for English-only models such as tiny.en

    @classmethod
    def load(
        cls, model_path: str | None, device: str, compute_type: str | None, batch_size: int, workers: int = 1
    ) -> Backend:
        """The backend with the model loaded on device, able to run `workers` decodings at once."""
        ...

    @classmethod
    def supports(cls, options: TranscribeOptions) -> str | None:
        """None when this backend can honour the options, else why it cannot."""
        ...

    def transcribe(self, clips: list[Clip], options: TranscribeOptions) -> list[Transcript]:
        """One transcript per clip, in order, by this backend's fastest path."""
        ...

    def transcribe_alone(self, samples: np.ndarray, options: TranscribeOptions, name: str) -> Transcript:
        """One clip of any length the full way, with every fallback."""
        ...

    def stream(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[str | None, Iterator[Segment]]:
        """The language, and one clip's segments as they are decoded."""
        ...


def backend_class(name: str) -> type[Backend]:
    """The Backend class for 'ct2', 'whispercpp' or 'transformers' (torch imported only when asked for)."""
    if name == "ct2":
        return CT2Backend
    if name == "whispercpp":
        return WhisperCppBackend
    from whisper_lora.infer.backends.hf import HFBackend

    return HFBackend


class Transcriber:
    """A loaded model that transcribes clips or files, batch_size at a time, with per-call options.

    It picks the backend and the device, checks options before any work, and puts every backend's
    transcripts through the same guards: text that stops before the speech is decoded on, and no
    segment runs past the audio.
    """

    def __init__(
        self,
        model_path: str | None,
        backend: str = "auto",
        device: str = "auto",
        compute_type: str | None = None,
        batch_size: int = 8,
        workers: int = 1,
    ):
        self.model_path, self.batch_size = model_path, batch_size
        self.backend = pick_backend(model_path, backend)
        self.device = pick_device(device, self.backend)
        engine = backend_class(self.backend).load(model_path, self.device, compute_type, batch_size, workers)
        self.engine: Backend = engine

    @classmethod
    def run(cls, runtime: Runtime, batch_size: int = 8, workers: int = 1) -> Transcriber:
        """A transcriber for the command line's --model_path, --backend, --device and --compute_type."""
        return cls(runtime.model_path, runtime.backend, runtime.device, runtime.compute_type, batch_size, workers)

    @classmethod
    def wrap(cls, model, processor, batch_size: int = 8) -> Transcriber:
        """A transformers-backend transcriber over a model already in memory, such as one being trained."""
        from whisper_lora.infer.backends.hf import HFBackend

        transcriber = cls.__new__(cls)
        transcriber.model_path, transcriber.batch_size = None, batch_size
        transcriber.backend, transcriber.device = "transformers", str(model.device)
        transcriber.engine = HFBackend(model, processor, batch_size)
        return transcriber

    def check(self, options: TranscribeOptions) -> None:
        """Refuse options this backend cannot honour, before any work is done."""
        reason = backend_class(self.backend).supports(options)
        if not reason and not self.engine.multilingual:
            reason = english_only_refusal(options)
        if reason:
            raise UserError(reason)

    def clips(self, clips: list[Clip], options: TranscribeOptions) -> list[Transcript]:
        """Transcripts of decoded clips, in order: a text that stops before the speech is decoded on, none runs past
        the audio, and an empty one over speech says so in `unheard`."""
        self.check(options)
        transcripts = self.engine.transcribe(clips, options)
        for clip, transcript in zip(clips, transcripts, strict=True):
            alone = lambda rest, name=clip.name: self.engine.transcribe_alone(rest, options, name)  # noqa: E731
            decode_rest(transcript, clip.samples, alone, join_segments)
            keep_within_audio(transcript, join_segments)
            flag_unheard(transcript, clip.samples)
        return transcripts

    def segments(self, samples: np.ndarray, options: TranscribeOptions) -> tuple[str | None, Iterator[Segment]]:
        """The language, and one clip's segments as they are decoded (window by window on ct2); none runs past the audio."""
        self.check(options)
        language, segments = self.engine.stream(samples, options)
        seconds = len(samples) / SAMPLE_RATE
        return language, (replace(s, end=min(s.end, seconds)) for s in segments if s.start < seconds)

    def files(self, paths: list[str], options: TranscribeOptions) -> list[Transcript]:
        """Transcripts of audio files, in order; a file that fails to decode gets Transcript.error. A file longer than
        BLOCK_SECONDS is decoded and transcribed block by block, so memory does not grow with its length."""
        clips, done = [], {}
        for path in paths:
            try:
                blocks = decode_blocks(path, BLOCK_SECONDS)
                head = list(islice(blocks, 2))
                if len(head) == 1:
                    clips.append(Clip(str(path), head[0]))
                else:  # the head is handed on, not held here: memory is one block or two
                    done[str(path)] = self.blocks(str(path), chain(_emptied(head), blocks), options)
            except AudioError as error:
                done[str(path)] = Transcript(path=str(path), error=error.reason)
        done |= {t.path: t for t in self.clips(clips, options)}
        return [done[str(path)] for path in paths]

    def blocks(self, name: str, blocks: Iterator[np.ndarray], options: TranscribeOptions) -> Transcript:
        """One long file's transcript from its blocks: each cut at a quiet moment near its end, the rest carried into
        the next; the language is detected once, and each block starts afresh, as a file of its own."""
        whole = Transcript(name, language=options.language)
        carry, offset = np.zeros(0, np.float32), 0
        for block, last in _with_last(blocks):
            audio = np.concatenate([carry, block])
            del block
            cut = len(audio) if last else quietest_cut(audio)
            # Later blocks start afresh: the previous block's text as a prompt, without the timestamps a window's own
            # conditioning carries, made the model stop predicting them and drop words.
            later = replace(options, language=whole.language, initial_prompt=None if offset else options.initial_prompt)
            part = self.clips([Clip(name, audio[:cut])], later)[0]
            _append(whole, part, offset / SAMPLE_RATE)
            carry, offset = audio[cut:].copy(), offset + cut  # a copy: a view would keep the whole block
            del audio, part
            release_free_memory()
        whole.text, whole.duration = join_segments(whole.segments, whole.language), round(offset / SAMPLE_RATE, 3)
        return whole


def _append(whole: Transcript, part: Transcript, offset: float) -> None:
    """Add one block's transcript, its times shifted by offset seconds, to the file's."""
    whole.segments.extend(shift(segment, offset) for segment in part.segments)
    if whole.language is None:
        whole.language, whole.language_probability = part.language, part.language_probability
    for flag in ("redecoded", "unheard"):
        if getattr(part, flag) and not getattr(whole, flag):
            setattr(whole, flag, f"from {offset:.0f} s: {getattr(part, flag)}")


def _emptied(items: list) -> Iterator:
    """The list's items, each removed from it as it is given."""
    while items:
        yield items.pop(0)


def _with_last(items: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, bool]]:
    """Each item, and whether it is the last."""
    previous = next(items)
    for item in items:
        yield previous, False
        previous = item
    yield previous, True

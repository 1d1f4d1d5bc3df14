"""One interface over the two inference backends: CTranslate2 (faster-whisper) and transformers."""

from __future__ import annotations

import numpy as np

from .errors import UserError
from .records import Clip, Runtime, TranscribeOptions, Transcript, join_segments


def pick_device(name: str) -> str:
    """'cuda' or 'cpu' for --device auto|cuda|cpu, refusing cuda when there is none."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    return name


def pick_backend(model_path: str | None, backend: str) -> str:
    """'ct2' or 'transformers'; auto takes CTranslate2 for everything but hub ids."""
    from .models import resolve_model

    if backend == "auto":
        return "transformers" if resolve_model(model_path).kind == "hub" else "ct2"
    return backend


class Transcriber:
    """A loaded model that transcribes clips or files, batch_size at a time, with per-call options."""

    def __init__(
        self,
        model_path: str | None,
        backend: str = "auto",
        device: str = "auto",
        compute_type: str | None = None,
        batch_size: int = 8,
    ):
        self.model_path, self.batch_size = model_path, batch_size
        self.backend, self.device = pick_backend(model_path, backend), pick_device(device)
        if self.backend == "ct2":
            from .fast import load_faster_whisper

            self.model = load_faster_whisper(model_path, self.device, compute_type)
        else:
            from .models import load_whisper

            self.model, self.processor = load_whisper(model_path, device=self.device)

    @classmethod
    def run(cls, model_path: str | None, runtime: Runtime, batch_size: int = 8) -> Transcriber:
        """A transcriber for the model with the command line's --backend, --device and --compute_type."""
        return cls(model_path, runtime.backend, runtime.device, runtime.compute_type, batch_size)

    @classmethod
    def wrap(cls, model, processor, batch_size: int = 8) -> Transcriber:
        """A transformers-backend transcriber over a model already in memory, such as one being trained."""
        transcriber = cls.__new__(cls)
        transcriber.model_path, transcriber.batch_size = None, batch_size
        transcriber.backend, transcriber.device = "transformers", str(model.device)
        transcriber.model, transcriber.processor = model, processor
        return transcriber

    def check(self, options: TranscribeOptions) -> None:
        """Refuse options this backend cannot honour, before any work is done."""
        if self.backend == "transformers" and (options.word_timestamps or options.vad_filter):
            raise UserError("--word_timestamps and --vad_filter need --backend ct2 (or auto)")

    def clips(self, clips: list[Clip], options: TranscribeOptions) -> list[Transcript]:
        """Transcripts of decoded clips, in order; a text that stops clearly before the speech does is decoded on, and none runs past the audio."""
        from .coverage import decode_rest, keep_within_audio

        self.check(options)
        if self.backend == "ct2":
            from .fast import transcribe_clips_ct2

            transcripts = transcribe_clips_ct2(self.model, clips, options, self.batch_size)
        else:
            transcripts = self._transformers(clips, options)
        for clip, transcript in zip(clips, transcripts):
            decode_rest(transcript, clip.samples, lambda rest: self._alone(rest, options, clip.name), join_segments)
            keep_within_audio(transcript, join_segments)
        return transcripts

    def _alone(self, samples: np.ndarray, options: TranscribeOptions, name: str) -> Transcript:
        """One clip the full way, with every fallback, on this backend."""
        if self.backend == "ct2":
            from .fast import transcribe_samples_ct2

            return transcribe_samples_ct2(self.model, samples, options, name)
        from .transcribe import transcribe_samples

        return transcribe_samples(self.model, self.processor, samples, options, name)

    def _transformers(self, clips: list[Clip], options: TranscribeOptions) -> list[Transcript]:
        from .audio import CHUNK_SAMPLES
        from .transcribe import transcribe_batch, transcribe_samples

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
            results.update(zip(batch, found))
        return [results[k] for k in range(len(clips))]

    def files(self, paths: list[str], options: TranscribeOptions) -> list[Transcript]:
        """Transcripts of audio files, in order; a file that fails to decode gets Transcript.error."""
        from .audio import AudioError, decode_audio

        clips, failed = [], {}
        for path in paths:
            try:
                clips.append(Clip(str(path), decode_audio(path)))
            except AudioError as error:
                failed[str(path)] = Transcript(path=str(path), error=error.reason)
        done = {t.path: t for t in self.clips(clips, options)} | failed
        return [done[str(path)] for path in paths]

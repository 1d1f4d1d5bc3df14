"""Decode any audio container with PyAV into 16 kHz mono float32 samples."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from whisper_lora.core.errors import UserError

SAMPLE_RATE = 16000  # Hz, what Whisper's feature extractor expects
CHUNK_SECONDS = 30  # Whisper's input window
CHUNK_SAMPLES = CHUNK_SECONDS * SAMPLE_RATE
# A decode that yields less than this share of the duration the container declares is a truncated file.
_TRUNCATED_SHARE = 0.9


class AudioError(UserError):
    """An audio file that cannot be used, naming the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


class AudioTooLong(AudioError):
    """Audio that decodes to more than the caller's limit; decoding stopped there, holding no more than it."""

    def __init__(self, path: str | Path, limit_s: float):
        super().__init__(path, f"longer than the {limit_s:g} s limit")
        self.limit_s = limit_s


def _check_file(path: Path) -> None:
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")


def _check_wav_length(path: Path) -> None:
    """ffmpeg clamps a WAV's duration to the bytes present, so compare the RIFF data chunk with the file size."""
    with open(path, "rb") as handle:
        header = handle.read(12)
        if header[:4] != b"RIFF" or header[8:12] != b"WAVE":
            return
        while chunk := handle.read(8):
            if len(chunk) < 8:
                return
            size = struct.unpack("<I", chunk[4:])[0]
            if chunk[:4] == b"data":
                present = path.stat().st_size - handle.tell()
                if size not in (0, 0xFFFFFFFF) and present < _TRUNCATED_SHARE * size:
                    raise AudioError(path, f"truncated: the WAV header declares {size} data bytes but {present} follow")
                return
            handle.seek(size + size % 2, 1)


def _declared_seconds(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _decode_stream(
    container, stream, start: float, end: float | None, sample_rate: int, max_seconds: float | None = None
) -> tuple[np.ndarray, float]:
    """Resampled samples from the first decoded frame at or before `start`, and that frame's time; AudioTooLong as
    soon as more than max_seconds past `start` have been decoded."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    if start > 0:
        container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)
    pieces: list[np.ndarray] = []
    first_time, held = None, 0
    for frame in container.decode(stream):
        if first_time is None:
            first_time = float(frame.time) if frame.time is not None else 0.0
        if end is not None and frame.time is not None and frame.time > end:
            break
        for out in resampler.resample(frame):
            pieces.append(out.to_ndarray().reshape(-1))
            held += len(pieces[-1])
        if max_seconds is not None and held > (start + max_seconds) * sample_rate:
            raise AudioTooLong(container.name, max_seconds)
    pieces.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    samples = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    return samples.astype(np.float32, copy=False), first_time or 0.0


def decode_audio(
    path: str | Path,
    start: float | None = None,
    end: float | None = None,
    sample_rate: int = SAMPLE_RATE,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode a file (any container PyAV reads) to mono float32 at `sample_rate`, optionally only [start, end) s;
    AudioTooLong, while decoding, for audio past max_seconds."""
    path = Path(path)
    _check_file(path)
    start = start or 0.0
    _check_wav_length(path)
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in the file")
            stream = container.streams.audio[0]
            samples, first_time = _decode_stream(container, stream, start, end, sample_rate, max_seconds)
            declared = _declared_seconds(container, stream)
    except av.error.FFmpegError as error:
        raise AudioError(path, f"cannot decode as audio ({error.strerror or error})") from None
    offset = max(0, round((start - first_time) * sample_rate))
    stop = None if end is None else max(offset, round((end - first_time) * sample_rate))
    if end is None and start == 0:
        _check_complete(path, declared, len(samples), sample_rate)
    return samples[offset:stop]


def decode_blocks(path: str | Path, block_seconds: float, sample_rate: int = SAMPLE_RATE) -> Iterator[np.ndarray]:
    """Decode a file as consecutive blocks of block_seconds (the last shorter, at least one block), holding about one
    block at a time; AudioError for a file that cannot be decoded or is truncated."""
    path = Path(path)
    _check_file(path)
    _check_wav_length(path)
    size, total = round(block_seconds * sample_rate), 0
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioError(path, "no audio stream in the file")
            stream = container.streams.audio[0]
            for block in _blocks(_resampled(container, stream, sample_rate), size):
                total += len(block)
                yield block
            declared = _declared_seconds(container, stream)
    except av.error.FFmpegError as error:
        raise AudioError(path, f"cannot decode as audio ({error.strerror or error})") from None
    _check_complete(path, declared, total, sample_rate)


def _check_complete(path: Path, declared: float | None, decoded: int, sample_rate: int) -> None:
    """AudioError when far fewer samples decoded than the container declares: a truncated file."""
    if declared and decoded < _TRUNCATED_SHARE * declared * sample_rate:
        got = decoded / sample_rate
        raise AudioError(path, f"truncated: the header declares {declared:.2f} s but only {got:.2f} s decode")


def _resampled(container, stream, sample_rate: int) -> Iterator[np.ndarray]:
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    for frame in container.decode(stream):
        for out in resampler.resample(frame):
            yield out.to_ndarray().reshape(-1)
    for out in resampler.resample(None):
        yield out.to_ndarray().reshape(-1)


def _blocks(pieces: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """The pieces regrouped into blocks of size samples (the last shorter), each filled in place: one block held."""
    block, held, any_yielded = np.empty(size, np.float32), 0, False
    for piece in pieces:
        used = 0
        while used < len(piece):
            taken = min(size - held, len(piece) - used)
            block[held : held + taken] = piece[used : used + taken]
            held, used = held + taken, used + taken
            if held == size:
                yield block
                block, held, any_yielded = np.empty(size, np.float32), 0, True
    if held or not any_yielded:
        yield block[:held].copy()


def quietest_cut(samples: np.ndarray, within_seconds: float = 10.0, sample_rate: int = SAMPLE_RATE) -> int:
    """Where to cut samples near their end: the middle of the quietest tenth of a second in the last within_seconds."""
    step = sample_rate // 10
    start = max(0, len(samples) - round(within_seconds * sample_rate))
    tail = samples[start : start + (len(samples) - start) // step * step].reshape(-1, step)
    if not len(tail):
        return len(samples)
    quietest = int(np.argmin(np.sqrt(np.mean(tail.astype(np.float64) ** 2, axis=1))))
    return start + quietest * step + step // 2


def duration_seconds(samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Length of decoded samples in seconds."""
    return len(samples) / sample_rate

"""Write audio into the container its file name's suffix names (WAV, FLAC, MP3, M4A, Ogg/Opus), with PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream

# container suffix -> (PyAV format name, codec, sample format the encoder takes)
CODECS = {
    ".wav": ("wav", "pcm_s16le", "s16"),
    ".flac": ("flac", "flac", "s16"),
    ".mp3": ("mp3", "libmp3lame", "fltp"),
    ".m4a": ("ipod", "aac", "fltp"),
    ".ogg": ("ogg", "libopus", "flt"),
}


def pcm16(samples: np.ndarray) -> np.ndarray:
    """Float samples as 16-bit little-endian PCM, clipped to full scale: what a WAV file or a realtime client holds."""
    return (np.clip(samples, -1, 1) * 32767).astype("<i2")


def encode_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Encode (channels, samples) float32 audio at `rate` Hz into the container that path's suffix names."""
    fmt, codec, sample_format = CODECS[path.suffix]
    channels = samples.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    rate_out = 48000 if codec == "libopus" else rate  # Opus runs at 48 kHz; the audio keeps its band
    with av.open(str(path), "w", format=fmt) as container:
        stream = cast(AudioStream, container.add_stream(codec, rate=rate_out, layout=layout))
        frame = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(samples.reshape(1, -1, order="F")), format="flt", layout=layout
        )
        frame.sample_rate, frame.time_base, frame.pts = rate, Fraction(1, rate), 0
        resampler = av.AudioResampler(format=sample_format, layout=layout, rate=rate_out)
        for piece in [*resampler.resample(frame), *resampler.resample(None)]:
            for packet in stream.encode(piece):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path

"""Test helpers: encode audio fixtures with PyAV, speak sentences with espeak-ng, build tiny Whispers."""

from __future__ import annotations

import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from whisper_lora.records import Segment, Transcript, Word
from whisper_lora.stream import TimedWord

# container suffix -> (PyAV format name, codec, sample format the encoder takes)
CODECS = {
    ".wav": ("wav", "pcm_s16le", "s16"),
    ".flac": ("flac", "flac", "s16"),
    ".mp3": ("mp3", "libmp3lame", "fltp"),
    ".m4a": ("ipod", "aac", "fltp"),
    ".ogg": ("ogg", "libopus", "flt"),
}


def sine(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A (channels, samples) float32 sine wave."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels)


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    """Encode (channels, samples) float32 audio into the container that the suffix names."""
    fmt, codec, sample_format = CODECS[path.suffix]
    channels = samples.shape[0]
    layout = "mono" if channels == 1 else "stereo"
    rate_out = 48000 if codec == "libopus" else rate
    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate_out, layout=layout)
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


def espeak(text: str, path: Path, voice: str = "en", speed: int = 150, pitch: int = 50) -> Path:
    """Speak text into a WAV file with espeak-ng."""
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text],
        check=True,
        capture_output=True,
    )
    return path


def real_speech(language: str, split: str = "test") -> list:
    """Recorded prompts of one language and split (whisper_lora.realspeech), fetched once into the user's cache."""
    from whisper_lora.errors import UserError
    from whisper_lora.realspeech import prompts

    try:
        return [p for p in prompts(language) if p.split == split]
    except UserError as error:
        pytest.skip(str(error))  # a failure under CI=true (conftest.py)


def have_espeak() -> bool:
    """Whether espeak-ng is on PATH."""
    return shutil.which("espeak-ng") is not None


def tiny_whisper(
    num_mel_bins: int = 80, vocab_size: int = 51865, seed: int = 0, ffn_dim: int = 128
) -> WhisperForConditionalGeneration:
    """A random Whisper with d_model 64 and 2 layers, built in memory in well under a second."""
    torch.manual_seed(seed)
    config = WhisperConfig(
        vocab_size=vocab_size,
        num_mel_bins=num_mel_bins,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=ffn_dim,
        decoder_ffn_dim=ffn_dim,
        pad_token_id=50257,
        bos_token_id=50257,
        eos_token_id=50257,
        decoder_start_token_id=50258,
        init_std=0.2,  # wide enough that LoRA can move the logits within a few steps
    )
    model = WhisperForConditionalGeneration(config)
    with torch.no_grad():  # random non-zero biases, so that a dropped bias shows up
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_(0, 0.1)
    return model.eval()


def run_inference(*args) -> subprocess.CompletedProcess:
    """The seed's whisper_lora_inference.py with args, in a fresh process, its output captured."""
    script = Path(__file__).resolve().parents[1] / "whisper_lora_inference.py"
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=300)


SENTENCE = ["the", "cat", "sat", "on", "the", "mat."]


def script(seconds: float) -> list:
    """Words of 0.4 s, 0.1 s apart, in six-word sentences, with a pause after each sentence."""
    words, t, n = [], 0.5, 0
    while t + 0.4 < seconds:
        words.append(TimedWord(round(t, 2), round(t + 0.4, 2), " " + SENTENCE[n % 6]))
        t += 0.5 + (0.7 if n % 6 == 5 else 0.0)
        n += 1
    return words


CLOCK = 100.0  # seconds per unit of sample value: up to 100 s, and 3 ms apart once sent as PCM16


def clock_audio(seconds: float) -> np.ndarray:
    """Samples whose values are their own time / CLOCK, so the scripted model knows where its buffer lies."""
    return (np.arange(int(seconds * 16000)) / 16000 / CLOCK).astype(np.float32)


class ScriptedModel:
    """Hears every scripted word wholly inside the buffer; a word cut by the buffer's end is misheard as 'uh'."""

    backend = "ct2"

    def __init__(self, words):
        self.words, self.calls, self.longest = words, 0, 0.0

    def clips(self, clips, options):
        samples = clips[0].samples
        first, last = float(samples[0]) * CLOCK, float(samples[-1]) * CLOCK
        self.calls, self.longest = self.calls + 1, max(self.longest, last - first)
        heard = [
            Word(w.start - first, w.end - first, w.text if w.end <= last else " uh", 0.9)
            for w in self.words
            if w.start >= first - 0.05 and w.start < last
        ]
        return [Transcript("live", "", [Segment(0.0, last - first, "", heard)])]

"""Audio without speech (noise, tone melodies, chords, near silence) for rows marked "no_speech", made from a seed."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.audio.encode import pcm16

KINDS = ("white noise", "brown noise", "tones", "near silence", "chords")
SCALE = (0, 2, 4, 7, 9)  # a pentatonic scale, in semitones


def notes(rng: np.random.Generator, seconds: float, voices: int) -> np.ndarray:
    """A melody (voices=1) or chord sequence of harmonic notes with attack and decay, like a simple instrument."""
    out, position = np.zeros(int(seconds * SAMPLE_RATE), np.float32), 0
    while position < len(out):
        length = min(int(rng.uniform(0.2, 0.7) * SAMPLE_RATE), len(out) - position)
        t = np.arange(length) / SAMPLE_RATE
        envelope = np.minimum(1.0, t / 0.02) * np.exp(-3.0 * t)
        for _ in range(voices):
            pitch = 220.0 * 2 ** ((rng.choice(SCALE) + 12 * rng.integers(0, 2)) / 12)
            tone = sum(np.sin(2 * np.pi * pitch * k * t) / k for k in (1, 2, 3))
            out[position : position + length] += (0.25 / voices) * envelope * tone
        position += length
    return out


def non_speech(kind: str, seconds: float, seed: int) -> np.ndarray:
    """seconds of one kind of audio without speech, at a random level."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(0.3, 1.0)
    if kind == "white noise":
        samples = rng.normal(0, 0.08, int(seconds * SAMPLE_RATE))
    elif kind == "brown noise":
        walk = np.cumsum(rng.normal(0, 1, int(seconds * SAMPLE_RATE)))
        walk -= np.convolve(walk, np.ones(400) / 400, mode="same")  # keep it from drifting off
        samples = 0.2 * walk / (np.abs(walk).max() + 1e-9)
    elif kind == "near silence":
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        samples = rng.normal(0, 0.002, len(t)) + 0.003 * np.sin(2 * np.pi * 50 * t)  # room hiss and mains hum
    else:
        samples = notes(rng, seconds, voices=1 if kind == "tones" else 3)
    return (level * samples).astype(np.float32)


def add_noise(speech: np.ndarray, snr_db: float, kind: str, seed: int) -> np.ndarray:
    """speech with one kind of non_speech audio mixed in at snr_db below it (by mean power), clipped to [-1, 1]."""
    noise = non_speech(kind, len(speech) / SAMPLE_RATE + 1.0, seed)[: len(speech)]
    gain = np.sqrt(np.mean(speech**2) / max(float(np.mean(noise**2)), 1e-12) / 10 ** (snr_db / 10))
    return np.clip(speech + gain * noise, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> str:
    """16 kHz mono 16-bit WAV; returns the path as a string."""
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(SAMPLE_RATE)
        handle.writeframes(pcm16(samples).tobytes())
    return str(path)

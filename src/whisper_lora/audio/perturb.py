"""Training-time perturbation of speech: speed (tempo and pitch together, as Kaldi's) and added noise."""

from __future__ import annotations

import random

import av
import numpy as np

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.audio.noise import add_noise

PERTURBATIONS = ("speed", "noise")
SPEEDS = (0.9, 1.0, 1.1)  # Ko et al. 2015, the factors Kaldi's and ESPnet's recipes use
NOISE_SHARE = 0.5  # windows that get noise
NOISE_SNR_DB = (10.0, 30.0)
NOISE_KINDS = ("white noise", "brown noise")


def change_speed(samples: np.ndarray, factor: float) -> np.ndarray:
    """16 kHz samples played factor times faster (shorter and higher), by PyAV's resampler."""
    if factor == 1.0 or len(samples) == 0:
        return samples
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(samples, np.float32)[None], format="flt", layout="mono")
    frame.sample_rate = round(SAMPLE_RATE * factor)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    parts = [out.to_ndarray().reshape(-1) for out in [*resampler.resample(frame), *resampler.resample(None)]]
    return np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)


def perturb(
    samples: np.ndarray, kinds: tuple[str, ...], rng: random.Random, max_seconds: float
) -> tuple[np.ndarray, float]:
    """samples with the drawn perturbations, and the speed factor (times in them divide by it); no slower than fits."""
    factor = 1.0
    if "speed" in kinds:
        fitting = [s for s in SPEEDS if len(samples) / s <= max_seconds * SAMPLE_RATE]
        factor = rng.choice(fitting or [max(SPEEDS)])
        samples = change_speed(samples, factor)
    if "noise" in kinds and rng.random() < NOISE_SHARE:
        samples = add_noise(samples, rng.uniform(*NOISE_SNR_DB), rng.choice(NOISE_KINDS), rng.randrange(2**31))
    return samples, factor

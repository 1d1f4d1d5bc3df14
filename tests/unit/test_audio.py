"""Audio decoding: every container, rate and channel count to 16 kHz mono float32, spans, and bad files."""

import struct

import numpy as np
import pytest

from helpers import espeak, have_espeak, sine, write_audio
from whisper_lora.audio.decode import SAMPLE_RATE, AudioError, decode_audio
from whisper_lora.audio.encode import CODECS


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[spectrum.argmax()])


@pytest.mark.parametrize("suffix", CODECS)
@pytest.mark.parametrize("rate, channels", [(8000, 1), (22050, 1), (44100, 2), (48000, 2)])
def test_any_container_decodes_to_16k_mono(tmp_path, suffix, rate, channels):
    path = write_audio(tmp_path / f"tone{suffix}", sine(2.0, rate, 440.0, channels), rate)
    samples = decode_audio(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    # AAC adds up to one 1024-sample frame of priming at the source rate.
    assert abs(len(samples) - 2 * SAMPLE_RATE) <= SAMPLE_RATE * 1024 / rate + 1
    assert dominant_hz(samples) == pytest.approx(440.0, abs=2.0)
    assert 0.3 < np.abs(samples).max() < 1.0


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg"])
def test_start_end_reads_only_the_span(tmp_path, suffix):
    rate = 16000
    ramp = np.concatenate([sine(1.0, rate, 300.0), sine(1.0, rate, 1000.0), sine(1.0, rate, 300.0)], axis=1)
    samples = decode_audio(write_audio(tmp_path / f"three{suffix}", ramp, rate), start=1.1, end=1.9)
    assert abs(len(samples) - 0.8 * SAMPLE_RATE) <= 1
    assert dominant_hz(samples) == pytest.approx(1000.0, abs=3.0)


def test_span_past_the_end_is_short(tmp_path):
    samples = decode_audio(write_audio(tmp_path / "a.wav", sine(1.0, 16000), 16000), start=0.5, end=5.0)
    assert abs(len(samples) - 0.5 * SAMPLE_RATE) <= 1


def test_silence_stays_silent(tmp_path):
    samples = decode_audio(write_audio(tmp_path / "quiet.flac", np.zeros((1, 16000), np.float32), 16000))
    assert len(samples) == SAMPLE_RATE and not samples.any()


@pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)")
def test_espeak_speech_decodes(tmp_path):
    wav = espeak("Speech for the decoder.", tmp_path / "speech.wav")  # espeak-ng writes 22050 Hz
    samples = decode_audio(wav)
    assert 1.0 < len(samples) / SAMPLE_RATE < 4.0
    assert np.sqrt(np.mean(samples**2)) > 0.01


def put(path, data):
    path.write_bytes(data)
    return path


def wav_header(data_bytes: int, channels: int = 1, rate: int = 16000) -> bytes:
    """A 16-bit PCM WAV header that declares data_bytes of samples, whatever follows it."""
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * max(channels, 1), 2 * max(channels, 1), 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def truncated(path, share):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * share)])
    return path


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda d: d / "absent.wav", "file not found"),
        (lambda d: d, "is a directory"),
        (lambda d: put(d / "empty.mp3", b""), r"empty file \(0 bytes\)"),
        (lambda d: put(d / "noise.wav", np.random.default_rng(0).bytes(4000)), "cannot decode"),
        (lambda d: put(d / "notes.ogg", b"not audio at all"), "cannot decode"),
        (lambda d: truncated(write_audio(d / "cut.wav", sine(2.0, 16000), 16000), 0.4), "truncated"),
        (lambda d: truncated(write_audio(d / "cut.mp3", sine(2.0, 44100), 44100), 0.4), "truncated"),
        (lambda d: put(d / "huge.wav", wav_header(0x7FFFFFF0) + bytes(1000)), "truncated: the WAV header declares"),
        (lambda d: put(d / "nochannels.wav", wav_header(1000, channels=0) + bytes(1000)), "cannot decode"),
    ],
    ids=[
        "missing",
        "directory",
        "empty",
        "random-bytes",
        "text",
        "truncated-wav",
        "truncated-mp3",
        "huge-declared-length",
        "wrong-header",
    ],
)
def test_bad_files_name_the_file_and_the_reason(tmp_path, make, reason):
    path = make(tmp_path)
    with pytest.raises(AudioError, match=reason) as caught:
        decode_audio(path)
    assert str(path) in str(caught.value)


def test_decoding_stops_at_the_limit_instead_of_holding_the_whole_file(tmp_path):
    from whisper_lora.audio.decode import AudioTooLong

    path = write_audio(tmp_path / "long.ogg", sine(60.0, 16000), 16000)
    assert len(decode_audio(path, max_seconds=61)) == pytest.approx(60 * 16000, abs=2000)
    with pytest.raises(AudioTooLong, match="longer than the 10 s limit") as refused:
        decode_audio(path, max_seconds=10)
    assert refused.value.path == str(path) and refused.value.limit_s == 10

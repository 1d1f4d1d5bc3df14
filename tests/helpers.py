"""Test helpers: encode audio fixtures with PyAV, speak sentences with espeak-ng, build tiny Whispers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from whisper_lora.audio.encode import encode_audio as write_audio
from whisper_lora.core.records import Segment, Transcript, Word
from whisper_lora.data.segments import Cue
from whisper_lora.infer.stream import TimedWord
from whisper_lora.train.trainer import TrainConfig

ROOT = Path(__file__).resolve().parents[1]


def sine(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    """A (channels, samples) float32 sine wave."""
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels)


def silent_flac(path, seconds: int, rate: int = 8000):
    """Hours of digital silence as FLAC: a few MB that decode to gigabytes of samples."""
    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=rate, layout="mono")
        minute = np.zeros((1, rate * 60), np.int16)
        for k in range(seconds // 60):
            frame = av.AudioFrame.from_ndarray(minute, format="s16", layout="mono")
            frame.sample_rate, frame.time_base, frame.pts = rate, Fraction(1, rate), k * rate * 60
            for packet in stream.encode(frame):
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
    """Recorded prompts of one language and split (whisper_lora.data.realspeech), fetched once into the user's cache."""
    from whisper_lora.core.errors import UserError
    from whisper_lora.data.realspeech import prompts

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
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)], check=False, capture_output=True, text=True, timeout=300
    )


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

    backend, model_path = "ct2", None  # as a Transcriber of the embedded model

    def __init__(self, words):
        self.words, self.calls, self.longest = words, 0, 0.0
        self.asked: list = []  # the options of every call

    def clips(self, clips, options):
        self.asked.append(options)
        samples = clips[0].samples
        first, last = float(samples[0]) * CLOCK, float(samples[-1]) * CLOCK
        self.calls, self.longest = self.calls + 1, max(self.longest, last - first)
        heard = [
            Word(w.start - first, w.end - first, w.text if w.end <= last else " uh", 0.9)
            for w in self.words
            if w.start >= first - 0.05 and w.start < last
        ]
        return [Transcript("live", "", [Segment(0.0, last - first, "", heard)])]


def free_port() -> int:
    """A TCP port nothing listens on now."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def serving(arguments: list[str], log: Path, ready_s: float = 300):
    """`whisper-lora serve ARGUMENTS` in a subprocess on a free port, until ready: yields (url, port)."""
    import httpx

    port = free_port()
    command = [sys.executable, "-m", "whisper_lora.cli", "serve", "--port", str(port), *arguments]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(int(ready_s / 0.2)):
            try:
                if httpx.get(f"{url}/health").json()["status"] == "ready":
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, log.read_text()
            time.sleep(0.2)
        else:
            raise AssertionError(f"the server was not ready in {ready_s} s:\n{log.read_text()}")
        yield url, port
    finally:
        process.terminate()
        process.wait(30)


def realtime_session(port: int, samples: np.ndarray, language: str, key: str | None = None, pause_s: float = 0.05):
    """Play samples into /v1/realtime with a plain websockets client, 100 ms per pause_s; the events, and how many
    samples were sent when the first delta came. Ends at the .completed of the turn the final commit closes."""
    import asyncio
    import base64
    import json

    import websockets

    async def session():
        events, sent, sent_at_first_delta = [], 0, None
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/realtime", additional_headers=headers) as ws:
            assert json.loads(await ws.recv())["type"] == "session.created"
            session = {"input_audio_format": "pcm16", "input_audio_sample_rate": 16000}
            session["input_audio_transcription"] = {"language": language}
            await ws.send(json.dumps({"type": "session.update", "session": session}))

            async def send():
                nonlocal sent
                for first in range(0, len(samples), 1600):
                    pcm = (samples[first : first + 1600] * 32767).astype("<i2").tobytes()
                    await ws.send(
                        json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
                    )
                    sent = first + 1600
                    await asyncio.sleep(pause_s)
                await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))

            sender = asyncio.create_task(send())
            stopped = set()  # turns that server VAD ended; the turn the last commit ends has no speech_stopped
            while True:
                event = json.loads(await asyncio.wait_for(ws.recv(), 120))
                events.append(event)
                if event["type"].endswith(".delta") and sent_at_first_delta is None:
                    sent_at_first_delta = sent
                if event["type"] == "input_audio_buffer.speech_stopped":
                    stopped.add(event["item_id"])
                if event["type"] == "error" or (
                    event["type"].endswith(".completed") and event["item_id"] not in stopped
                ):
                    break
            await sender
        return events, sent_at_first_delta

    return asyncio.run(session())


def config(model_dir, tones, out, **overrides):
    """A TrainConfig for the tiny model on the tones, small and fast, with overrides."""
    options = dict(
        train_file=[str(tones[0])],
        validation_file=[str(tones[1])],
        model_name_or_path=str(model_dir),
        output_dir=str(out),
        num_train_epochs=10,
        per_device_train_batch_size=4,
        learning_rate=1e-2,
        decoder_lr_scale=1.0,  # a random model's decoder has all its text to learn, not a pretrained one's
        warmup_steps=0,
        logging_steps=1,
        save_steps=4,
        lora_r=8,
        lora_alpha=16,
        report_to="tensorboard",
        dataloader_num_workers=0,
        target_modules="all",
        pack_rows=1,
    )
    return TrainConfig(**{**options, **overrides})


def run_cli(*args, **popen):
    """whisper_lora_finetune.py with args in a new process, stdout and stderr together in its stdout."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "whisper_lora_finetune.py"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **popen,
    )


def cli_args(model_dir, tones, out, epochs=20):
    """Training flags for the tiny model on the tones, saving every 2 steps."""
    return [
        "--train_file",
        tones[0],
        "--model_name_or_path",
        model_dir,
        "--output_dir",
        out,
        "--num_train_epochs",
        epochs,
        "--per_device_train_batch_size",
        2,
        "--save_steps",
        2,
        "--logging_steps",
        1,
        "--report_to",
        "none",
        "--learning_rate",
        1e-3,
        "--pack_rows",
        1,
    ]


def wait_for(condition, process, seconds=120):
    """Wait until condition() holds, failing if the process ends or time runs out first."""
    deadline = time.time() + seconds
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.time() < deadline, "timed out"
        time.sleep(0.2)


def wait_until_ready(url: str, process: subprocess.Popen, seconds: float = 120) -> bool:
    """Whether the server at url said ready before the process ended or time ran out."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if json.loads(response.read())["status"] == "ready":
                    return True
        except OSError:
            pass
        time.sleep(0.5)
    return False


def srt_time(seconds: float) -> str:
    """SubRip's HH:MM:SS,mmm."""
    milliseconds = round(seconds * 1000)
    return f"{milliseconds // 3_600_000:02d}:{milliseconds // 60_000 % 60:02d}:{milliseconds // 1000 % 60:02d},{milliseconds % 1000:03d}"  # noqa: E501


def write_srt(path: Path, cues: list[Cue]) -> Path:
    """An SRT file of the cues, with a BOM and CRLF line ends as Windows tools write it."""
    blocks = [f"{c.number}\r\n{srt_time(c.start)} --> {srt_time(c.end)}\r\n{c.text}\r\n" for c in cues]
    path.write_text("\ufeff" + "\r\n".join(blocks), encoding="utf-8")
    return path


def recording(folder: Path, seconds: float, seed: int = 0) -> tuple[Path, list[Cue]]:
    """A recording of tones, one per cue (2-5 s, 0.3-2 s apart, each of its own pitch), and its cues."""
    rng = np.random.default_rng(seed)
    parts, cues, position = [], [], 0.0
    while position < seconds - 7:
        gap, length = rng.uniform(0.3, 2.0), rng.uniform(2.0, 5.0)
        parts += [np.zeros((1, round(gap * 16000)), np.float32), sine(length, 16000, 150.0 + 37 * len(cues))]
        start = position + gap
        cues.append(Cue(len(cues) + 1, round(start, 3), round(start + length, 3), f"tone {len(cues) % 7}"))
        position = start + length
    parts.append(np.zeros((1, round((seconds - position) * 16000)), np.float32))
    return write_audio(folder / "talk.wav", np.concatenate(parts, axis=1), 16000), cues

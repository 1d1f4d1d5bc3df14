"""The demo: speak sentences with espeak-ng and transcribe them with the embedded Whisper."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import UserError
from .metrics import default_metric, error_rate

# (language, espeak-ng voice, sentence); cmn-latn-pinyin reads Chinese characters, plain cmn does not.
SMOKE_SENTENCES = (
    ("en", "en-us", "The weather is lovely today, so we are going for a walk in the park."),
    ("zh", "cmn-latn-pinyin", "今天天气很好，我们去公园散步。"),
)


class DemoError(UserError):
    """The demo cannot run on this machine, and what to install."""


def speak(text: str, path: Path, voice: str, speed: int = 150, pitch: int = 50) -> Path:
    """Write text spoken by espeak-ng to a WAV file."""
    if shutil.which("espeak-ng") is None:
        raise DemoError("espeak-ng is not installed; on Debian or Ubuntu: sudo apt-get install espeak-ng")
    command = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(path), text]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DemoError(f"espeak-ng failed for voice {voice!r}: {result.stderr.strip()}")
    return path


def run_smoke(model_name: str | None = None, log=print) -> list[dict]:
    """Transcribe one spoken sentence per language with the model and report its error rate."""
    from .models import load_whisper
    from .transcribe import transcribe_clip

    started = time.perf_counter()
    model, processor = load_whisper(model_name)
    log(f"model loaded in {time.perf_counter() - started:.1f} s")
    results = []
    with tempfile.TemporaryDirectory(prefix="whisper-lora-demo-") as folder:
        for language, voice, sentence in SMOKE_SENTENCES:
            clip = speak(sentence, Path(folder) / f"{language}.wav", voice)
            began = time.perf_counter()
            text = transcribe_clip(model, processor, clip, language=language)
            metric = default_metric(language)
            score = error_rate([sentence], [text], metric, language)
            results.append(dict(language=language, reference=sentence, hypothesis=text, metric=metric, score=score))
            log(f"[{language}] {metric.upper()} {score:.1%} in {time.perf_counter() - began:.1f} s")
            log(f"  reference:  {sentence}\n  transcript: {text}")
    return results

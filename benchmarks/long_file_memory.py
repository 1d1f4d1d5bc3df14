"""Peak memory of `whisper-lora transcribe` on a 3-minute and a 3-hour recording, beside their error rates.

The recordings are the real English test prompts joined with 1 s pauses (about 3 minutes), and that
same audio repeated to 3 hours, written as FLAC into the cache (never the repository). Each command
runs in its own process; its peak RSS comes from the kernel (wait4), its WER from its own output.

    whisper_lora_env/bin/python benchmarks/long_file_memory.py [--model_path tiny.en] [--hours 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from results import write_result

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.audio.encode import pcm16
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.models import cache_root
from whisper_lora.data.realspeech import prompts

ROOT = Path(__file__).resolve().parents[1]


def unit_audio() -> tuple[np.ndarray, str]:
    """The English test prompts joined with 1 s pauses, and their joined transcript."""
    found = [p for p in prompts("en") if p.split == "test"]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([part for p in found for part in (decode_audio(p.audio_path), pause)])
    return audio, " ".join(p.text for p in found)


def write_repeated(path: Path, audio: np.ndarray, times: int) -> Path:
    """The audio repeated `times` times as a 16 kHz FLAC, written piece by piece."""
    if path.exists():
        return path
    partial = path.with_suffix(".partial.flac")
    with av.open(str(partial), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        pcm = pcm16(audio)[None]
        for k in range(times):
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate, frame.time_base, frame.pts = SAMPLE_RATE, Fraction(1, SAMPLE_RATE), k * pcm.shape[1]
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    partial.rename(path)
    return path


def transcribe(model_path: str, audio: Path, output: Path) -> tuple[float, float]:
    """Peak RSS in MB and wall seconds of one transcribe command."""
    command = [str(ROOT / "whisper_lora_env" / "bin" / "whisper-lora"), "transcribe", "--model_path", model_path]
    command += ["--audio_path", str(audio), "--language", "en", "--output_file", str(output)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(command)} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return usage.ru_maxrss / 1024, seconds


def main() -> None:
    """Write both recordings once, transcribe each in a fresh process, and record RSS, time and WER."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", default="tiny.en", help="a model as for transcribe (default: tiny.en)")
    parser.add_argument("--hours", type=float, default=3.0, help="length of the long recording")
    args = parser.parse_args()
    audio, text = unit_audio()
    minutes = len(audio) / SAMPLE_RATE / 60
    folder = cache_root() / "benchmarks" / "long_file_memory"
    folder.mkdir(parents=True, exist_ok=True)
    times = max(1, round(args.hours * 60 / minutes))
    rows = []
    for name, repeat in (("short", 1), ("long", times)):
        path = write_repeated(folder / f"english-x{repeat}.flac", audio, repeat)
        with tempfile.TemporaryDirectory() as scratch:
            output = Path(scratch) / "out.json"
            rss, seconds = transcribe(args.model_path, path, output)
            read = json.loads(output.read_text(encoding="utf-8"))[0]["text"]
        wer = error_rate([" ".join([text] * repeat)], [read], "wer", "en")
        length = repeat * minutes
        rows.append([f"{length:.0f} min", f"{rss:.0f} MB", f"{100 * wer:.1f}%"])
        print(f"{name}: {length:.1f} min of audio, peak RSS {rss:.0f} MB, WER {100 * wer:.1f}%, {seconds:.0f} s")
    columns = ["recording", "peak RSS", "WER"]
    title = f"Peak memory of transcribe on a short and a long recording, {args.model_path}"
    write_result("long_file_memory", {"title": title, "columns": columns, "rows": rows}, "real English prompts")


if __name__ == "__main__":
    main()

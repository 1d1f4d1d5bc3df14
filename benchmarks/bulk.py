"""Bulk transcription on one machine: `transcribe --audio_list` in one process against `--ray` with 2 actors.

The same recorded prompts (the real-speech test prompts of each language, every file once), the same
command and options, the language detected per file. Each run starts from nothing in a session of its
own; it reports throughput, the error rate per language from its own output, the start-up time (until
the first file is finished) and the peak RSS of the command with every process it started (Ray's too).

    whisper_lora_env/bin/python benchmarks/bulk.py [--languages en,es,fr,it] [--model_path base]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psutil
from results import write_result

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.core.metrics import error_rate
from whisper_lora.data.realspeech import prompts

ROOT = Path(__file__).resolve().parents[1]


def tree_rss(root: psutil.Process) -> float:
    """MB held by a process and all its descendants."""
    total = 0
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += process.memory_info().rss
    return total / 2**20


def run(command: list[str], sidecar: Path) -> dict:
    """Wall time, time to the first finished file and peak RSS of the command and everything it started."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    peak, first, done = [0.0], [None], threading.Event()

    def watch() -> None:
        root = psutil.Process(process.pid)
        while not done.wait(0.25):
            try:
                peak[0] = max(peak[0], tree_rss(root))
            except psutil.Error:
                return
            if first[0] is None and sidecar.exists() and len(sidecar.read_text().splitlines()) > 1:
                first[0] = time.perf_counter() - started

    watcher = threading.Thread(target=watch)
    watcher.start()
    _, stderr = process.communicate()
    done.set()
    watcher.join()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{stderr.decode()[-2000:]}")
    return {"seconds": time.perf_counter() - started, "first": first[0], "peak": peak[0]}


def main() -> None:
    """Both runs on the same files; one row each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="en,es,fr,it", help="real-speech languages")
    parser.add_argument("--model_path", default="base", help="a model as for transcribe (default: base)")
    args = parser.parse_args()
    found = [p for language in args.languages.split(",") for p in prompts(language) if p.split == "test"]
    audio = sum(len(decode_audio(p.audio_path)) for p in found) / SAMPLE_RATE
    print(f"{len(found)} files, {audio:.0f} s of audio")
    rows = []
    for name, extra in (("one process", []), ("--ray, 2 actors", ["--ray", "--ray_actors", "2"])):
        with tempfile.TemporaryDirectory() as folder:
            listing, output = Path(folder) / "list.txt", Path(folder) / "out.json"
            listing.write_text("\n".join(p.audio_path for p in found) + "\n", encoding="utf-8")
            command = [str(ROOT / "whisper_lora_env" / "bin" / "whisper-lora"), "transcribe"]
            command += ["--model_path", args.model_path, "--audio_list", str(listing), "--output_file", str(output)]
            figures = run(command + extra, Path(f"{output}.partial.jsonl"))
            read = {r["path"]: r["text"] for r in json.loads(output.read_text(encoding="utf-8"))}
        rates = []
        for language in args.languages.split(","):
            mine = [p for p in found if p.language == language]
            rate = error_rate([p.text for p in mine], [read[p.audio_path] for p in mine], "wer", language)
            rates.append(f"{language} {100 * rate:.1f}%")
        line = [name, len(read), round(audio / figures["seconds"], 1), round(figures["seconds"])]
        line += [round(figures["first"] or 0, 1), round(figures["peak"]), "  ".join(rates)]
        print(line, flush=True)
        rows.append(line)
    columns = ["path", "files", "audio s/s", "wall s", "first file s", "peak RSS MB", "WER"]
    title = f"Bulk transcription on one machine: one process against Ray, {args.model_path}"
    write_result("bulk", {"title": title, "columns": columns, "rows": rows}, "language detected per file")


if __name__ == "__main__":
    main()

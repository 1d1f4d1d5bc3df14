"""Inference speed beside accuracy: every whisper-lora decoding path against faster-whisper, on the same clips.

Two sets: recorded human speech (the real-speech test prompts of each language, many of them several
sentences long) and the demo's espeak-ng clips. Every path decodes the same clips with the same model
and the language given, and is scored with training's normalisation. Each row prints audio seconds
per wall second, the ratio to faster-whisper file by file at beam 1 (the same greedy decoding as
ours), WER or CER per language, and how many clips the coverage guard had to decode again. A speed
figure counts only where its error rate is within 0.5 points of faster-whisper's on that set.

    whisper_lora_env/bin/python benchmarks/infer_speed.py [--model_path M] [--languages en,es,fr,it] [--demo_workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from results import write_result

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.core.records import join_segments
from whisper_lora.data.manifests import Row
from whisper_lora.data.realspeech import prompts
from whisper_lora.infer.backends.ct2 import ct2_folder
from whisper_lora.infer.evaluate import load_test_rows, run_model, score
from whisper_lora.infer.transcriber import Clip, Transcriber

ROOT = Path(__file__).resolve().parents[1]


def real_rows(languages: list[str]) -> tuple[list[Row], list[Clip]]:
    """The real-speech test prompts of each language, as scored rows and decoded clips."""
    found = [p for language in languages for p in prompts(language) if p.split == "test"]
    rows = [Row("realspeech", k + 1, p.audio_path, p.text, p.language) for k, p in enumerate(found)]
    return rows, [Clip(p.audio_path, decode_audio(p.audio_path)) for p in found]


def faster_whisper_files(model, rows: list[Row], clips: list[Clip], **options) -> tuple[list[str], float]:
    """faster-whisper called directly, one file after another, with its own defaults but for the options given."""
    started, texts = time.perf_counter(), []
    for row, clip in zip(rows, clips, strict=True):
        segments, _ = model.transcribe(clip.samples, language=row.language, **options)
        texts.append(join_segments([s for s in segments], row.language))
    return texts, time.perf_counter() - started


def inference_command(model_path: str, rows: list[Row], language: str) -> tuple[list[str], float]:
    """The default whisper_lora_inference.py command on one language's files, start-up included."""
    with tempfile.TemporaryDirectory() as folder:
        listing, output = Path(folder) / "list.txt", Path(folder) / "out.json"
        listing.write_text("\n".join(row.audio_path for row in rows) + "\n", encoding="utf-8")
        command = [
            sys.executable,
            str(ROOT / "whisper_lora_inference.py"),
            "--model_path",
            model_path,
            "--audio_list",
            str(listing),
            "--output_file",
            str(output),
            "--language",
            language,
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        seconds = time.perf_counter() - started
        by_path = {record["path"]: record["text"] for record in json.loads(output.read_text(encoding="utf-8"))}
    return [by_path[row.audio_path] for row in rows], seconds


RESULTS: list[list] = []  # every printed line, for benchmarks/results


class Table:
    """Prints one line per path: throughput, ratio to the reference row, error rate per language, clips redone."""

    def __init__(self, title: str, rows: list[Row], clips: list[Clip]):
        self.title, self.rows, self.reference = title, rows, None
        self.seconds = {row.audio_path: len(clip.samples) / SAMPLE_RATE for row, clip in zip(rows, clips, strict=True)}
        audio = sum(self.seconds.values())
        print(f"\n{title}: {len(clips)} clips, {audio:.0f} s of audio, mean {audio / len(clips):.1f} s")

    def add(self, name: str, texts: list[str], seconds: float, redone: int | None = None, rows=None) -> None:
        rows = rows or self.rows
        speed = sum(self.seconds[row.audio_path] for row in rows) / seconds
        self.reference = self.reference or speed
        errors = "  ".join(f"{k} {100 * v:5.1f}%" for k, v in score(rows, texts, None, None).items())
        extra = "" if redone is None else f"  redone {redone}"
        print(f"{name:<46} {speed:6.1f} audio s/s  {speed / self.reference:5.2f}x  {errors}{extra}", flush=True)
        RESULTS.append([self.title, name, round(speed, 1), f"{speed / self.reference:.2f}x", errors, redone])


def by_language(rows: list[Row]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for k, row in enumerate(rows):
        groups.setdefault(row.language, []).append(k)
    return groups


def compare(model_path: str, title: str, rows: list[Row], clips: list[Clip], command: bool) -> None:
    """Every path on one set of clips."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    table = Table(title, rows, clips)
    fw = WhisperModel(str(ct2_folder(model_path)), device="cpu", compute_type="int8")
    table.add("faster-whisper file by file, int8, beam 1", *faster_whisper_files(fw, rows, clips, beam_size=1))
    table.add("faster-whisper file by file, int8, beam 5", *faster_whisper_files(fw, rows, clips))
    batched = BatchedInferencePipeline(fw)
    table.add("faster-whisper BatchedInferencePipeline, b 8", *faster_whisper_files(batched, rows, clips, beam_size=1))
    for name, transcriber in [
        ("whisper-lora default (ct2, packed, batch 8)", Transcriber(model_path)),
        ("whisper-lora --batch_size 1", Transcriber(model_path, batch_size=1)),
        ("whisper-lora --backend transformers", Transcriber(model_path, "transformers")),
    ]:
        run = run_model(transcriber, rows, clips, None)
        table.add(name, run.hypotheses, run.wall_seconds, sum(1 for t in run.transcripts if t.redecoded))
    if command:
        for language, indices in by_language(rows).items():
            picked = [rows[k] for k in indices]
            texts, seconds = inference_command(model_path, picked, language)
            table.add(f"whisper_lora_inference.py, {language} (with start-up)", texts, seconds, rows=picked)


def long_file(model_path: str, rows: list[Row], clips: list[Clip]) -> None:
    """One long file of the English multi-sentence prompts with 1 s pauses: ours against faster-whisper."""
    from faster_whisper import WhisperModel

    picked = [k for k, row in enumerate(rows) if row.language == "en" and row.text.count(".") > 1]
    pause = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([part for k in picked for part in (clips[k].samples, pause)])
    joined = [Row("long", 1, "long.wav", " ".join(rows[k].text for k in picked), "en")]
    table = Table("one long English recording", joined, [Clip("long.wav", audio)])
    fw = WhisperModel(str(ct2_folder(model_path)), device="cpu", compute_type="int8")
    started = time.perf_counter()
    segments, _ = fw.transcribe(audio, language="en", beam_size=1)
    text = join_segments(list(segments), "en")
    table.add("faster-whisper, int8, beam 1", [text], time.perf_counter() - started)
    run = run_model(Transcriber(model_path), joined, [Clip("long.wav", audio)], None)
    table.add("whisper-lora default (ct2)", run.hypotheses, run.wall_seconds)


def main() -> None:
    """Time and score every path on the real-speech set, a long real recording and the demo's espeak clips."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", default="base", help="a model as for transcribe (default: base)")
    parser.add_argument("--languages", default="en,es,fr,it", help="real-speech languages to test")
    parser.add_argument(
        "--demo_workdir", default=None, help="also the espeak clips of this demo folder's corpus/test.json"
    )
    parser.add_argument("--no_command", action="store_true", help="skip the whisper_lora_inference.py rows")
    args = parser.parse_args()
    print(f"model {args.model_path}")
    rows, clips = real_rows(args.languages.split(","))
    compare(args.model_path, "real speech (asterisk-core-sounds test prompts)", rows, clips, not args.no_command)
    if "en" in args.languages.split(","):
        long_file(args.model_path, rows, clips)
    if args.demo_workdir:
        rows, clips = load_test_rows([str(Path(args.demo_workdir) / "corpus" / "test.json")], log=lambda *a: None)
        compare(args.model_path, "espeak-ng clips (demo test split)", rows, clips, command=False)
    columns = ["set", "path", "audio s/s", "ratio", "error rate", "redone"]
    title = f"Inference: speed beside error rate, {args.model_path}"
    name = "infer_speed" if args.model_path == "base" else "infer_speed-adapter"
    write_result(name, {"title": title, "columns": columns, "rows": RESULTS}, "greedy, language given")


if __name__ == "__main__":
    main()

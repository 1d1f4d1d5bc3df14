"""Segment timestamps on long recordings: the base model, a fine-tune on single-prompt rows, one on subtitled windows.

Recorded Spanish prompts (Debian's asterisk-core-sounds, `whisper_lora.data.realspeech`) are laid end to end with
0.3 to 1.5 s of silence between them into long files whose cue bounds are known: each prompt's speech,
trimmed of its leading and trailing silence (10 ms frames 35 dB under the prompt's peak). Training prompts
make the training files, test prompts (which no training file holds) the held-out ones. Two fine-tunes with
our defaults: "single" on today's rows (each prompt clip with its text), "windows" on the long training files
with their SRT subtitles. Each model decodes the held-out files with timestamps on both backends (CTranslate2
after export, and transformers). For every reference cue the error is the distance from its start (end) to
the nearest predicted segment start (end); the table gives their median and p90, predicted segments per
cue, and WER on the same run.

    whisper_lora_env/bin/python benchmarks/timestamps.py [--workdir DIR] [--train_minutes 8] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
from no_speech import train_run  # benchmarks/ is on the path when a script in it runs
from results import write_result

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.audio.noise import write_wav
from whisper_lora.core.files import write_json_atomic, write_text_atomic
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.models import cache_root
from whisper_lora.core.records import Segment, TranscribeOptions, Transcript
from whisper_lora.data.realspeech import Prompt, prompts
from whisper_lora.infer.writers import SrtWriter

FRAME = SAMPLE_RATE // 100
TEST_FILES, TEST_SECONDS = 4, 75.0


def speech_bounds(samples: np.ndarray, floor_db: float = -35.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames within floor_db of the clip's loudest frame."""
    frames = samples[: len(samples) // FRAME * FRAME].reshape(-1, FRAME)
    level = 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) + 1e-9)
    loud = np.flatnonzero(level >= level.max() + floor_db)
    return int(loud[0]) * FRAME, (int(loud[-1]) + 1) * FRAME


def long_file(path: Path, chosen: list[Prompt], rng: random.Random) -> dict:
    """Write the prompts' trimmed speech end to end, 0.3-1.5 s apart, with its SRT; the manifest row."""
    pieces, cues, at = [np.zeros(int(0.5 * SAMPLE_RATE), np.float32)], [], 0.5
    for prompt in chosen:
        samples = decode_audio(prompt.audio_path)
        first, last = speech_bounds(samples)
        pieces.append(samples[first:last])
        cues.append(Segment(at, at + (last - first) / SAMPLE_RATE, prompt.text))
        at = cues[-1].end
        gap = rng.uniform(0.3, 1.5)
        pieces.append(np.zeros(int(gap * SAMPLE_RATE), np.float32))
        at += int(gap * SAMPLE_RATE) / SAMPLE_RATE
    write_wav(path, np.concatenate(pieces))
    srt = write_text_atomic(path.with_suffix(".srt"), SrtWriter().render([Transcript(str(path), segments=cues)]))
    return {
        "audio_path": path.name,
        "subtitles": Path(srt).name,
        "language": chosen[0].language,
        "cues": [[c.start, c.end] for c in cues],
        "text": " ".join(c.text for c in cues),
    }


def long_files(folder: Path, chosen: list[Prompt], seconds: float, rng: random.Random, name: str) -> list[dict]:
    """Group prompts in order into files of about `seconds` of speech each."""
    rows, group, total = [], [], 0.0
    for prompt in chosen:
        group.append(prompt)
        total += prompt.seconds
        if total >= seconds:
            rows.append(long_file(folder / f"{name}_{len(rows)}.wav", group, rng))
            group, total = [], 0.0
    if group:
        rows.append(long_file(folder / f"{name}_{len(rows)}.wav", group, rng))
    return rows


def datasets(workdir: Path, train_minutes: float) -> dict[str, Path]:
    """Manifests: single-prompt training rows, subtitled long training files and the held-out long files."""
    folder = workdir / "audio"
    folder.mkdir(parents=True, exist_ok=True)
    found = prompts("es")
    rng = random.Random(0)
    train = [p for p in found if p.split == "train"]
    rng.shuffle(train)
    budget, chosen = train_minutes * 60, []
    for prompt in train:
        if sum(p.seconds for p in chosen) >= budget:
            break
        chosen.append(prompt)
    test = [p for p in found if p.split == "test"]
    rng.shuffle(test)
    test = test[: max(1, int(TEST_FILES * TEST_SECONDS // (sum(p.seconds for p in test) / len(test))))]
    single = [{"audio_path": p.audio_path, "text": p.text, "language": "es"} for p in chosen]
    windows = [{k: v for k, v in row.items() if k != "cues"} for row in long_files(folder, chosen, 60.0, rng, "train")]
    held_out = long_files(folder, test, TEST_SECONDS, rng, "test")
    return {
        "single": write_json_atomic(workdir / "train_single.json", single),
        "windows": write_json_atomic(folder / "train_windows.json", windows),
        "test": write_json_atomic(folder / "test_long.json", held_out),
    }


def nearest(reference: list[float], predicted: list[float]) -> list[float]:
    """For each reference time, the distance to the nearest predicted one (inf when nothing was predicted)."""
    if not predicted:
        return [float("inf")] * len(reference)
    marks = np.asarray(predicted)
    return [float(np.abs(marks - t).min()) for t in reference]


def score(model: str, backend: str, rows: list[dict], folder: Path) -> dict:
    """Start and end errors over every reference cue, segments per cue, and WER."""
    from whisper_lora.infer.transcriber import Transcriber

    transcriber = Transcriber(model, backend=backend, batch_size=1)
    options = TranscribeOptions(language="es", return_timestamps=True)
    transcripts = transcriber.files([str(folder / row["audio_path"]) for row in rows], options)
    starts, ends, segments, cues = [], [], 0, 0
    for row, transcript in zip(rows, transcripts, strict=True):
        starts += nearest([c[0] for c in row["cues"]], [s.start for s in transcript.segments])
        ends += nearest([c[1] for c in row["cues"]], [s.end for s in transcript.segments])
        segments, cues = segments + len(transcript.segments), cues + len(row["cues"])
    wer = error_rate([row["text"] for row in rows], [t.text for t in transcripts], "wer", "es")
    return {
        "start": (float(np.median(starts)), float(np.percentile(starts, 90))),
        "end": (float(np.median(ends)), float(np.percentile(ends, 90))),
        "per_cue": segments / cues,
        "wer": wer,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(cache_root() / "benchmarks" / "timestamps"))
    parser.add_argument("--train_minutes", type=float, default=8.0)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--backends", default="ct2,transformers")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    data = datasets(workdir, args.train_minutes)
    rows = json.loads(data["test"].read_text(encoding="utf-8"))
    models: dict[str, tuple[str, float | None]] = {"base (zero-shot)": ("base", None)}
    for name in ("single", "windows"):
        models[f"ours, {name}"] = train_run(data[name], workdir / "models" / f"{name}_{args.epochs:g}", args.epochs)
    trained = len(json.loads(data["single"].read_text(encoding="utf-8")))
    long = len(json.loads(data["windows"].read_text(encoding="utf-8")))
    print(f"\ntraining: {trained} Spanish prompts ({args.train_minutes:g} min), or the same in {long} subtitled files")
    print(f"held out: {len(rows)} files, {sum(len(r['cues']) for r in rows)} cues, none of them trained on")
    print(
        f"\n{'model':<20} {'backend':<13} {'start p50':>9} {'p90':>6} {'end p50':>8} {'p90':>6} {'seg/cue':>7} {'WER':>6}"
    )
    table = []
    for name, (model, seconds) in models.items():
        for backend in args.backends.split(","):
            r = score(model, backend, rows, data["test"].parent)
            bounds = [f"{value:.2f} s" for value in (*r["start"][:2], *r["end"][:2])]
            table.append([name, backend, *bounds, round(r["per_cue"], 2), f"{r['wer']:.1%}"])
            print(
                f"{name:<20} {backend:<13} {r['start'][0]:>8.2f}s {r['start'][1]:>5.2f}s {r['end'][0]:>7.2f}s "
                f"{r['end'][1]:>5.2f}s {r['per_cue']:>7.2f} {r['wer']:>6.1%}",
                flush=True,
            )
        if seconds is not None:
            print(f"{'':<20} trained in {seconds / 60:.1f} min")
    columns = ["model", "backend", "start p50", "start p90", "end p50", "end p90", "seg/cue", "WER"]
    title = f"Segment timestamps on {len(rows)} held-out long Spanish recordings"
    notes = f"{trained} training prompts, or the same speech in {long} subtitled files; {args.epochs:g} epochs"
    write_result("timestamps", {"title": title, "columns": columns, "rows": table}, notes)


if __name__ == "__main__":
    main()

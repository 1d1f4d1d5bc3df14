"""The whole train command against the Hugging Face recipe at the recipe's batch settings: peak RSS and samples/s.

Each run is a process of its own, measured from start to exit (model load, data, training, the final evaluation
and saving included): its peak RSS as the kernel counted it (wait4), and training rows x epochs over its wall
time. Ours is `whisper-lora train` with --per_device_train_batch_size 4 --gradient_accumulation_steps 2, as the
recipe trains (generalization.py's train_recipe: r=8 on q_proj/v_proj, batch 4 x 2, lr 5e-4, fp32); its metrics.json
says where the memory went, stage by stage. Where the CPU has bf16, ours trains in it by default, so it also runs
with --precision fp32. The rows are recorded Spanish training prompts (Debian's
asterisk-core-sounds-es), so every run reads the same audio. The recipe saves its merged model, as ours does; once
every timed run has ended, each model and the base one are scored on the recorded test prompts, which no training
row shares, so each speed stands beside its own error rate.

    whisper_lora_env/bin/python benchmarks/train_memory.py [--rows 48] [--epochs 2] [--language es]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

from results import write_result  # benchmarks/ is on the path when a script in it runs

from whisper_lora.convert.hf import load_whisper
from whisper_lora.core.files import write_json_atomic
from whisper_lora.core.models import cache_root
from whisper_lora.data.manifests import read_manifest
from whisper_lora.data.realspeech import write_manifests
from whisper_lora.infer.evaluate import ModelScorer
from whisper_lora.train.trainer import cpu_has_bf16

RECIPE = """
import sys
from pathlib import Path
sys.path.insert(0, {benchmarks!r})
from generalization import train_recipe
model, processor, _ = train_recipe(Path({manifest!r}), {epochs}, Path({output!r}))
model.save_pretrained({output!r})
processor.save_pretrained({output!r})
"""


def measured(command: list[str]) -> tuple[float, float]:
    """Run a command to its end: its wall seconds and its own peak RSS in MB."""
    started = time.perf_counter()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} failed with status {process.returncode}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024


def error_rate(model_name: str, test_rows: list, language: str) -> str:
    """The model's error rate on the test rows, as generalization.py scores them (greedy, transformers)."""
    model, processor = load_whisper(model_name)
    scores = ModelScorer(test_rows, processor).by_language(model)[language]
    return f"{scores['score']:.1%} {scores['metric'].upper()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=str(cache_root() / "benchmarks" / "train_memory"))
    parser.add_argument("--language", default="es")
    parser.add_argument("--rows", type=int, default=48, help="recorded training prompts")
    parser.add_argument("--epochs", type=float, default=2.0, help="the recipe's 2 by default")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    manifests = write_manifests((args.language,))
    rows = json.loads(manifests[f"{args.language}_train"].read_text(encoding="utf-8"))
    chosen = random.Random(0).sample(rows, min(args.rows, len(rows)))
    manifest = write_json_atomic(workdir / "train.json", chosen)
    samples = len(chosen) * args.epochs
    recipe = RECIPE.format(
        benchmarks=str(Path(__file__).resolve().parent),
        manifest=str(manifest),
        epochs=args.epochs,
        output=str(workdir / "recipe"),
    )
    ours_out = workdir / "ours"
    ours = [sys.executable, "-m", "whisper_lora.cli", "train", "--train_file", str(manifest)]
    ours += ["--num_train_epochs", str(args.epochs), "--per_device_train_batch_size", "4"]
    ours += ["--gradient_accumulation_steps", "2", "--language", args.language, "--report_to", "none"]
    ours += ["--overwrite_output_dir"]  # a rerun starts afresh
    runs = [
        ("Hugging Face recipe", [sys.executable, "-c", recipe], workdir / "recipe"),
        ("whisper-lora train", [*ours, "--output_dir", str(ours_out)], ours_out),
    ]
    if cpu_has_bf16():  # where the default is bf16, fp32 too: the recipe's precision
        fp32 = [*ours, "--output_dir", str(workdir / "ours_fp32"), "--precision", "fp32"]
        runs.append(("whisper-lora train --precision fp32", fp32, workdir / "ours_fp32"))
    table_rows = []
    for label, command, _ in runs:
        seconds, peak = measured(command)
        print(f"{label}: {samples / seconds:.2f} samples/s end to end, peak RSS {peak:.0f} MB")
        table_rows.append([label, f"{seconds:.0f} s", f"{samples / seconds:.2f}", f"{peak:.0f} MB"])
    test = read_manifest(manifests[f"{args.language}_test"])[0]
    for row, (_, _, model_dir) in zip(table_rows, runs, strict=True):
        row.append(error_rate(str(model_dir), test, args.language))
    table_rows.append(["base model, zero-shot", "", "", "", error_rate("base", test, args.language)])
    stages = json.loads((ours_out / "metrics.json").read_text())["memory_mb"]
    profile = "; ".join(
        f"{s['stage']} {s['rss_mb']} MB (peak {s['peak_mb']}, {s.get('seconds', '?')} s)" for s in stages
    )
    columns = ["run", "wall, start to exit", "samples/s", "peak RSS", f"recorded {args.language} test prompts"]
    table = {"title": "The whole train command against the recipe, at the recipe's batch settings", "columns": columns}
    notes = (
        f"{len(chosen)} recorded {args.language} prompts x {args.epochs:g} epochs, batch 4 x 2, "
        f"scored on {len(test)} test prompts after every timed run had ended; "
        f"each run a process of its own; whisper-lora train's RSS after each stage, and its seconds: {profile}"
    )
    write_result("train_memory", {**table, "rows": table_rows}, notes)


if __name__ == "__main__":
    main()

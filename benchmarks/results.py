"""Benchmark results as JSON files under benchmarks/results/, stamped with the date, commit and machine they came from."""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

from whisper_lora.core.files import write_json_atomic

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict:
    """The CPU model, its widest vector instructions (two "AMD EPYC" can differ 2x) and the cores this process may use."""
    cpu, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    vector = next((name for name in ("amx_bf16", "avx512f", "avx2") if name in flags), None)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "vector": vector, "cores": cores}


def commit() -> str:
    """The checked-out commit, with '+changes' when the tree differs from it."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], check=False, capture_output=True, text=True, cwd=RESULTS.parent
        ).stdout.strip()

    head = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def script() -> str:
    """The running script's path from the repository root, as a README command names it."""
    path = Path(sys.argv[0]).resolve()
    try:
        return str(path.relative_to(RESULTS.parent.parent))
    except ValueError:
        return str(path)


def write_result(name: str, table: dict, notes: str = "") -> Path:
    """Write benchmarks/results/NAME.json: the table (title, columns, rows) with the command that made it."""
    record = {
        "benchmark": name.split("-", maxsplit=1)[0],
        "date": datetime.date.today().isoformat(),
        "commit": commit(),
        "machine": machine(),
        "command": shlex.join(["whisper_lora_env/bin/python", script(), *sys.argv[1:]]),  # '' stays an argument
        "notes": notes,
        **table,
    }
    path = write_json_atomic(RESULTS / f"{name}.json", record)
    print(f"figures written to {path}")
    return path

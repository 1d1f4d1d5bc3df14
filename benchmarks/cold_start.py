"""Cold start: from `whisper-lora transcribe` to its first line of output, for one short clip on CTranslate2.

Runs the command line of this checkout and of an earlier commit (checked out into a temporary git
worktree) on the same clip and model, alternating, and reports the median wall time to the first line
of stdout and to exit, the import time of the command-line module (`python -X importtime`), and which of
torch, transformers and peft each run imported. The first run of each is a warm-up and is not counted.

    whisper_lora_env/bin/python benchmarks/cold_start.py [--before ddb472a] [--runs 7] [--audio CLIP]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results import write_result

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "peft")
# The command-line module and its main() at each layout: flat before the subpackages, cli/ after.
SENTENCE = "The weather is nice today, so we will walk to the station."
ENTRY = {True: "whisper_lora.cli.main", False: "whisper_lora.cli"}


def entry_module(src: Path) -> str:
    """Where main() lives in the checkout at src."""
    return ENTRY[(src / "whisper_lora" / "cli" / "main.py").is_file()]


def timed_run(src: Path, argv: list[str]) -> dict:
    """Wall seconds to the first stdout line and to exit, and the heavy modules the run imported."""
    script = (
        f"import sys; from {entry_module(src)} import main; code = main({argv!r}); sys.stdout.flush(); "
        f"print('heavy:', ','.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr); "
        "print('from:', sys.modules['whisper_lora'].__file__, file=sys.stderr); sys.exit(code)"
    )
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src)},
    )
    first_line = process.stdout.readline()
    first = time.perf_counter() - started
    rest, errors = process.communicate()
    total = time.perf_counter() - started
    if process.returncode != 0 or not first_line.strip():
        raise SystemExit(f"{src}: the command failed ({process.returncode}): {errors[-2000:]}")
    if not re.search(r"from: " + re.escape(str(src)), errors):
        raise SystemExit(f"{src}: the run imported whisper_lora from elsewhere: {errors[-500:]}")
    heavy = re.search(r"heavy: (.*)", errors).group(1)
    return {"first_output_s": first, "exit_s": total, "heavy": heavy or "none", "text": (first_line + rest).strip()}


def import_seconds(src: Path) -> float:
    """Cumulative import time of the command-line module, as `python -X importtime` reports it."""
    module = entry_module(src)
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(src)},
        check=True,
    )
    for line in result.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1e6
    raise SystemExit(f"{module} not in the import-time report")


def spoken(path: Path) -> str:
    """A three-second English sentence from espeak-ng, at 16 kHz."""
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), SENTENCE], check=True)
    return str(path)


def worktree(rev: str, folder: Path) -> Path:
    """The src folder of `rev`, checked out into folder."""
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), rev], check=True, capture_output=True
    )
    return folder / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", default="ddb472a", help="the earlier commit (default: the last flat layout)")
    parser.add_argument("--runs", type=int, default=7, help="counted runs of each checkout")
    parser.add_argument("--audio", help="the clip (default: an English sentence spoken by espeak-ng)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        audio = args.audio or spoken(Path(scratch) / "clip.wav")
        argv = ["transcribe", "--audio_path", str(Path(audio).resolve()), "--backend", "ct2"]
        sources = {f"before ({args.before})": worktree(args.before, Path(scratch) / "before"), "now": ROOT / "src"}
        try:
            runs = {name: [] for name in sources}
            for index in range(args.runs + 1):
                for name, src in sources.items():
                    run = timed_run(src, argv)
                    print(f"{name} run {index}: first output {run['first_output_s']:.2f} s, heavy: {run['heavy']}")
                    if index:
                        runs[name].append(run)
            rows = []
            for name, src in sources.items():
                texts = {run["text"] for run in runs[name]}
                rows.append(
                    [
                        name,
                        round(import_seconds(src), 2),
                        round(statistics.median(r["first_output_s"] for r in runs[name]), 2),
                        round(statistics.median(r["exit_s"] for r in runs[name]), 2),
                        runs[name][0]["heavy"],
                        " | ".join(sorted(texts))[:80],
                    ]
                )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(scratch) / "before")], check=False
            )
    table = {
        "title": f"Cold start of `whisper-lora transcribe` on one clip, CTranslate2, embedded base (median of {args.runs})",
        "columns": ["checkout", "CLI import s", "first output s", "exit s", "imports", "transcript"],
        "rows": rows,
    }
    for row in rows:
        print(row)
    notes = (
        "The earlier command-line module imported almost nothing at its top and loaded torch inside the command, "
        "so its import time is small; time to first output is the figure that counts."
    )
    write_result("cold_start", table, notes)


if __name__ == "__main__":
    main()

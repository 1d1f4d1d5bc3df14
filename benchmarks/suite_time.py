"""How long the test suite takes: the unit lane (the inner loop) and the whole suite, as CI runs it after set-up.

Each lane runs in a new process on a clean tree, with pytest's own settings (a worker per core, idle workers
taking queued tests); `serial` lanes add -n 0. Reports wall seconds and the counts pytest printed.

    whisper_lora_env/bin/python benchmarks/suite_time.py [--lanes unit,all,unit-serial]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from results import write_result

ROOT = Path(__file__).resolve().parents[1]
LANES = {
    "unit": ["tests/unit"],
    "all": [],
    "unit-serial": ["-n", "0", "tests/unit"],
    "all-serial": ["-n", "0"],
}


def run_lane(arguments: list[str]) -> tuple[float, str]:
    """Wall seconds of one pytest run, and its summary line."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CI": "true"},
    )
    seconds = time.perf_counter() - started
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed).*?) in [\d.]+s", done.stdout, re.M)
    if done.returncode != 0 or not summary:
        raise SystemExit(f"pytest {' '.join(arguments)} failed:\n{done.stdout[-3000:]}")
    return seconds, summary[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lanes", default="unit,all", help=f"comma-separated, from {', '.join(LANES)}")
    args = parser.parse_args()
    rows = []
    for lane in args.lanes.split(","):
        seconds, summary = run_lane(LANES[lane])
        print(f"{lane}: {seconds:.0f} s ({summary})")
        rows.append([lane, " ".join(["pytest", *LANES[lane]]), round(seconds), summary])
    table = {
        "title": f"Test suite wall time on {os.cpu_count()} cores, set-up excluded",
        "columns": ["lane", "command", "seconds", "pytest's count"],
        "rows": rows,
    }
    write_result("suite_time", table)


if __name__ == "__main__":
    main()

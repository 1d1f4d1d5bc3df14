"""The demo's wall time, phase by phase, with the error rates it printed, on this machine.

WHISPER_LORA_HOME=$(mktemp -d) whisper_lora_env/bin/python benchmarks/demo_time.py --workdir $(mktemp -d)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from results import write_result

from whisper_lora.demo.run import run_demo

NOTES = (
    "A fresh workdir and, with WHISPER_LORA_HOME pointing at an empty folder, a fresh model cache, as on a new machine."
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/demo_time"))
    args = parser.parse_args()
    started, marks = time.perf_counter(), []

    def log(line: str) -> None:
        if line.startswith("[") and "/4]" in line[:6]:
            marks.append((line, time.perf_counter() - started))
        print(line, flush=True)

    result = run_demo(args.workdir, log=log)
    ends = [seconds for _, seconds in marks[1:]] + [result["seconds"]]
    rows = [[line, f"{end - begun:.0f} s"] for (line, begun), end in zip(marks, ends, strict=True)]
    rows.append(["total", f"{result['seconds']:.0f} s ({result['seconds'] / 60:.1f} min)"])
    for name, scores in result["before"].items():
        for language, score in scores.items():
            after = result["after"][name][language]["score"]
            label = f"{name} {language} {score['metric'].upper()} ({score['rows']} rows)"
            rows.append([label, f"zero-shot {score['score']:.1%}, fine-tuned {after:.1%}"])
    table = {
        "title": "whisper-lora demo, end to end",
        "columns": ["phase or test set", "time or error rate"],
        "rows": rows,
    }
    write_result("demo_time", table, NOTES)


if __name__ == "__main__":
    main()

"""Render every benchmarks/results/*.json into benchmarks/README.md, between its `<!-- results: NAME -->` markers.

python benchmarks/tables.py           # rewrite the tables in place
python benchmarks/tables.py --check   # exit 1 when a table differs from its result file
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS, README = HERE / "results", HERE / "README.md"
BLOCK = re.compile(r"(<!-- results: (?P<name>[\w-]+) -->\n).*?(<!-- end results -->)", re.S)


def cell(value) -> str:
    """A table cell: numbers as they were recorded, text with its pipes escaped."""
    return "-" if value is None else str(value).replace("|", "\\|")


def render(record: dict) -> str:
    """A markdown table with the date, commit, machine and command of the run that made it."""
    machine = record["machine"]
    lines = [
        f"**{record['title']}** — {record['date']}, commit `{record['commit']}`, "
        f"{machine['cpu']}"
        + (f" ({machine['vector']})" if machine.get("vector") else "")
        + f", {machine['cores']} cores",
        "",
        f"`{record['command']}`",
        "",
        "| " + " | ".join(record["columns"]) + " |",
        "|" + "---|" * len(record["columns"]),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in record["rows"]]
    if record.get("notes"):
        lines += ["", record["notes"]]
    return "\n".join(lines) + "\n"


def load_results(folder: Path = RESULTS) -> dict[str, dict]:
    """Every result file by its name (the file name without .json)."""
    return {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))}


def rendered(text: str, results: dict[str, dict]) -> str:
    """text with every marked block replaced by its table; a marker without a result file is an error."""

    def table(match: re.Match) -> str:
        name = match["name"]
        if name not in results:
            raise SystemExit(f"error: {README}: no benchmarks/results/{name}.json for the block {name!r}")
        return match.group(1) + render(results[name]) + match.group(3)

    return BLOCK.sub(table, text)


def unplaced(text: str, results: dict[str, dict]) -> list[str]:
    """Result files that no block in text shows."""
    shown = {match["name"] for match in BLOCK.finditer(text)}
    return [name for name in results if name not in shown]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report tables that differ from their files")
    args = parser.parse_args()
    text, results = README.read_text(encoding="utf-8"), load_results()
    missing = unplaced(text, results)
    if missing:
        print(f"error: {README}: no block for {', '.join(missing)}", file=sys.stderr)
        return 1
    fresh = rendered(text, results)
    if args.check:
        if fresh != text:
            print(f"error: {README}: tables differ from benchmarks/results; run python benchmarks/tables.py")
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

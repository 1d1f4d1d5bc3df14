"""whisper.cpp exports against the CTranslate2 export of the same model, on recorded speech, with the same decoding.

Each model is exported to CTranslate2 in float32 (so that only whisper.cpp's rounding shows) and to whisper.cpp in
f16 and q8_0; each export reads the held-out rows greedily, each row in its own language, through the Transcriber
that `evaluate` uses. The issue's goal: f16 within 0.5 points and q8_0 within 1.0 point of the CT2 export.

    whisper_lora_env/bin/python benchmarks/ggml_parity.py [--models base:en,es tiny.en:en ADAPTER:MANIFEST]

A model is NAME:LANGUAGES (recorded test prompts of each language) or NAME:MANIFEST (a test manifest's rows).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from results import write_result

from whisper_lora.convert.export import export_model
from whisper_lora.core.metrics import default_metric, error_rate
from whisper_lora.data.manifests import read_manifest
from whisper_lora.data.realspeech import prompts
from whisper_lora.infer.parity import greedy_reader, whispercpp_reader

TYPES = ("f16", "q8_0")


def rows_of(spec: str) -> list[tuple[str, str, str]]:
    """(audio path, language, transcript) of the rows a spec names."""
    if spec.endswith((".json", ".jsonl")):
        found, problems = read_manifest(spec)
        if problems:
            raise SystemExit(f"{spec}: {problems[0]}")
        return [(row.audio_path, row.language or "", row.text) for row in found]
    return [(p.audio_path, p.language, p.text) for lang in spec.split(",") for p in prompts(lang) if p.split == "test"]


def rates(read, rows) -> dict[str, float]:
    """Error rate per language of one reader over the rows."""
    said = [read(path, language) for path, language, _ in rows]
    found = {}
    for language in sorted({language for _, language, _ in rows}):
        picked = [(text, heard) for (_, lang, text), heard in zip(rows, said, strict=True) if lang == language]
        metric = default_metric(language)
        found[language] = error_rate([t for t, _ in picked], [h for _, h in picked], metric, language)
    return found


def compare(model: str, rows, folder: Path) -> list[list]:
    """A table row per language: the CT2 float32 error rate, then each GGML type's and its distance from it."""
    ct2 = export_model(model, folder / "ct2", "ct2", "float32")["ct2"]
    files = export_model(model, folder / "ggml", "ggml", ggml_types=TYPES)
    started = time.perf_counter()
    found = {"ct2": rates(greedy_reader(ct2, "ct2"), rows)}
    for kind in TYPES:
        found[kind] = rates(whispercpp_reader(files[f"ggml {kind}"]), rows)
    print(f"{model}: {found} ({time.perf_counter() - started:.0f} s)")
    table = []
    for language, base in found["ct2"].items():
        cells = [f"{found[k][language]:.1%} ({100 * (found[k][language] - base):+.1f})" for k in TYPES]
        count = sum(1 for _, lang, _ in rows if lang == language)
        table.append([Path(model).name, f"{language}, {count} rows", f"{base:.1%}", *cells])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", nargs="+", default=["base:en,es", "tiny.en:en"], help="NAME:LANGUAGES or NAME:MANIFEST"
    )
    args = parser.parse_args()
    table = []
    for spec in args.models:
        model, rows_spec = spec.rsplit(":", 1)
        with tempfile.TemporaryDirectory() as folder:
            table += compare(model, rows_of(rows_spec), Path(folder))
    columns = ["model", "rows", "CT2 float32", "whisper.cpp f16 (points)", "whisper.cpp q8_0 (points)"]
    title = "whisper.cpp exports against the CTranslate2 export, greedy, each row in its language"
    write_result("ggml_parity", {"title": title, "columns": columns, "rows": table}, "error rate: CER for zh, else WER")


if __name__ == "__main__":
    main()

"""The three backends on the same recorded speech, with the default decoding options: speed beside error rate.

Each backend decodes the real-speech test prompts of each language with the language given and every
default (temperature fallback, thresholds, previous-text conditioning), as `transcribe --backend B` does.
The whisper.cpp files are exported from the same model first (f16 and q8_0).

    whisper_lora_env/bin/python benchmarks/backends.py [--model_path base] [--languages en,es] [--transformers]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from infer_speed import RESULTS, Table, real_rows
from results import write_result

from whisper_lora.convert.export import export_model
from whisper_lora.infer.evaluate import run_model
from whisper_lora.infer.transcriber import Transcriber


def main() -> None:
    """Time and score each backend on the real-speech test prompts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_path", default="base", help="a model as for transcribe (default: base)")
    parser.add_argument("--languages", default="en,es", help="real-speech languages to test")
    parser.add_argument("--transformers", action="store_true", help="also the transformers backend (slow on CPU)")
    args = parser.parse_args()
    rows, clips = real_rows(args.languages.split(","))
    table = Table("real speech (asterisk-core-sounds test prompts)", rows, clips)
    with tempfile.TemporaryDirectory() as folder:
        files = export_model(args.model_path, Path(folder) / "ggml", "ggml", ggml_types=("q8_0", "f16"))
        paths = [
            ("ct2 int8 (default: packed, batch 8)", Transcriber(args.model_path)),
            ("ct2 int8 --batch_size 1", Transcriber(args.model_path, batch_size=1)),
            ("whispercpp q8_0", Transcriber(str(files["ggml q8_0"]))),
            ("whispercpp f16", Transcriber(str(files["ggml f16"]))),
        ]
        if args.transformers:
            paths.append(("transformers float32", Transcriber(args.model_path, "transformers")))
        for name, transcriber in paths:
            run = run_model(transcriber, rows, clips, None)
            table.add(name, run.hypotheses, run.wall_seconds, sum(1 for t in run.transcripts if t.redecoded))
    columns = ["set", "backend", "audio s/s", "ratio", "error rate", "redone"]
    title = f"Backends: speed beside error rate, {args.model_path}, default decoding options"
    write_result("backends", {"title": title, "columns": columns, "rows": RESULTS}, "language given, 2 cores")


if __name__ == "__main__":
    main()

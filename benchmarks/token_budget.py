"""The token budget: zero-shot scoring time and error rates with decoding capped by audio length, and without the cap.

Zero-shot whisper-base cannot place the demo's espeak-ng Mandarin and loops; uncapped, every such clip
runs to Whisper's 448-token limit. Decoded with `whisper-lora`'s transcriber on both backends:
"uncapped" is greedy decoding with no budget (the decoding before the budget existed), "greedy" is greedy
decoding with the budget (the scorer of the demo and of training), and "budget" is the default options
(the budget, and the temperature fallback on repetitive or unlikely windows). Sets: the
demo's in-domain and out-of-domain Mandarin and English (`whisper-lora demo`'s corpus, spoken here) and
recorded English prompts (Debian's asterisk-core-sounds).

    whisper_lora_env/bin/python benchmarks/token_budget.py [--workdir DIR] [--rows 16] [--backends transformers,ct2]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from results import write_result

from whisper_lora.audio.decode import decode_audio
from whisper_lora.core import budget
from whisper_lora.core.metrics import default_metric, error_rate
from whisper_lora.core.models import cache_root
from whisper_lora.core.records import TranscribeOptions
from whisper_lora.data.realspeech import write_manifests
from whisper_lora.demo.run import build_corpus, build_out_of_domain
from whisper_lora.infer.backends import ct2, hf
from whisper_lora.infer.transcriber import Clip, Transcriber


def uncapped(seconds: float, language: str | None, prompt_tokens: int = budget.START_TOKENS, limit: int = 448) -> int:
    """Whisper's own limit: whatever the prompt leaves of 448 tokens."""
    return limit - prompt_tokens


def test_sets(workdir: Path, rows: int) -> dict[str, list[dict]]:
    """The first `rows` rows of each set, audio paths absolute."""
    corpus = workdir / "corpus"
    _, test = build_corpus(corpus)
    out_of_domain = build_out_of_domain(corpus)
    real_en = write_manifests(("en",))["en_test"]
    sets = {}
    for name, manifest, language in (
        ("in-domain zh", test, "zh"),
        ("out-of-domain zh", out_of_domain, "zh"),
        ("out-of-domain en", out_of_domain, "en"),
        ("recorded en", real_en, "en"),
    ):
        found = [r for r in json.loads(manifest.read_text(encoding="utf-8")) if r.get("language", language) == language]
        for row in found:
            row["audio_path"] = str((manifest.parent / row["audio_path"]).resolve())
        sets[name] = found[:rows]
    return sets


def decode(
    transcriber: Transcriber, rows: list[dict], language: str, options: TranscribeOptions
) -> tuple[float, float]:
    """Seconds to transcribe the rows, and their error rate."""
    clips = [Clip(r["audio_path"], decode_audio(r["audio_path"])) for r in rows]
    started = time.perf_counter()
    texts = [t.text for t in transcriber.clips(clips, replace(options, language=language))]
    seconds = time.perf_counter() - started
    metric = default_metric(language)
    return seconds, error_rate([r["text"] for r in rows], texts, metric, language)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=cache_root() / "benchmarks" / "token_budget")
    parser.add_argument("--rows", type=int, default=16, help="rows per set")
    parser.add_argument("--backends", default="transformers,ct2")
    parser.add_argument("--variants", default="uncapped,greedy,budget")
    args = parser.parse_args()
    sets = test_sets(args.workdir, args.rows)
    variants = {
        "uncapped": (uncapped, TranscribeOptions(temperature=[0.0])),
        "greedy": (budget.max_new_tokens, TranscribeOptions(temperature=[0.0])),
        "budget": (budget.max_new_tokens, TranscribeOptions()),
    }
    table = []
    for backend in args.backends.split(","):
        transcriber = Transcriber(None, backend, "cpu")
        for variant in args.variants.split(","):
            cap, options = variants[variant]
            hf.max_new_tokens = ct2.max_new_tokens = cap
            for name, rows in sets.items():
                seconds, rate = decode(transcriber, rows, name.split()[-1], options)
                table.append([backend, variant, name, len(rows), round(seconds, 1), round(100 * rate, 2)])
                print(
                    f"{backend:<13}{variant:<10}{name:<18}{len(rows):>4} rows {seconds:>7.1f} s  {100 * rate:6.2f}%",
                    flush=True,
                )
    columns = ["backend", "decoding", "set", "rows", "seconds", "error %"]
    notes = "whisper-base zero-shot, CPU; error % is CER for zh, WER for en"
    write_result("token_budget", {"title": "Token budget: zero-shot scoring", "columns": columns, "rows": table}, notes)


if __name__ == "__main__":
    main()

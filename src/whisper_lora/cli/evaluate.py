"""whisper-lora evaluate: WER/CER of one model or two side by side, with a per-utterance CSV."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from whisper_lora.cli.common import add_batch_size, add_ray, from_args, ray_address, report_redecoded, runtime
from whisper_lora.core.records import Runtime, TranscribeOptions
from whisper_lora.infer.evaluate import (
    ModelRun,
    format_summary,
    format_utterances,
    load_test_rows,
    run_model,
    run_model_on_ray,
    utterance_table,
    write_csv,
)
from whisper_lora.infer.ray_jobs import check_on_ray
from whisper_lora.infer.transcriber import Transcriber

HELP = "WER/CER of a model, or two side by side, on a test manifest, with a CSV report"


def fields() -> tuple[type, ...]:
    """The dataclasses whose fields are this command's flags."""
    return Runtime, TranscribeOptions


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    options = from_args(TranscribeOptions, args)  # refuses a bad language before any decoding
    rows, clips = load_test_rows(args.test_file, strict=args.strict)
    runs = []
    for model_path in [args.model_path] + ([args.compare_with] if args.compare_with else []):
        runs.append(_run(dataclasses.replace(runtime(args), model_path=model_path), args, rows, clips, options))
        report_redecoded(runs[-1].transcripts)
    records = utterance_table(rows, runs, options.language, args.metric)
    print(format_utterances(records, runs))
    print()
    print(format_summary(runs, args.metric))
    print(f"per-utterance report: {write_csv(args.report_csv, records)}")
    return 0


def _run(model: Runtime, args: argparse.Namespace, rows, clips, options: TranscribeOptions) -> ModelRun:
    """One model's scored run, in this process or on Ray's actors with --ray."""
    name = model.model_path or "base"
    if args.ray is not None:
        check_on_ray(model, options)
        print(f"transcribing {len(clips)} rows with {name} on Ray, {args.ray_actors} actors", file=sys.stderr)
        ray = {"address": ray_address(args), "actors": args.ray_actors, "batch_size": args.batch_size}
        return run_model_on_ray(model, rows, clips, options, args.metric, **ray)
    transcriber = Transcriber.run(model, args.batch_size)
    print(f"transcribing {len(clips)} rows with {name} ({transcriber.backend})", file=sys.stderr)
    return run_model(transcriber, rows, clips, options, args.metric)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument("--compare_with", default=None, help="a second model scored on the same rows, such as base")
    parser.add_argument("--test_file", nargs="+", required=True, help="JSON or JSONL manifests with reference text")
    parser.add_argument(
        "--metric", default=None, choices=["cer", "wer"], help="default: cer for zh/ja/ko/yue, wer otherwise"
    )
    add_batch_size(parser)
    add_ray(parser, "score")
    parser.add_argument("--report_csv", default="evaluation.csv", help="where the per-utterance CSV goes")
    parser.add_argument(
        "--strict", action="store_true", help="refuse test files with bad rows instead of skipping them"
    )

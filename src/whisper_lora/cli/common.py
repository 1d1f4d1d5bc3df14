"""Flags and helpers that several subcommands share, each defined once."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from whisper_lora.core.records import Runtime

EXIT_BAD_INPUT = 2


def positive_int(text: str) -> int:
    """An int flag that must be at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    """An int flag that must be 0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    """A float flag that must be above 0 (and finite)."""
    value = float(text)
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text}")
    return value


def add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch_size",
        type=positive_int,
        default=8,
        help="ct2 with --language: up to N short clips packed per 30 s window; transformers: "
        "clips of <=30 s per generate call (default 8); 1: one at a time",
    )


RAY_LOCAL = "local"  # --ray without an address: a Ray started by the command


def add_ray(parser: argparse.ArgumentParser, what: str) -> None:
    """--ray [ADDRESS] and --ray_actors, for commands that can spread their files over Ray Data actors."""
    parser.add_argument(
        "--ray",
        nargs="?",
        const=RAY_LOCAL,
        default=None,
        metavar="ADDRESS",
        help=f"{what} on Ray Data (pip extra ray), on the cluster at ADDRESS or, without one, on a Ray started here",
    )
    parser.add_argument(
        "--ray_actors", type=positive_int, default=2, help="with --ray: actors, each holding the model once (default 2)"
    )


def ray_address(args: argparse.Namespace) -> str | None:
    """The cluster --ray names, or None for a Ray started here."""
    return None if args.ray == RAY_LOCAL else args.ray


def from_args(cls, args: argparse.Namespace):
    """The dataclass cls built from the parsed flags named after its fields."""
    return cls(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(cls)})


def runtime(args: argparse.Namespace):
    """The records.Runtime (--model_path, --backend, --device, --compute_type) the command line asked for."""

    return from_args(Runtime, args)


def report_redecoded(transcripts: list) -> None:
    """Say how many files were decoded again because their first text stopped before their speech did, and how many
    have no text over speech."""
    for note, what in (
        ("redecoded", "were decoded again: their first text stopped before the speech did"),
        ("unheard", "have no text though speech was detected; check their language or --no_speech_threshold"),
    ):
        noted = [t for t in transcripts if getattr(t, note)]
        if noted:
            first = f"{noted[0].path}: {getattr(noted[0], note)}"
            print(f"{len(noted)} of {len(transcripts)} files {what} (first: {first})", file=sys.stderr)

"""whisper-lora serve: the server's flags, handed to serve.app."""

from __future__ import annotations

import argparse

from whisper_lora.cli.common import non_negative_int, positive_float, positive_int, runtime
from whisper_lora.core.errors import UserError
from whisper_lora.core.records import Runtime

HELP = "an OpenAI-compatible transcription API and a web page (needs whisper-lora[server])"


def fields() -> tuple[type, ...]:
    """The dataclasses whose fields are this command's flags."""
    return (Runtime,)


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    try:
        from whisper_lora.serve.app import ServeSettings, serve
    except ImportError as error:
        raise UserError(
            f"whisper-lora serve needs the server extra ({error.name} is missing): pip install 'whisper-lora[server]'"
        ) from None
    settings = ServeSettings(
        runtime(args),
        max_upload_mb=args.max_upload_mb,
        api_key=args.api_key,
        workers=args.workers,
        max_queue=args.max_queue,
        models=named_models(args.model or []),
        preload=args.preload,
        max_loaded=args.max_loaded,
        max_streams=args.max_streams,
        max_audio_s=args.max_audio_s,
        allowed_origins=tuple(args.allowed_origins),
        graceful_shutdown_s=args.graceful_shutdown_s,
        upload_timeout_s=args.upload_timeout_s,
    )
    serve(settings, args.host, args.port)
    return 0


def named_models(specs: list[str]) -> dict[str, str | None]:
    """{NAME: PATH} from serve's --model NAME=PATH flags, in order; UserError for a malformed or repeated one."""
    models: dict[str, str | None] = {}
    for spec in specs:
        name, _, path = (part.strip() for part in spec.partition("="))
        if not name or not path:
            raise UserError(f"--model {spec!r}: give NAME=PATH, e.g. --model support-zh=./output")
        if name in models:
            raise UserError(f"--model {name!r} is given twice")
        models[name] = path
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME=PATH",
        help="serve PATH (any model --model_path takes) as NAME, the name a request's model field gives; repeat it "
        "for several models, the first (or --model_path) is the default, which 'whisper-1' also picks",
    )
    parser.add_argument("--preload", action="store_true", help="load every model at start, not on its first request")
    parser.add_argument(
        "--max_loaded", type=positive_int, default=None, help="most models in memory at once (least recently used go)"
    )
    parser.add_argument(
        "--max_streams",
        type=positive_int,
        default=1,
        help="live /v1/realtime sessions at once; more are refused so the others keep up (default: 1, what 2 CPU cores keep near real time)",
    )
    parser.add_argument(
        "--allowed_origins",
        nargs="+",
        default=[],
        metavar="URL",
        help="web page origins (such as https://app.example) that may open /v1/realtime without --api_key "
        "(default: the server's own page only)",
    )
    parser.add_argument(
        "--upload_timeout_s",
        type=positive_float,
        default=60.0,
        help="an upload must arrive within this many seconds (else 408) before it takes a place in the queue",
    )
    parser.add_argument(
        "--graceful_shutdown_s",
        type=positive_float,
        default=10.0,
        help="after SIGTERM or Ctrl-C, how long running requests may finish before the server exits (default: 10)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--max_upload_mb", type=positive_float, default=25.0, help="larger uploads get 413 (default: 25)"
    )
    parser.add_argument(
        "--max_audio_s",
        type=positive_float,
        default=3600.0,
        help="longer decoded audio gets 413, refused while decoding (default: 3600, one hour)",
    )
    parser.add_argument(
        "--api_key", default=None, help="require 'Authorization: Bearer KEY' (or set WHISPER_LORA_API_KEY)"
    )
    parser.add_argument("--workers", type=positive_int, default=1, help="transcriptions at once (default: 1)")
    parser.add_argument(
        "--max_queue",
        type=non_negative_int,
        default=8,
        help="requests waiting beyond the workers before 503 (default: 8)",
    )

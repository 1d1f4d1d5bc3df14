"""The whisper-lora command line: argument parsing only, each subcommand handing off to its module."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

from huggingface_hub.utils import disable_progress_bars

from whisper_lora import __version__
from whisper_lora.audio.decode import decode_audio
from whisper_lora.cli import flags
from whisper_lora.core.errors import TrainingInterrupted, UserError
from whisper_lora.core.files import write_json_atomic, write_text_atomic
from whisper_lora.core.formats import EXPORT_FORMATS, GGML_TYPES, QUANTIZATIONS
from whisper_lora.core.models import EMBEDDED, EMBEDDED_ALIASES, cache_root
from whisper_lora.core.records import Runtime, TranscribeOptions
from whisper_lora.data import prepare
from whisper_lora.data.manifests import check_manifests, format_report
from whisper_lora.data.prepare import import_corpus, portable, write_manifest
from whisper_lora.infer import writers
from whisper_lora.infer.evaluate import (
    format_summary,
    format_utterances,
    load_test_rows,
    run_model,
    utterance_table,
    write_csv,
)
from whisper_lora.infer.file_jobs import read_audio_list, transcribe_many
from whisper_lora.infer.parity import agreement, greedy_reader, parity, whispercpp_reader
from whisper_lora.infer.stream import CommitPrinter, LiveTranscriber, join_words, pcm_chunks, play, play_chunks
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.infer.writers import get_writer

EXIT_BAD_INPUT = 2


def _check_data(args: argparse.Namespace) -> int:
    from whisper_lora.convert.hf import load_tokenizer

    tokenizer = load_tokenizer(args.model_name_or_path, cache_dir=args.cache_dir)
    report = check_manifests(
        args.files,
        tokenizer,
        max_seconds=args.max_duration,
        workers=args.decode_threads,
        allow_empty_text=args.allow_empty_text,
    )
    print(format_report(report, windows=args.windows))
    if args.json:
        write_json_atomic(
            args.json,
            {
                "ok": [{**asdict(row), "seconds": seconds} for row, seconds in report.ok],
                "problems": [asdict(problem) for problem in report.problems],
                "cue_problems": [asdict(problem) for problem in report.cue_problems],
                "total_seconds": report.total_seconds,
            },
        )
    return 1 if report.problems or report.cue_problems else 0


def _add_check_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "files",
        nargs="+",
        help="JSON or JSONL manifests of {audio_path, text[, language, start, end]} or {audio_path, subtitles|sentences}",
    )
    _add_check_flags(parser)
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report as JSON to FILE")
    parser.add_argument(
        "--windows", action="store_true", help="list every training window planned from each recording's segments"
    )


def _add_check_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model_name_or_path",
        "--model_path",
        default=None,
        help="model whose tokenizer counts label tokens (default: base)",
    )
    parser.add_argument("--cache_dir", default=None, help="Hugging Face cache folder for hub models")
    parser.add_argument("--max_duration", type=float, default=30.0, help="longest usable row in seconds (default: 30)")
    parser.add_argument(
        "--allow_empty_text",
        action="store_true",
        help='accept rows with empty text as audio without speech (else only rows with "no_speech": true)',
    )
    parser.add_argument(
        "--decode_threads",
        "--workers",  # its first name, which serve's --workers (transcriptions at once) made ambiguous
        type=_positive_int,
        default=min(4, os.cpu_count() or 1),
        help="audio files decoded at once (default: up to 4)",
    )


def _prepare(args: argparse.Namespace) -> int:
    options = {"language": args.language, "text_column": args.text_column, "allow_empty_text": args.allow_empty_text}
    found = import_corpus(args.format, args.source, split=args.split, **options)
    write_manifest(portable(found.rows, Path(args.output), args.lowercase), args.output)
    print(f"prepare: {len(found.rows)} rows from {args.source} (--format {args.format}) written to {args.output}")
    for line in found.notes[:5] + (["..."] if len(found.notes) > 5 else []):
        print(f"  note: {line}")
    for line in found.problems:
        print(f"  skipped {line}")
    if found.problems:
        print(f"prepare: {len(found.problems)} entries skipped, each named above")
    checked = 0 if args.no_check else _check_data(args_for_check(args))
    return 1 if found.problems or checked else 0


def args_for_check(args: argparse.Namespace) -> argparse.Namespace:
    """prepare's flags as check-data's, checking the manifest it wrote."""
    return argparse.Namespace(**{**vars(args), "files": [args.output], "json": None, "windows": False})


def _add_prepare(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="the corpus folder")
    parser.add_argument("--format", required=True, choices=sorted(prepare.FORMATS), help="the corpus layout")
    parser.add_argument("--output", required=True, help="the manifest to write (.json, or .jsonl for JSON Lines)")
    parser.add_argument(
        "--split", default="train", help="commonvoice: SPLIT.tsv; aishell: wav/SPLIT; audiofolder: SPLIT/ (train)"
    )
    parser.add_argument(
        "--language", default=None, help="language code for every row (kaldi, audiofolder, folder carry none)"
    )
    parser.add_argument("--text_column", default=None, help="audiofolder: the text column (default: found by name)")
    parser.add_argument("--lowercase", action="store_true", help="lowercase the text (LibriSpeech is upper case)")
    parser.add_argument("--no_check", action="store_true", help="do not decode every row's audio afterwards")
    _add_check_flags(parser)


def _models(args: argparse.Namespace) -> int:
    from whisper_lora.convert.hf import embedded_hf_dir

    print(f"cache: {cache_root()}  (set WHISPER_LORA_HOME to move it)")
    for short, embedded in EMBEDDED.items():
        names = ", ".join(alias for alias, target in EMBEDDED_ALIASES.items() if target == short)
        print(f"  {names:<28} embedded {embedded.name}, from pip packages: {embedded.pip_names()}")
    print(
        f"  {'any other name':<28} a local folder (transformers or CTranslate2) or a hub id such as openai/whisper-small"
    )
    for name in args.prepare or []:
        print(f"prepared {name}: {embedded_hf_dir(name)}")
    return 0


def _add_models(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepare", nargs="*", choices=sorted({"base", "tiny.en"}), help="convert embedded models now")


def _demo(args: argparse.Namespace) -> int:
    from whisper_lora.demo.run import run_demo, run_smoke

    if args.smoke:
        run_smoke(args.model_name_or_path)
    else:
        run_demo(args.workdir, args.model_name_or_path, args.epochs)
    return 0


def _add_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model_name_or_path", "--model_path", default=None, help="base model (default: the embedded base)"
    )
    parser.add_argument("--workdir", default="demo_output", help="where the corpus and the fine-tuned model go")
    parser.add_argument("--epochs", type=float, default=None, help="training epochs (default: train's, 3)")
    parser.add_argument("--smoke", action="store_true", help="only transcribe two spoken sentences, no training")


def _train(args: argparse.Namespace) -> int:
    from whisper_lora.train.trainer import TrainConfig, train

    config = from_args(TrainConfig, args)
    metrics = train(config)
    if metrics:
        best = metrics["best"]
        print(f"done: adapter, processor and metrics.json in {config.output_dir}")
        if best.get("step") is not None:
            print(f"best {metrics['metric'].upper()} {best[metrics['metric']]:.2%} at step {best['step']}")
    return 0


def _output_formats(args: argparse.Namespace) -> list[str]:
    if args.output_format == "all":
        return list(writers.FORMATS)
    if args.output_format:
        return [args.output_format]
    suffix = Path(args.output_file).suffix.lstrip(".").lower() if args.output_file else ""
    return [suffix if suffix in writers.FORMATS else "json"]


def _write_outputs(args: argparse.Namespace, transcripts: list) -> None:
    formats = _output_formats(args)
    for output_format in formats:
        target = Path(args.output_file)
        if len(formats) > 1 or target.suffix.lstrip(".").lower() != output_format:
            target = target.with_suffix(f".{output_format}")
        timestamps = args.return_timestamps or args.word_timestamps
        write_text_atomic(target, get_writer(output_format).render(transcripts, timestamps))
        print(f"wrote {target}", file=sys.stderr)


def _print_transcript(transcript, timestamps: bool) -> None:
    if transcript.error:
        print(f"{transcript.path}: error: {transcript.error}", file=sys.stderr)
        return
    if transcript.language_probability is not None:
        print(
            f"{transcript.path}: language {transcript.language} ({transcript.language_probability:.2f})",
            file=sys.stderr,
        )
    print(get_writer("txt").render([transcript], timestamps), end="", flush=True)


def _transcribe(args: argparse.Namespace) -> int:
    if bool(args.audio_path) == bool(args.audio_list):
        raise UserError("give exactly one of --audio_path or --audio_list")
    options = from_args(TranscribeOptions, args)
    paths = [args.audio_path] if args.audio_path else read_audio_list(args.audio_list)
    transcriber = Transcriber.run(runtime(args), args.batch_size)
    transcriber.check(options)
    sidecar = Path(f"{args.output_file}.partial.jsonl") if args.output_file else None
    timestamps = options.return_timestamps or options.word_timestamps
    show = None if args.output_file else (lambda t: _print_transcript(t, timestamps))
    transcripts = transcribe_many(
        lambda batch: transcriber.files(batch, options), paths, sidecar, on_result=show, batch_size=args.batch_size
    )
    if sidecar is not None:  # there is one exactly when there is an --output_file
        _write_outputs(args, transcripts)
        sidecar.unlink(missing_ok=True)
    _report_redecoded(transcripts)
    failed = [t for t in transcripts if t.error]
    for transcript in failed:
        print(f"error: {transcript.path}: {transcript.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(transcripts)} files failed; the others were transcribed", file=sys.stderr)
    return 1 if failed else 0


def _report_redecoded(transcripts: list) -> None:
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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _add_batch_size(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch_size",
        type=_positive_int,
        default=8,
        help="ct2 with --language: up to N short clips packed per 30 s window; transformers: "
        "clips of <=30 s per generate call (default 8); 1: one at a time",
    )


def _add_transcribe(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--audio_path", default=None, help="one audio file")
    parser.add_argument(
        "--audio_list", default=None, help="a text file with one audio path per line ('#' comments allowed)"
    )
    parser.add_argument(
        "--output_file", default=None, help="where to write results (format from the suffix); default: print"
    )
    parser.add_argument("--output_format", default=None, choices=["json", "txt", "srt", "vtt", "tsv", "all"])
    _add_batch_size(parser)
    parser.add_argument(  # the spelling argparse's BooleanOptionalAction gave it, in earlier READMEs
        "--no-condition_on_previous_text",
        dest="condition_on_previous_text",
        action="store_false",
        help="the same as --no_condition_on_previous_text",
    )


def _stream(args: argparse.Namespace) -> int:
    options = from_args(TranscribeOptions, args)
    live = LiveTranscriber(Transcriber.run(runtime(args), batch_size=1), options)
    if args.audio == "-":
        commits = play_chunks(live, pcm_chunks(sys.stdin.buffer, args.chunk_seconds), CommitPrinter())
    else:
        commits = play(live, decode_audio(args.audio), args.speed, args.chunk_seconds, CommitPrinter())
    print()
    if args.json_log:
        words = [{**dataclasses.asdict(c.word), "committed_at": c.committed_at, "latency": c.latency} for c in commits]
        write_json_atomic(args.json_log, {"text": join_words(c.word for c in commits), "words": words})
    return 0


def _add_stream(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("audio", help="an audio file, or - for 16-bit 16 kHz mono PCM on stdin")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="playback speed of a file: 1 real time, 0 as fast as it decodes"
    )
    parser.add_argument("--chunk_seconds", type=float, default=1.0, help="least new audio between two decodings")
    parser.add_argument(
        "--json_log",
        default=None,
        metavar="FILE",
        help="write each committed word, with when it was committed, to FILE",
    )


def _evaluate(args: argparse.Namespace) -> int:
    options = from_args(TranscribeOptions, args)  # refuses a bad language before any decoding
    rows, clips = load_test_rows(args.test_file, strict=args.strict)
    runs = []
    for model_path in [args.model_path] + ([args.compare_with] if args.compare_with else []):
        transcriber = Transcriber.run(dataclasses.replace(runtime(args), model_path=model_path), args.batch_size)
        print(f"transcribing {len(clips)} rows with {model_path or 'base'} ({transcriber.backend})", file=sys.stderr)
        runs.append(run_model(transcriber, rows, clips, options, args.metric))
        _report_redecoded(runs[-1].transcripts)
        del transcriber
    records = utterance_table(rows, runs, options.language, args.metric)
    print(format_utterances(records, runs))
    print()
    print(format_summary(runs, args.metric))
    print(f"per-utterance report: {write_csv(args.report_csv, records)}")
    return 0


def _add_evaluate(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compare_with", default=None, help="a second model scored on the same rows, such as base")
    parser.add_argument("--test_file", nargs="+", required=True, help="JSON or JSONL manifests with reference text")
    parser.add_argument(
        "--metric", default=None, choices=["cer", "wer"], help="default: cer for zh/ja/ko/yue, wer otherwise"
    )
    _add_batch_size(parser)
    parser.add_argument("--report_csv", default="evaluation.csv", help="where the per-utterance CSV goes")
    parser.add_argument(
        "--strict", action="store_true", help="refuse test files with bad rows instead of skipping them"
    )


def _serve(args: argparse.Namespace) -> int:
    try:
        from whisper_lora.serve.app import ServeSettings, serve
    except ImportError as error:
        raise UserError(
            f"whisper-lora serve needs the server extra ({error.name} is missing): pip install 'whisper-lora[server]'"
        ) from None
    settings = ServeSettings(
        runtime(args),
        args.max_upload_mb,
        args.api_key,
        args.workers,
        args.max_queue,
        models=named_models(args.model or []),
        preload=args.preload,
        max_loaded=args.max_loaded,
        max_streams=args.max_streams,
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


def _add_serve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        metavar="NAME=PATH",
        help="serve PATH (any model --model_path takes) as NAME, the name a request's model field gives; repeat it "
        "for several models, the first (or --model_path) is the default, which 'whisper-1' also picks",
    )
    parser.add_argument("--preload", action="store_true", help="load every model at start, not on its first request")
    parser.add_argument(
        "--max_loaded", type=_positive_int, default=None, help="most models in memory at once (least recently used go)"
    )
    parser.add_argument(
        "--max_streams",
        type=_positive_int,
        default=1,
        help="live /v1/realtime sessions at once; more are refused so the others keep up (default: 1, what 2 CPU cores keep near real time)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--max_upload_mb", type=float, default=25.0, help="larger uploads get 413 (default: 25)")
    parser.add_argument(
        "--api_key", default=None, help="require 'Authorization: Bearer KEY' (or set WHISPER_LORA_API_KEY)"
    )
    parser.add_argument("--workers", type=_positive_int, default=1, help="transcriptions at once (default: 1)")
    parser.add_argument(
        "--max_queue", type=int, default=8, help="requests waiting beyond the workers before 503 (default: 8)"
    )


def _export(args: argparse.Namespace) -> int:
    from whisper_lora.convert.export import export_model

    kinds = tuple(kind.strip() for kind in args.ggml_types.split(",") if kind.strip())
    paths = export_model(args.model_path, args.output_dir, args.format, args.quantization, kinds)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    if not args.no_parity:
        _export_parity(args.model_path, paths)
    return 0


def _export_parity(model_path: str, paths: dict) -> None:
    """Print how often each export reads the smoke clips as the merged transformers model does."""

    from whisper_lora.demo.run import SMOKE_SENTENCES, speak

    ggml = {kind: path for kind, path in paths.items() if kind.startswith("ggml")}
    if ggml and importlib.util.find_spec("pywhispercpp") is None:
        print("GGML parity check skipped: pywhispercpp is not installed (whisper-lora[ggml])", file=sys.stderr)
        ggml = {}
    if "ct2" not in paths and not ggml:
        return
    if shutil.which("espeak-ng") is None:
        print("parity check skipped: espeak-ng is not installed", file=sys.stderr)
        return
    reference = str(paths.get("hf", model_path))
    with tempfile.TemporaryDirectory() as folder:
        clips = [(str(speak(text, Path(folder) / f"{lang}.wav", voice)), lang) for lang, voice, text in SMOKE_SENTENCES]
        if "ct2" in paths:
            share = parity(reference, paths["ct2"], clips)
            print(f"parity: the transformers and CTranslate2 models agree on {share:.0%} of {len(clips)} clips")
        if ggml:
            read = functools.cache(greedy_reader(reference, "transformers"))  # one reading for every GGML file
        for kind, path in ggml.items():
            share = agreement(read, whispercpp_reader(path), clips)
            print(f"parity: the transformers model and whisper.cpp ({kind}) agree on {share:.0%} of {len(clips)} clips")


def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model_path", help="training output_dir (adapter), or any model name")
    parser.add_argument("--output_dir", required=True, help="new folder for the exported model(s)")
    parser.add_argument(
        "--format",
        default="both",
        choices=EXPORT_FORMATS,
        help="hf, ct2, both (hf/ and ct2/ subfolders), or ggml (whisper.cpp files)",
    )
    parser.add_argument("--quantization", default="int8", choices=QUANTIZATIONS, help="CTranslate2 weight type")
    parser.add_argument(
        "--ggml_types",
        default=",".join(GGML_TYPES),
        help=f"with --format ggml: the whisper.cpp files to write, comma-separated (default: {','.join(GGML_TYPES)})",
    )
    parser.add_argument("--no_parity", action="store_true", help="skip the transcript comparison of the two models")


COMMANDS = {
    "export": (_add_export, _export, "merge the adapter; save it for transformers, CTranslate2 or whisper.cpp"),
    "transcribe": (_add_transcribe, _transcribe, "transcribe files of any length (whisper_lora_inference.py)"),
    "stream": (
        _add_stream,
        _stream,
        "live transcription of a file played at real speed (or stdin PCM): committed text as it is decided",
    ),
    "serve": (_add_serve, _serve, "an OpenAI-compatible transcription API and a web page (needs whisper-lora[server])"),
    "evaluate": (
        _add_evaluate,
        _evaluate,
        "WER/CER of a model, or two side by side, on a test manifest, with a CSV report",
    ),
    "train": (None, _train, "fine-tune Whisper with LoRA on JSON/JSONL manifests (whisper_lora_finetune.py)"),
    "check-data": (_add_check_data, _check_data, "check manifests: every row's audio and text, with a report"),
    "prepare": (
        _add_prepare,
        _prepare,
        "write a manifest from Common Voice, AISHELL-1, LibriSpeech, Kaldi, audiofolder or a transcribed folder",
    ),
    "models": (_add_models, _models, "list the model names and the cache; convert embedded models ahead of time"),
    "demo": (
        _add_demo,
        _demo,
        "make an espeak-ng corpus, fine-tune the base model on it, and compare CER/WER before and after",
    ),
}


def _runtime() -> tuple[type, ...]:
    return (Runtime,)


def _decoding() -> tuple[type, ...]:
    return Runtime, TranscribeOptions


def _training() -> tuple[type, ...]:
    from whisper_lora.train.trainer import TrainConfig

    return (TrainConfig,)


def from_args(cls, args: argparse.Namespace):
    """The dataclass cls built from the parsed flags named after its fields."""
    return cls(**{spec.name: getattr(args, spec.name) for spec in dataclasses.fields(cls)})


def runtime(args: argparse.Namespace):
    """The records.Runtime (--model_path, --backend, --device, --compute_type) the command line asked for."""

    return from_args(Runtime, args)


# Commands whose flags are dataclasses' fields, each defined there once; the classes are imported only
# for the command that runs, so that transcribing on CTranslate2 never imports the training stack.
PARENTS = {"train": _training, "transcribe": _decoding, "evaluate": _decoding, "stream": _decoding, "serve": _runtime}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser with a subparser per entry of COMMANDS; only `command`'s gets its flags (all when None)."""
    parser = argparse.ArgumentParser(prog="whisper-lora", description="Fine-tune Whisper with LoRA and use the result.")
    parser.add_argument("--version", action="version", version=f"whisper-lora {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (add_arguments, run, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(run=run)
        if command not in (None, name):
            continue
        for cls in PARENTS.get(name, lambda: ())():
            flags.add_dataclass(sub, cls)
        if add_arguments is not None:
            add_arguments(sub)
    return parser


def _quiet_transformers() -> None:
    # Weight-loading bars and transformers' notes about its own internals are noise on our command line.
    # The variable reaches transformers when it is first imported; the hub's bars are switched off here.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    disable_progress_bars()
    if "transformers" in sys.modules:  # imported already (the train command's flags need it)
        from transformers.utils import logging as transformers_logging

        transformers_logging.set_verbosity_error()
        transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


class _StderrHandler(logging.StreamHandler):
    """Writes to sys.stderr as it is when a record comes, so that swapping sys.stderr (as tests do) is followed."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _log_to_stderr() -> None:
    # The library's notes (exports, forgetting warnings) go to stderr, so stdout holds only transcripts.
    package = logging.getLogger("whisper_lora")
    if not any(isinstance(handler, _StderrHandler) for handler in package.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        package.addHandler(handler)
        package.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; known bad input becomes one 'error:' line and exit status 2, never a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv and argv[0] in COMMANDS else ""  # without one, argparse only prints help or refuses
    args = build_parser(command).parse_args(argv)
    _quiet_transformers()
    _log_to_stderr()
    try:
        return args.run(args)
    except TrainingInterrupted as error:
        print(str(error), file=sys.stderr)
        return 130
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

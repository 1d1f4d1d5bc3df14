"""whisper-lora transcribe: files of any length, printed or written in any output format, resumable."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from whisper_lora.cli.common import add_batch_size, add_ray, from_args, ray_address, report_redecoded, runtime
from whisper_lora.core.errors import UserError
from whisper_lora.core.files import write_text_atomic
from whisper_lora.core.records import Runtime, TranscribeOptions
from whisper_lora.infer import writers
from whisper_lora.infer.file_jobs import Results, in_batches, read_audio_list, run_key, transcribe_many
from whisper_lora.infer.ray_jobs import check_on_ray, transcribe_on_ray
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.infer.writers import get_writer

HELP = "transcribe files of any length (whisper_lora_inference.py)"


def fields() -> tuple[type, ...]:
    """The dataclasses whose fields are this command's flags."""
    return Runtime, TranscribeOptions


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
    if bool(args.audio_path) == bool(args.audio_list):
        raise UserError("give exactly one of --audio_path or --audio_list")
    options = from_args(TranscribeOptions, args)
    paths = [args.audio_path] if args.audio_path else read_audio_list(args.audio_list)
    sidecar = Path(f"{args.output_file}.partial.jsonl") if args.output_file else None
    timestamps = options.return_timestamps or options.word_timestamps
    show = None if args.output_file else (lambda t: _print_transcript(t, timestamps))
    key = run_key(runtime(args), options)
    transcripts = transcribe_many(_results(args, paths, options), paths, sidecar, on_result=show, key=key)
    if sidecar is not None:  # there is one exactly when there is an --output_file; it stays, so a rerun is cheap
        _write_outputs(args, transcripts)
    report_redecoded(transcripts)
    failed = [t for t in transcripts if t.error]
    for transcript in failed:
        print(f"error: {transcript.path}: {transcript.error}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(transcripts)} files failed; the others were transcribed", file=sys.stderr)
    return 1 if failed else 0


def _results(args: argparse.Namespace, paths: list[str], options: TranscribeOptions) -> Results:
    """Where the transcripts come from: this process, batch_size files at a time, or Ray's actors with --ray."""
    if args.ray is not None:
        check_on_ray(runtime(args), options)
        address = ray_address(args)
        return lambda pending: transcribe_on_ray(
            pending, runtime(args), options, address, args.ray_actors, args.batch_size
        )
    transcriber = Transcriber.run(runtime(args), args.batch_size)
    transcriber.check(options)
    return in_batches(lambda batch: transcriber.files(batch, options), args.batch_size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.add_argument("--audio_path", default=None, help="one audio file")
    parser.add_argument(
        "--audio_list", default=None, help="a text file with one audio path per line ('#' comments allowed)"
    )
    parser.add_argument(
        "--output_file", default=None, help="where to write results (format from the suffix); default: print"
    )
    parser.add_argument("--output_format", default=None, choices=["json", "txt", "srt", "vtt", "tsv", "all"])
    add_batch_size(parser)
    add_ray(parser, "with --audio_list: transcribe")
    parser.add_argument(  # the spelling argparse's BooleanOptionalAction gave it, in earlier READMEs
        "--no-condition_on_previous_text",
        dest="condition_on_previous_text",
        action="store_false",
        help="the same as --no_condition_on_previous_text",
    )


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

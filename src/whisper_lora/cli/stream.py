"""whisper-lora stream: live transcription of a file at real speed, or of PCM on stdin."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from whisper_lora.audio.decode import decode_audio
from whisper_lora.cli.common import from_args, runtime
from whisper_lora.core.files import write_json_atomic
from whisper_lora.core.records import Runtime, TranscribeOptions
from whisper_lora.infer.stream import CommitPrinter, LiveTranscriber, join_words, pcm_chunks, play, play_chunks
from whisper_lora.infer.transcriber import Transcriber

HELP = "live transcription of a file played at real speed (or stdin PCM): committed text as it is decided"


def fields() -> tuple[type, ...]:
    """The dataclasses whose fields are this command's flags."""
    return Runtime, TranscribeOptions


def run(args: argparse.Namespace) -> int:
    """The command, run with its parsed flags; its exit status."""
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The command\'s own flags."""
    parser.epilog = (
        "Live, a decoding that repeats itself is redone once with no 3-token run allowed twice, then, if it still "
        "loops, at the next --temperature values; an unlikely one is not (too slow), so --logprob_threshold only "
        "marks silence, with --no_speech_threshold."
    )
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

"""The live engine's commit policy apart from the machine: streamed WER and latency with the clock at the audio fed.

Streams short_window.py's long files of recorded test prompts at speed 0: each step takes --chunk_seconds of new
audio however long its decoding took, so the word-end-to-commit latency is what the policy itself costs and repeats
from run to run. At real speed the decoding's own time, and any wait for the previous one, come on top: the table
gives the decoding time per step beside it. The model is the short-context adapter that short_window.py trains
(with short windows), or any --model_path.

    whisper_lora_env/bin/python benchmarks/stream_policy.py [--language en] [--chunks 1.0,0.5] [--files 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from results import write_result
from stream_latency import build_files, percentile  # benchmarks/ is on the path when a script in it runs

from whisper_lora.audio.decode import decode_audio
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.models import cache_root
from whisper_lora.core.records import Clip, Runtime, TranscribeOptions
from whisper_lora.infer.stream import LiveTranscriber, join_words, play
from whisper_lora.infer.transcriber import Transcriber


class TimedTranscriber:
    """A Transcriber whose every call is timed, and counted as a redecoding of a loop where it bans repeats or samples."""

    def __init__(self, transcriber: Transcriber):
        self.inner, self.seconds, self.redone = transcriber, [], 0
        self.backend, self.model_path = transcriber.backend, transcriber.model_path

    def clips(self, clips: list[Clip], options: TranscribeOptions):
        started = time.perf_counter()
        result = self.inner.clips(clips, options)
        self.seconds.append(time.perf_counter() - started)
        self.redone += options.temperature[0] > 0 or options.no_repeat_ngram_size > 0
        return result


def policy_row(transcriber: Transcriber, rows: list[dict], language: str, chunk: float) -> dict:
    """Streamed WER, audio-clock latency and decoding time of the engine at one step length."""
    timed = TimedTranscriber(transcriber)
    options = TranscribeOptions(language=language, short_window=True)
    streamed, latencies = [], []
    for row in rows:
        commits = play(LiveTranscriber(timed, options), decode_audio(row["audio_path"]), speed=0, chunk_seconds=chunk)
        streamed.append(join_words(c.word for c in commits))
        latencies += [c.latency for c in commits]
    return {
        "wer": error_rate([row["text"] for row in rows], streamed, "wer", language),
        "latency_p50": percentile(latencies, 0.5),
        "latency_p95": percentile(latencies, 0.95),
        "decoding_p50": percentile(timed.seconds, 0.5),
        "decoding_p95": percentile(timed.seconds, 0.95),
        "decodings": len(timed.seconds),
        "redone": timed.redone,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=str(cache_root() / "benchmarks" / "short_window"))
    parser.add_argument("--language", default="en")
    parser.add_argument("--model_path", default=None, help="default: short_window.py's adapter for the language")
    parser.add_argument("--chunks", default="1.0,0.5", help="step lengths to try, in seconds of new audio")
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=60.0, help="speech per long file")
    args = parser.parse_args()
    workdir = Path(args.workdir)
    model = args.model_path or str(workdir / args.language / "adapter")
    rows = build_files(workdir / "long", args.language, args.files, args.seconds)[: args.files]
    transcriber = Transcriber.run(Runtime(model_path=model), batch_size=1)
    whole = TranscribeOptions(language=args.language)
    offline = [transcriber.clips([Clip("offline", decode_audio(r["audio_path"]))], whole)[0].text for r in rows]
    offline_wer = error_rate([r["text"] for r in rows], offline, "wer", args.language)
    table = []
    for chunk in [float(c) for c in args.chunks.split(",")]:
        row = policy_row(transcriber, rows, args.language, chunk)
        print(f"step {chunk:g} s: {row}")
        table.append(
            [
                f"{chunk:g} s",
                f"{row['wer']:.1%}",
                f"{offline_wer:.1%}",
                f"{row['latency_p50']:.2f} s",
                f"{row['latency_p95']:.2f} s",
                f"{row['decoding_p50']:.2f} s",
                f"{row['decoding_p95']:.2f} s",
                f"{row['redone']} of {row['decodings']}",
            ]
        )
    columns = ["step", "WER streamed", "WER offline", "latency p50", "latency p95", "decoding p50", "decoding p95"]
    write_result(
        f"stream_policy-{args.language}",
        {"title": "The commit policy on the audio clock", "columns": [*columns, "redecoded"], "rows": table},
        f"{Path(model).name}, {args.language}, short windows; {len(rows)} long files of held-out recorded prompts, "
        "streamed at speed 0 (latency on the audio clock: at real speed the decoding time comes on top)",
    )


if __name__ == "__main__":
    main()

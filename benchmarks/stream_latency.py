"""Live transcription on this machine: word-end-to-commit latency, streamed against offline WER, live sessions, memory.

Long files are recorded test prompts (Debian's asterisk-core-sounds, `whisper_lora.data.realspeech`) laid end to end with
0.3 to 1.5 s pauses, as benchmarks/timestamps.py builds them. Each is transcribed offline, then streamed at real
speed through `whisper_lora.infer.stream` (what `whisper-lora stream` runs), on the same model and compute type. Then
N clients stream a file at once into `whisper-lora serve`'s /v1/realtime, for each N asked for. Last, one session
runs as fast as it decodes over a file looped to --memory_minutes, and its RSS is read after 1 minute and at the end.

    whisper_lora_env/bin/python benchmarks/stream_latency.py [--language en] [--sessions 1,2,3] [--memory_minutes 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from results import write_result
from timestamps import long_files  # benchmarks/ is on the path when a script in it runs

from whisper_lora.audio.decode import SAMPLE_RATE, decode_audio
from whisper_lora.audio.encode import pcm16
from whisper_lora.core.memory import peak_rss_mb, rss_mb  # the RSS that serve logs per loaded model
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.models import cache_root
from whisper_lora.core.records import Clip, Runtime, TranscribeOptions
from whisper_lora.data.realspeech import prompts
from whisper_lora.infer.stream import LiveTranscriber, join_words, play
from whisper_lora.infer.transcriber import Transcriber


def build_files(folder: Path, language: str, count: int, seconds: float) -> list[dict]:
    """Long files of the language's recorded test prompts, about `seconds` of speech each."""
    folder.mkdir(parents=True, exist_ok=True)
    chosen = [p for p in prompts(language) if p.split == "test"]
    random.Random(0).shuffle(chosen)
    rows = long_files(folder, chosen, seconds, random.Random(1), f"{language}_long")[:count]
    for row in rows:
        row["audio_path"] = str(folder / row["audio_path"])
    return rows


def percentile(values: list[float], share: float) -> float:
    return float(np.percentile(values, share * 100)) if values else float("nan")


def offline_and_streamed(
    transcriber: Transcriber, rows: list[dict], language: str, speed: float, short_window: bool = False
) -> dict:
    """Offline WER (30 s windows), streamed WER and each committed word's latency, on the same files and model."""
    options = TranscribeOptions(language=language)
    references, offline, streamed, latencies = [], [], [], []
    for row in rows:
        samples = decode_audio(row["audio_path"])
        references.append(row["text"])
        offline.append(transcriber.clips([Clip("offline", samples)], options)[0].text)
        live = LiveTranscriber(transcriber, replace(options, short_window=short_window))
        commits = play(live, samples, speed=speed, chunk_seconds=1.0)
        streamed.append(join_words(c.word for c in commits))
        latencies += [c.latency for c in commits]
        print(f"{Path(row['audio_path']).name}: {len(samples) / SAMPLE_RATE:.0f} s, {len(commits)} words committed")
    return {
        "offline_wer": error_rate(references, offline, "wer", language),
        "streamed_wer": error_rate(references, streamed, "wer", language),
        "latency_p50": percentile(latencies, 0.5),
        "latency_p95": percentile(latencies, 0.95),
        "words": len(latencies),
    }


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(model: str | None, compute_type: str | None, max_streams: int) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    command = [
        sys.executable,
        "-m",
        "whisper_lora.cli.main",
        "serve",
        "--port",
        str(port),
        "--max_streams",
        str(max_streams),
    ]
    command += ["--workers", "2"] + (["--model_path", model] if model else [])
    command += ["--compute_type", compute_type] if compute_type else []
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"http://{url}/health").json()["status"] == "ready":
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.terminate()
    raise SystemExit("the server did not become ready in 120 s")


async def live_client(url: str, samples: np.ndarray, language: str) -> list[float]:
    """Stream samples at real speed over /v1/realtime in 100 ms messages; each delta's latency past its last word."""
    import websockets

    latencies: list[float] = []
    async with websockets.connect(f"ws://{url}/v1/realtime", max_size=None) as ws:
        await ws.recv()
        session = {"input_audio_format": "pcm16", "input_audio_sample_rate": 16000, "turn_detection": None}
        session["input_audio_transcription"] = {"language": language}
        await ws.send(json.dumps({"type": "session.update", "session": session}))
        started = time.monotonic()

        async def send():
            piece = SAMPLE_RATE // 10
            for first in range(0, len(samples), piece):
                await asyncio.sleep(max(0.0, first / SAMPLE_RATE - (time.monotonic() - started)))
                pcm = pcm16(samples[first : first + piece]).tobytes()
                await ws.send(
                    json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()})
                )
            await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))

        sender = asyncio.create_task(send())
        async for message in ws:
            event = json.loads(message)
            if event["type"] == "conversation.item.input_audio_transcription.delta":
                latencies.append(time.monotonic() - started - event["audio_end_ms"] / 1000)
            elif event["type"] in ("conversation.item.input_audio_transcription.completed", "error"):
                break
        await sender
    return latencies


def concurrency(url: str, samples: np.ndarray, language: str, sessions: int) -> dict:
    """N clients at once, each streaming the same file at real speed."""

    async def together():
        return await asyncio.gather(*(live_client(url, samples, language) for _ in range(sessions)))

    latencies = [value for each in asyncio.run(together()) for value in each]
    return {"sessions": sessions, "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)}


def memory(transcriber: Transcriber, samples: np.ndarray, language: str, minutes: float) -> dict:
    """RSS after one minute of a session and after `minutes`, the file looped, decoded as fast as it goes."""
    live = LiveTranscriber(transcriber, TranscribeOptions(language=language))
    piece, fed, after_one = 3 * SAMPLE_RATE, 0, None
    started = time.monotonic()
    while fed < minutes * 60 * SAMPLE_RATE:
        start = fed % len(samples)
        live.feed(samples[start : start + piece])
        fed += min(piece, len(samples) - start)
        live.step()
        if after_one is None and fed >= 60 * SAMPLE_RATE:
            after_one = rss_mb()
    live.finish()
    return {"after_1_min": after_one, "at_end": rss_mb(), "minutes": minutes, "wall_s": time.monotonic() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", default=str(cache_root() / "benchmarks" / "stream"), help="long files go here")
    parser.add_argument("--model_path", default=None, help="model or training folder (default: the embedded base)")
    parser.add_argument("--compute_type", default=None, help="CTranslate2 weight type (default: int8 on CPU)")
    parser.add_argument("--language", default="en")
    parser.add_argument("--files", type=int, default=3, help="long files streamed at real speed (0: skip)")
    parser.add_argument("--seconds", type=float, default=60.0, help="speech per long file")
    parser.add_argument("--sessions", default="1,2,3", help="live sessions at once to try over the server")
    parser.add_argument("--memory_minutes", type=float, default=30.0, help="length of the memory run (0: skip)")
    parser.add_argument("--result", default="stream_latency", help="result file name in benchmarks/results")
    args = parser.parse_args()
    rows = build_files(Path(args.workdir), args.language, max(1, args.files), args.seconds)
    transcriber = Transcriber.run(Runtime(model_path=args.model_path, compute_type=args.compute_type), batch_size=1)
    results: dict = {"single": None, "sessions": [], "memory": None}
    if args.files > 0:
        single = results["single"] = offline_and_streamed(transcriber, rows[: args.files], args.language, speed=1.0)
        print(
            f"\none stream, real speed, {single['words']} words: latency p50 {single['latency_p50']:.2f} s, "
            f"p95 {single['latency_p95']:.2f} s; WER offline {single['offline_wer']:.1%}, streamed {single['streamed_wer']:.1%}"
        )
    samples = decode_audio(rows[0]["audio_path"])
    counts = [int(n) for n in args.sessions.split(",") if n]
    if counts:
        results["sessions"] = sessions_over_server(args, samples, counts)
    if args.memory_minutes > 0:
        found = memory(transcriber, samples, args.language, args.memory_minutes)
        results["memory"] = found
        print(
            f"memory: RSS {found['after_1_min']:.0f} MB after 1 minute of audio, {found['at_end']:.0f} MB after "
            f"{found['minutes']:g} ({found['wall_s']:.0f} s to decode); peak {peak_rss_mb():.0f} MB"
        )
    write_result(args.result, summary(results), f"model {args.model_path or 'base'}, {args.language}")


def sessions_over_server(args, samples: np.ndarray, counts: list[int]) -> list[dict]:
    """Delta latency of each count of live sessions at once over a server's /v1/realtime."""
    server, url = start_server(args.model_path, args.compute_type, max_streams=16)
    found = []
    try:
        for count in counts:
            found.append(concurrency(url, samples, args.language, count))
            print(
                f"{count} live sessions over /v1/realtime: delta latency p50 {found[-1]['p50']:.2f} s, "
                f"p95 {found[-1]['p95']:.2f} s"
            )
    finally:
        server.terminate()
        server.wait()
    return found


def summary(results: dict) -> dict:
    """The latency table: one stream with its error rates, then each count of realtime sessions, then memory."""
    rows = []
    if results["single"]:
        single = results["single"]
        rows.append(
            [f"one stream, {single['words']} words", f"{single['latency_p50']:.2f} s", f"{single['latency_p95']:.2f} s"]
            + [f"{single['streamed_wer']:.1%}", f"{single['offline_wer']:.1%}"]
        )
    for found in results["sessions"]:
        rows.append(
            [f"{found['sessions']} realtime sessions", f"{found['p50']:.2f} s", f"{found['p95']:.2f} s", None, None]
        )
    if results["memory"]:
        found = results["memory"]
        rows.append(
            [
                f"RSS after 1 and {found['minutes']:g} minutes",
                f"{found['after_1_min']:.0f} MB",
                f"{found['at_end']:.0f} MB",
                None,
                None,
            ]
        )
    columns = ["what", "latency p50", "latency p95", "WER streamed", "WER offline"]
    return {"title": "Live transcription, a word's end to its committed text", "columns": columns, "rows": rows}


if __name__ == "__main__":
    main()

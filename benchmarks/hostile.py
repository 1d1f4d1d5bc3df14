"""Hostile load on `whisper-lora serve` on 127.0.0.1 with the embedded model: do normal clients keep being served?

Normal clients post a recorded English prompt of several sentences, and the WER of what they get back is
reported beside their latency. First normal clients alone (the baseline), then the same clients while others attack for a fixed time:
slow uploaders trickling bytes, realtime sessions sending malformed events, a decompression bomb (hours
of Opus silence in a few hundred KB), and undecodable files. Reports, for each phase, the normal
clients' success rate and p95 latency, what each attack got back, how many 5xx or crashes there were
(the goal is none), and the server's peak RSS.

    whisper_lora_env/bin/python benchmarks/hostile.py [--seconds 40] [--clients 2]
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import av
import httpx
import numpy as np
import websockets.sync.client
from results import write_result
from serve_load import KEY, load, rss_mb, start_server

from whisper_lora.audio.decode import decode_audio
from whisper_lora.audio.noise import write_wav
from whisper_lora.core.metrics import error_rate
from whisper_lora.data.realspeech import prompts

SLOW_UPLOADERS = 9  # more than 1 worker + 8 queued: before the upload deadline, these took every place
GARBAGE = [
    "not json",
    json.dumps({"type": "session.update", "session": {"input_audio_transcription": {"language": 5}}}),
    json.dumps({"type": "session.update", "session": {"audio": {"input": "x"}}}),
    json.dumps({"type": "session.update", "session": {"turn_detection": {"threshold": None}}}),
    json.dumps({"type": "input_audio_buffer.append", "audio": "@@@ not base64"}),
    json.dumps({"type": "no.such.event"}),
    json.dumps([1, 2, 3]),
    json.dumps({"type": "input_audio_buffer.commit"}),
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bomb(folder: Path, hours: float = 2.0) -> bytes:
    """Hours of silence as Opus: a few hundred KB that decode to hundreds of MB of samples."""
    path = folder / "bomb.ogg"
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000, layout="mono")
        silence = av.AudioFrame.from_ndarray(np.zeros((1, 48000 * 60), np.float32), format="flt", layout="mono")
        silence.sample_rate = 48000
        for minute in range(int(hours * 60)):
            silence.pts = minute * 48000 * 60
            for packet in stream.encode(silence):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path.read_bytes()


def slow_upload(port: int, stop: threading.Event, got: Counter) -> None:
    """Declare a large upload, then trickle it; count what the server answers each time."""
    head = (
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 200000\r\n\r\n"
    ).encode()
    while not stop.is_set():
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.settimeout(1)
            connection.sendall(head)
            answer = b""
            while not stop.is_set() and not answer:
                try:
                    connection.sendall(b"x" * 100)
                    answer = connection.recv(64)
                except TimeoutError:
                    continue
                except OSError:
                    break
            status = answer.split(b" ")[1].decode() if answer.startswith(b"HTTP/") else "closed"
            got[f"slow upload: {status}"] += 1


def garbage_session(port: int, stop: threading.Event, got: Counter) -> None:
    """Realtime sessions that send only malformed events; count error events and how sessions end."""
    headers = {"Authorization": f"Bearer {KEY}"}
    while not stop.is_set():
        try:
            with websockets.sync.client.connect(f"ws://127.0.0.1:{port}/v1/realtime", additional_headers=headers) as ws:
                first = json.loads(ws.recv(timeout=30))
                got[f"realtime: {first['type']}"] += 1
                for message in GARBAGE * 5:
                    ws.send(message)
                    event = json.loads(ws.recv(timeout=30))
                    got[f"realtime reply: {event['type']}"] += 1
        except Exception as error:  # a closed or refused session is counted, not fatal
            got[f"realtime ended: {type(error).__name__}"] += 1
            time.sleep(0.5)


def posts(url: str, stop: threading.Event, got: Counter, files: dict[str, bytes], pause: float) -> None:
    """Post each bad file in turn until stopped; count the statuses."""
    with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as http:
        while not stop.is_set():
            for name, data in files.items():
                status = http.post(f"{url}/v1/audio/transcriptions", files={"file": (name, data)}).status_code
                got[f"{name}: {status}"] += 1
            stop.wait(pause)


def sample_rss(server, stop: threading.Event, peaks: list[float]) -> None:
    while not stop.is_set():
        peaks.append(rss_mb(server))
        stop.wait(0.5)


def phase(url, port, server, clip, clients, seconds, attack: dict | None) -> tuple[list, dict, Counter, float, list]:
    """Normal clients for `seconds`, with the attackers of `attack` running beside them when given; the last item
    holds the text of every normal request served."""
    stop, got, peaks, texts = threading.Event(), Counter(), [], []
    workers = [threading.Thread(target=sample_rss, args=(server, stop, peaks))]
    if attack:
        workers += [threading.Thread(target=slow_upload, args=(port, stop, got)) for _ in range(SLOW_UPLOADERS)]
        workers += [threading.Thread(target=garbage_session, args=(port, stop, got)) for _ in range(2)]
        workers += [threading.Thread(target=posts, args=(url, stop, got, attack, 5.0))]
    for worker in workers:
        worker.start()
    latencies, statuses = load(url, clip, clients, seconds, texts)
    stop.set()
    for worker in workers:
        worker.join(60)
    return latencies, statuses, got, max(peaks), texts


def row(name: str, run: tuple, reference: str) -> list:
    """One phase's line: requests, share served, p95, 5xx or dropped, WER of what was served, peak RSS."""
    latencies, statuses, _, peak, texts = run
    served = sum(statuses.values())
    p95 = statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else float("nan")
    errors = sum(n for status, n in statuses.items() if status >= 500 and status != 503 or status < 0)
    wer = error_rate([reference] * len(texts), texts, "wer", "en") if texts else float("nan")
    share = f"{statuses.get(200, 0) / max(served, 1):.0%}"
    return [name, served, share, round(p95, 2), errors, f"{100 * wer:.1f}%", round(peak)]


def real_clip(folder: Path) -> tuple[bytes, str]:
    """A recorded English prompt of several sentences as 16 kHz WAV bytes (it is raw G.722), and its transcript."""
    prompt = next(p for p in prompts("en") if p.split == "test" and p.sentences > 1)
    return Path(write_wav(folder / "clip.wav", decode_audio(prompt.audio_path))).read_bytes(), prompt.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=40.0, help="length of each phase")
    parser.add_argument("--clients", type=int, default=2, help="normal clients")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    flags = ["--model_path", "base", "--upload_timeout_s", "5", "--max_audio_s", "600"]
    with tempfile.TemporaryDirectory() as folder:
        clip, reference = real_clip(Path(folder))
        bad = {"bomb.ogg": bomb(Path(folder)), "noise.wav": np.random.default_rng(0).bytes(8000), "empty.wav": b""}
        server = start_server(port, flags)
        try:
            load(url, clip, 1, 5)  # warm-up
            quiet = phase(url, port, server, clip, args.clients, args.seconds, None)
            attacked = phase(url, port, server, clip, args.clients, args.seconds, bad)
            alive = server.poll() is None and httpx.get(f"{url}/health").json()["status"] == "ready"
        finally:
            server.terminate()
            server.wait(30)
    if not quiet[4]:
        raise SystemExit(f"the normal clients were never served, even alone: {quiet[1]}")
    rows = [row("normal clients alone", quiet, reference), row("normal clients under attack", attacked, reference)]
    got = attacked[2]
    table = {
        "title": f"Hostile load: {args.clients} normal clients beside {SLOW_UPLOADERS} slow uploaders, 2 garbage realtime "
        f"sessions and bad files, {args.seconds:g} s a phase, embedded base, 1 worker",
        "columns": ["phase", "normal requests", "served (200)", "p95 s", "5xx or dropped", "WER", "peak RSS MB"],
        "rows": rows,
    }
    notes = "Attacks and what they got: " + "; ".join(f"{k} ×{n}" for k, n in sorted(got.items())) + "."
    notes += f" Server alive and ready afterwards: {'yes' if alive else 'NO'}."
    for line in rows:
        print(line)
    print(notes)
    write_result("hostile", table, notes)


if __name__ == "__main__":
    main()

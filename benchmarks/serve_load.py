"""Load and abuse run against `whisper-lora serve` on 127.0.0.1 with the embedded model.

Starts the server, warms it up, then runs N concurrent clients posting a spoken clip for a fixed time
and prints requests served, errors (503s shed on purpose are counted apart), p50/p95 latency, and the
server's RSS before and after. Then sends oversize, garbage, wrong-content-type, missing-field and
bad-key requests, prints the status each got, and checks that the server is still healthy.

    whisper_lora_env/bin/python benchmarks/serve_load.py [--clients 8] [--seconds 60]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from results import write_result

from whisper_lora.demo.run import speak

KEY = "load-test-key"


def start_server(port: int, extra: list[str]) -> subprocess.Popen:
    """The server as a child process, once /health says ready."""
    command = [sys.executable, "-m", "whisper_lora.cli.main", "serve", "--port", str(port), "--api_key", KEY, *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").json()["status"] == "ready":
                return process
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the server did not become ready in 2 minutes")


def rss_mb(process: subprocess.Popen) -> float:
    """Resident memory of the server and its children, in MB."""
    parent = psutil.Process(process.pid)
    return sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)]) / 2**20


def load(
    url: str, clip: bytes, clients: int, seconds: float, texts: list[str] | None = None
) -> tuple[list[float], dict[int, int]]:
    """Clients post the clip in a loop until the time is up; latencies of 200s, and a count per status (and the
    text of each 200 in texts, when given)."""
    latencies, statuses, lock = [], {}, threading.Lock()
    deadline = time.monotonic() + seconds

    def client():
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {KEY}"}) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = http.post(
                        f"{url}/v1/audio/transcriptions",
                        files={"file": ("a.wav", clip, "audio/wav")},
                        data={"model": "whisper-1", "language": "en"},
                    )
                    status = response.status_code
                except httpx.TransportError:
                    status = -1
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                        if texts is not None:
                            texts.append(response.json()["text"])
                if status == 503:
                    time.sleep(1)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses


def abuse(url: str, port: int, clip: bytes) -> list[tuple[str, int, int]]:
    """(what, expected status, got status) for each kind of bad request."""
    auth = {"Authorization": f"Bearer {KEY}"}
    post = f"{url}/v1/audio/transcriptions"
    checks = [
        (
            "oversize upload (26 MB)",
            413,
            lambda: httpx.post(post, headers=auth, files={"file": ("a.wav", b"\0" * 26 * 2**20)}),
        ),
        ("garbage bytes", 400, lambda: httpx.post(post, headers=auth, files={"file": ("a.wav", b"\x13\x37" * 5000)})),
        ("wrong content type (JSON)", 415, lambda: httpx.post(post, headers=auth, json={"file": "a.wav"})),
        ("missing file field", 400, lambda: httpx.post(post, headers=auth, files={"model": (None, "whisper-1")})),
        (
            "bad API key",
            401,
            lambda: httpx.post(post, headers={"Authorization": "Bearer nope"}, files={"file": ("a.wav", clip)}),
        ),
        ("no API key", 401, lambda: httpx.get(f"{url}/v1/models")),
        (
            "unknown language",
            400,
            lambda: httpx.post(post, headers=auth, files={"file": ("a.wav", clip)}, data={"language": "xx"}),
        ),
    ]
    results = [(what, expected, request().status_code) for what, expected, request in checks]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:  # a declared 1 GB body, never sent
        connection.sendall(
            f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            "Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 1073741824\r\n\r\n".encode()
        )
        results.append(("declared 1 GB, body never sent", 413, int(connection.recv(64).split()[1])))
    return results


def main() -> None:
    """Run the load and abuse phases and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--max_queue", type=int, default=8, help="the server's --max_queue")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as folder:
        clip = speak("Glue the sheet to the dark blue background.", Path(folder) / "clip.wav", "en-us").read_bytes()
    server = start_server(port, ["--max_queue", str(args.max_queue)])
    try:
        for _ in range(2):  # warm-up: first-call allocations are not growth
            httpx.post(
                f"{url}/v1/audio/transcriptions",
                headers={"Authorization": f"Bearer {KEY}"},
                files={"file": ("a.wav", clip)},
                timeout=120,
            )
        before = rss_mb(server)
        latencies, statuses = load(url, clip, args.clients, args.seconds)
        after = rss_mb(server)
        served, shed = statuses.get(200, 0), statuses.get(503, 0)
        errors = sum(n for status, n in statuses.items() if status not in (200, 503))
        p50, p95 = statistics.median(latencies), statistics.quantiles(latencies, n=20)[-1]
        print(f"load: {args.clients} clients for {args.seconds:g} s, server --workers 1 --max_queue {args.max_queue}")
        print(f"  served {served} ({served / args.seconds:.2f}/s), errors {errors}, shed with 503 {shed}")
        print(f"  latency p50 {p50:.2f} s, p95 {p95:.2f} s")
        print(f"  server RSS before {before:.0f} MB, after {after:.0f} MB ({after - before:+.0f} MB)")
        print("abuse:")
        checks = abuse(url, port, clip)
        for what, expected, got in checks:
            print(f"  {what:<34} expected {expected}, got {got}  {'ok' if got == expected else 'WRONG'}")
        health = httpx.get(f"{url}/health").json()["status"]
        print(f"  health afterwards: {health}; server RSS {rss_mb(server):.0f} MB")
        wrong = [what for what, expected, got in checks if got != expected]
        row = [f"--workers 1 --max_queue {args.max_queue}", args.clients, served, round(served / args.seconds, 2)]
        row += [errors, shed, f"{p50:.2f} s", f"{p95:.2f} s", f"{before:.0f} MB", f"{after:.0f} MB"]
        columns = ["server", "clients", "served", "per s", "errors", "shed with 503", "p50", "p95", "RSS before"]
        notes = f"{args.seconds:g} s of load; abuse checks: {len(checks) - len(wrong)} of {len(checks)} answered as expected"
        notes += f" (wrong: {', '.join(wrong)})" if wrong else ""
        name = "serve_load" if args.max_queue == 8 else f"serve_load-queue{args.max_queue}"
        table = {"title": "Server under load, a 2.7 s English clip", "columns": [*columns, "RSS after"], "rows": [row]}
        write_result(name, table, notes)
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()

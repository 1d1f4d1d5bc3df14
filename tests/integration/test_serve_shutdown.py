"""SIGTERM stops the server within its graceful-shutdown deadline, even with a transcription still running."""

import contextlib
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from helpers import free_port, sine, write_audio

SERVER = """
import sys, time
from types import SimpleNamespace
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.serve.app import ServeSettings, create_app, serve

class Stuck(Transcriber):
    backend, engine = "ct2", SimpleNamespace(multilingual=True)
    def __init__(self):
        pass
    def clips(self, clips, options):
        time.sleep(600)  # a decode that will not finish in time

settings = ServeSettings(graceful_shutdown_s=2)
serve(settings, "127.0.0.1", int(sys.argv[1]), app=create_app(settings, Stuck()))
"""


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_server_within_its_deadline_whatever_runs(tmp_path, stop):
    port, clip = free_port(), write_audio(tmp_path / "a.wav", sine(1.0, 16000), 16000)
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health").json()["status"] == "ready":
                    break
            except httpx.TransportError:
                time.sleep(0.2)

        def request():
            with contextlib.suppress(httpx.TransportError):  # the server goes away, as it should
                httpx.post(f"{url}/v1/audio/transcriptions", files={"file": clip.open("rb")}, timeout=60)

        threading.Thread(target=request, daemon=True).start()
        while httpx.get(f"{url}/health").json().get("pending", 0) < 1:
            time.sleep(0.1)
        time.sleep(0.5)  # the decode has started
        stopped = time.monotonic()
        process.send_signal(stop)
        _, errors = process.communicate(timeout=30)
        seconds = time.monotonic() - stopped
    finally:
        process.kill()
    assert process.returncode in (0, -stop) and seconds < 8, (seconds, errors[-2000:])
    assert "stopping with 1 transcriptions unfinished" in errors

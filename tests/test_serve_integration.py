"""The real server with the embedded whisper-base: the official openai client, raw sockets, and headless Chromium."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import espeak, have_espeak, real_speech, write_audio

pytest.importorskip("fastapi", reason="the server extra is not installed")
openai = pytest.importorskip("openai", reason="the dev extra (openai) is not installed")
import httpx  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)"),
]
KEY = "test-key"
SENTENCE = "Glue the sheet to the dark blue background."


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = [
        sys.executable,
        "-m",
        "whisper_lora.cli",
        "serve",
        "--port",
        str(port),
        "--api_key",
        KEY,
        "--max_upload_mb",
        "1",
    ]
    with open(log, "w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{url}/health").json()["status"] == "ready":
                break
        except httpx.TransportError:
            pass
        assert process.poll() is None, log.read_text()
        time.sleep(0.2)
    yield url, port
    process.terminate()
    process.wait(30)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return espeak(SENTENCE, tmp_path_factory.mktemp("speech") / "glue.wav", "en-us", 150)


@pytest.fixture(scope="module")
def multi_sentence(tmp_path_factory):
    """A recorded prompt of several sentences, 8 to 20 s long, as a WAV file, and its transcript."""
    from whisper_lora.audio import decode_audio

    prompt = next(p for p in real_speech("en") if p.sentences >= 3 and 8 <= p.seconds <= 20)
    path = tmp_path_factory.mktemp("real") / "prompt.wav"
    return write_audio(path, decode_audio(prompt.audio_path)[None], 16000), prompt.text


def client(url: str, key: str = KEY):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def test_openai_client_transcribes_with_words_and_segments(server, clip):
    with open(clip, "rb") as audio:
        result = client(server[0]).audio.transcriptions.create(
            model="whisper-1",
            file=audio,
            language="en",
            response_format="verbose_json",
            timestamp_granularities=["word", "segment"],
        )
    assert "dark blue background" in result.text.lower() and result.language == "english"
    starts = [w.start for w in result.words]
    assert len(result.words) >= 6 and starts == sorted(starts) and result.words[-1].end <= result.duration + 0.5
    assert result.segments[0].start == 0.0


def test_a_real_multi_sentence_recording_comes_back_whole(server, multi_sentence):
    from whisper_lora.metrics import error_rate

    path, reference = multi_sentence
    with open(path, "rb") as audio:
        result = client(server[0]).audio.transcriptions.create(model="whisper-1", file=audio, language="en")
    assert error_rate([reference], [result.text], "wer", "en") < 0.1, (reference, result.text)


def test_openai_client_text_srt_translation_and_models(server, clip):
    api = client(server[0])
    with open(clip, "rb") as audio:
        text = api.audio.transcriptions.create(model="whisper-1", file=audio, response_format="text", language="en")
    assert "background" in text.lower()
    with open(clip, "rb") as audio:
        srt = api.audio.transcriptions.create(model="whisper-1", file=audio, response_format="srt", language="en")
    assert srt.startswith("1\n00:00:00,000 --> ")
    with open(clip, "rb") as audio:
        assert "background" in api.audio.translations.create(model="whisper-1", file=audio).text.lower()
    assert [m.id for m in api.models.list()] == ["base"]


def test_openai_client_errors(server, clip, tmp_path):
    with open(clip, "rb") as audio, pytest.raises(openai.AuthenticationError):
        client(server[0], "wrong").audio.transcriptions.create(model="whisper-1", file=audio)
    garbage = tmp_path / "noise.mp3"
    garbage.write_bytes(b"not audio at all" * 100)
    with open(garbage, "rb") as audio, pytest.raises(openai.BadRequestError, match="not usable audio"):
        client(server[0]).audio.transcriptions.create(model="whisper-1", file=audio)


def upload_headers(connection: socket.socket, length_header: str) -> None:
    """Send only the head of a multipart upload request; the test decides what body follows."""
    connection.sendall(
        f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: multipart/form-data; boundary=b\r\n{length_header}\r\n\r\n".encode()
    )


def read_reply(connection: socket.socket) -> str:
    """The server's whole reply: headers, then as many body bytes as its Content-Length says."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
        piece = connection.recv(4096)
        if not piece:
            break
        data += piece
    return data.decode()


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_declared_oversize_is_refused_before_the_body_is_sent(server):
    with socket.create_connection(("127.0.0.1", server[1]), timeout=10) as connection:
        upload_headers(connection, "Content-Length: 104857600")
        reply = read_reply(connection)  # not one byte of the 100 MB body was sent
    assert reply.startswith("HTTP/1.1 413") and "1 MB limit" in reply


def test_streamed_oversize_is_cut_off(server):
    with socket.create_connection(("127.0.0.1", server[1]), timeout=10) as connection:
        upload_headers(connection, "Transfer-Encoding: chunked")
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
        connection.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        chunk = b"\x00" * 65536
        sent = 0
        try:
            while sent < 50 * 2**20:
                connection.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                connection.settimeout(0.001)
                try:
                    if connection.recv(1, socket.MSG_PEEK):
                        break
                except (TimeoutError, BlockingIOError):
                    pass
                connection.settimeout(10)
        except (BrokenPipeError, ConnectionResetError):
            pass
        connection.settimeout(10)
        reply = read_reply(connection)
    assert reply.startswith("HTTP/1.1 413") and sent < 10 * 2**20, (reply[:100], sent)
    assert httpx.get(f"{server[0]}/health").json()["status"] == "ready"


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_web_page_in_headless_chromium(server, clip, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra (playwright) is not installed")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(server[0])
            page.wait_for_selector("#model option", state="attached")
            assert page.locator("#model option").all_text_contents() == ["base"]  # the picker lists /health's models
            page.fill("#key", KEY)
            page.select_option("#language", "en")
            page.set_input_files("#file", str(clip))
            page.click("#transcribe")
            page.wait_for_function(
                "document.querySelector('#segments').textContent.includes('background')", timeout=120_000
            )
            stamp = page.locator("#segments a").first
            assert stamp.text_content() == "[00:00:00.000]"
            with page.expect_download() as download:
                page.click("#downloads button[data-format=srt]")
            saved = Path(download.value.path()).read_text()
            assert download.value.suggested_filename == "glue.srt"
        finally:
            browser.close()
    assert saved.startswith("1\n00:00:00,000 --> ") and "background" in saved.lower()


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_web_page_records_from_the_microphone(server, clip):
    playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra (playwright) is not installed")
    fake_microphone = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip}",
    ]
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=["--no-sandbox", *fake_microphone])
        try:
            page = browser.new_page()
            page.goto(server[0])
            page.fill("#key", KEY)
            page.select_option("#language", "en")
            page.click("#record")
            page.wait_for_timeout(4000)  # the clip is about 3 s; the fake microphone plays it from the start
            page.click("#record")
            page.wait_for_function("document.querySelector('#status').textContent.includes('recording.webm ready')")
            page.click("#transcribe")
            page.wait_for_function("document.querySelector('#segments').textContent.length > 0", timeout=120_000)
            text = page.text_content("#segments")
        finally:
            browser.close()
    assert "blue" in text.lower() or "background" in text.lower(), text

"""The real server with the embedded whisper-base: the official openai client, raw sockets, and headless Chromium."""

import base64
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import espeak, have_espeak, real_speech, realtime_session, serving, write_audio

pytest.importorskip("fastapi", reason="the server extra is not installed")
openai = pytest.importorskip("openai", reason="the dev extra (openai) is not installed")
import httpx  # noqa: E402

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not have_espeak(), reason="espeak-ng is not installed (apt-get install espeak-ng)"),
]
KEY = "test-key"
SENTENCE = "Glue the sheet to the dark blue background."


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serving(["--api_key", KEY, "--max_upload_mb", "1"], log) as address:
        yield address


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return espeak(SENTENCE, tmp_path_factory.mktemp("speech") / "glue.wav", "en-us", 150)


@pytest.fixture(scope="module")
def multi_sentence(tmp_path_factory):
    """A recorded prompt of several sentences, 8 to 20 s long, as a WAV file, and its transcript."""
    from whisper_lora.audio.decode import decode_audio

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
    from whisper_lora.core.metrics import error_rate

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


def fake_microphone(audio) -> list[str]:
    """Chromium flags that grant the microphone and feed it the audio file (with %noloop: once)."""
    return [
        "--no-sandbox",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={audio}",
    ]


def english_page(browser, url: str):
    """The page, with the API key typed and English chosen."""
    page = browser.new_page()
    page.goto(url)
    page.fill("#key", KEY)
    page.select_option("#language", "en")
    return page


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_web_page_in_headless_chromium(server, clip, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra (playwright) is not installed")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            page = browser.new_page(accept_downloads=True)
            page.goto(server[0])
            page.wait_for_selector("#model option", state="attached")
            assert page.locator("#model option").all_text_contents() == ["the server's default"]  # no key yet
            page.fill("#key", KEY)
            page.dispatch_event("#key", "change")
            page.wait_for_function("document.querySelector('#model option').textContent === 'base'")
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
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=fake_microphone(clip))
        try:
            page = english_page(browser, server[0])
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


def recording(folder: Path, seconds: float, name: str) -> tuple[Path, str, int]:
    """Recorded English test prompts of two sentences or more end to end, 0.8 s apart, up to `seconds` of speech."""
    from whisper_lora.data.realspeech import end_to_end

    samples, chosen = end_to_end(real_speech("en"), seconds)
    return write_audio(folder / name, samples[None], 16000), " ".join(p.text for p in chosen), len(chosen)


@pytest.fixture(scope="module")
def long_recording(tmp_path_factory):
    """About 25 s of recorded English (under the test server's 1 MB upload limit)."""
    return recording(tmp_path_factory.mktemp("long"), 24, "long.wav")


@pytest.fixture(scope="module")
def minute_recording(tmp_path_factory):
    """About 60 s of recorded English, for the live page."""
    return recording(tmp_path_factory.mktemp("minute"), 60, "minute.wav")


def keep_append(frame, appended: list[str]) -> None:
    """Keep the base64 audio of an input_audio_buffer.append frame that the page sent."""
    event = json.loads(frame) if isinstance(frame, str) else {}
    if event.get("type") == "input_audio_buffer.append":
        appended.append(event["audio"])


def pcm16_samples(appended: list[str]):
    """The float samples of base64 16 kHz PCM16 pieces, end to end."""
    import numpy as np

    pcm = b"".join(base64.b64decode(piece) for piece in appended)
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def test_stream_true_sends_text_as_it_is_decoded_with_the_openai_client(server, long_recording):
    from whisper_lora.core.metrics import error_rate

    path, reference, _ = long_recording
    api = client(server[0])
    with open(path, "rb") as audio:
        whole = api.audio.transcriptions.create(model="whisper-1", file=audio, language="en").text
    with open(path, "rb") as audio:
        events = list(api.audio.transcriptions.create(model="whisper-1", file=audio, language="en", stream=True))
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) >= 2 and events[-1].type == "transcript.text.done"  # segment by segment, then the whole
    assert "".join(deltas) == events[-1].text
    assert error_rate([whole], [events[-1].text], "wer", "en") <= 0.05, (whole, events[-1].text)
    assert error_rate([reference], [events[-1].text], "wer", "en") < 0.15


def test_realtime_websocket_cuts_turns_by_server_vad_and_commits_as_audio_arrives(server, long_recording):
    from whisper_lora.audio.decode import decode_audio
    from whisper_lora.core.metrics import error_rate

    path, reference, prompts = long_recording
    samples = decode_audio(path)
    events, first_delta_at = realtime_session(server[1], samples, "en", KEY)  # 100 ms pieces at 2x real speed
    # The last commit may find the buffer empty, when the server's VAD ended the last turn already.
    assert all(e["error"]["code"] == "input_audio_buffer_commit_empty" for e in events if e["type"] == "error"), events
    completed = [e["transcript"] for e in events if e["type"].endswith("input_audio_transcription.completed")]
    assert len(completed) >= 2, completed  # the pauses between prompts end turns
    assert [e["type"] for e in events].count("input_audio_buffer.speech_stopped") >= 1  # VAD ended one at least
    assert first_delta_at < len(samples)  # committed text comes while the audio is still arriving (latency: benchmarks)
    assert error_rate([reference], [" ".join(completed)], "wer", "en") < 0.2, (reference, completed)


def test_whisper_lora_stream_prints_committed_text_and_logs_when_each_word_came(long_recording, tmp_path):
    import json

    from whisper_lora.core.metrics import error_rate

    path, reference, _ = long_recording
    log = tmp_path / "log.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "whisper_lora.cli",
            "stream",
            str(path),
            "--speed",
            "0",
            "--chunk_seconds",
            "4",
            "--language",
            "en",
            "--json_log",
            str(log),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads(log.read_text())
    assert record["text"] == done.stdout.strip()
    assert error_rate([reference], [record["text"]], "wer", "en") < 0.15, (reference, record["text"])
    times = [w["committed_at"] for w in record["words"]]
    starts = [w["start"] for w in record["words"]]
    assert times == sorted(times) and starts == sorted(starts)
    # At speed 0 the clock is the audio fed: a word is committed by the second 4 s step after it ends, as a rule.
    assert sum(w["latency"] <= 2 * 4 for w in record["words"]) >= 0.9 * len(times)


@pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_web_page_live_transcribes_the_microphone_while_it_speaks(server, minute_recording):
    from whisper_lora.core.metrics import error_rate
    from whisper_lora.core.records import Clip, TranscribeOptions
    from whisper_lora.infer.transcriber import Transcriber

    playwright = pytest.importorskip("playwright.sync_api", reason="the dev extra (playwright) is not installed")
    path, reference, _ = minute_recording
    seconds = Path(path).stat().st_size / 32000
    committed = "document.querySelector('#live').querySelectorAll('.committed')"
    appended: list[str] = []
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=fake_microphone(f"{path}%noloop"))
        try:
            page = english_page(browser, server[0])
            page.on("websocket", lambda socket: socket.on("framesent", lambda frame: keep_append(frame, appended)))
            started = time.monotonic()
            page.click("#live-button")
            page.wait_for_function(f"[...{committed}].some((s) => s.textContent.length > 0)", timeout=120_000)
            first_text_after = time.monotonic() - started
            # Stop once the page has sent the whole file, however the load on the machine paces the fake microphone.
            sent = f"Number(document.querySelector('#live').dataset.sentSeconds) >= {seconds + 1}"
            page.wait_for_function(sent, timeout=(seconds + 120) * 1000)
            page.click("#live-button")  # stop: the last turn is committed
            page.wait_for_function("document.querySelector('#status').textContent === 'live: done'", timeout=120_000)
            live = " ".join(page.eval_on_selector_all("#live .committed", "spans => spans.map(s => s.textContent)"))
        finally:
            browser.close()
    # Starved of CPU, Chromium's fake microphone can drop audio before the page sees it: the server is judged on
    # the audio the page sent, read offline.
    heard = Clip("sent", pcm16_samples(appended))
    offline = Transcriber(None).clips([heard], TranscribeOptions(language="en"))[0].text
    assert first_text_after < seconds, first_text_after  # text while the speech still plays (latency: benchmarks)
    assert error_rate([offline], [live], "wer", "en") <= 0.1, (offline, live)
    assert error_rate([reference], [offline], "wer", "en") < 0.2, (reference, offline)  # the microphone dropped little

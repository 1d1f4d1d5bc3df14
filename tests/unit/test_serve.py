"""The server's API contract and limits, with a stand-in model so each request takes milliseconds."""

import threading
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import silent_flac, sine, write_audio

pytest.importorskip("fastapi", reason="the server extra is not installed")
from fastapi.testclient import TestClient  # noqa: E402

from whisper_lora.core.records import Runtime, Segment, Transcript, Word  # noqa: E402
from whisper_lora.infer.transcriber import Transcriber  # noqa: E402
from whisper_lora.serve.app import ServeSettings, create_app  # noqa: E402


class StandIn(Transcriber):
    """A Transcriber without a model: the real check(), with clips() answering fixed segments and recording options."""

    backend, model_path = "ct2", None
    engine = SimpleNamespace(multilingual=True)

    def __init__(self, release: threading.Event | None = None, text: str = "hello world"):
        self.release, self.calls, self.started, self.text = release, [], threading.Event(), text

    def clips(self, clips, options):
        self.calls.append(options)
        self.started.set()
        if self.release:
            self.release.wait(10)
        words = [Word(0.1, 0.4, " hello", 0.9), Word(0.5, 0.9, " world", 0.8)]
        segment = Segment(0.0, 1.0, "hello world", words if options.word_timestamps else None)
        return [Transcript(c.name, self.text, [segment], options.language or "en", 0.9, 1.0) for c in clips]


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    return write_audio(tmp_path_factory.mktemp("audio") / "tone.wav", sine(1.0, 16000), 16000).read_bytes()


def client_for(stand_in=None, **settings):
    return TestClient(create_app(ServeSettings(**settings), stand_in or StandIn()))


def post(client, data=None, file=("clip.wav", b"", "audio/wav"), path="transcriptions", **kwargs):
    files = {"file": file} if file else {"model": (None, "whisper-1")}  # still multipart, without the file
    return client.post(f"/v1/audio/{path}", files=files, data=data or {}, **kwargs)


def test_health_models_and_page():
    with client_for(runtime=Runtime(model_path="demo_output/model")) as client:
        assert client.get("/health").json()["status"] == "ready"
        assert client.get("/v1/models").json()["data"][0]["id"] == "demo_output/model"
        assert "MediaRecorder" in client.get("/").text


@pytest.mark.parametrize(
    "response_format, check",
    [
        ("json", lambda r: r.json() == {"text": "hello world"}),
        ("text", lambda r: r.text == "hello world"),
        ("srt", lambda r: r.text == "1\n00:00:00,000 --> 00:00:01,000\nhello world\n\n"),
        ("vtt", lambda r: r.text.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello world")),
        (
            "verbose_json",
            lambda r: r.json()["segments"][0] == {"id": 0, "start": 0.0, "end": 1.0, "text": "hello world"},
        ),
    ],
)
def test_response_formats(wav, response_format, check):
    with client_for() as client:
        response = post(client, {"response_format": response_format}, ("a.wav", wav, "audio/wav"))
        assert response.status_code == 200 and check(response), response.text


def test_options_reach_the_model(wav):
    stand_in = StandIn()
    with client_for(stand_in) as client:
        data = {
            "language": "zh",
            "prompt": "专有名词",
            "temperature": "0.3",
            "response_format": "verbose_json",
            "timestamp_granularities[]": ["word", "segment"],
        }
        body = post(client, data, ("a.wav", wav, "audio/wav")).json()
        assert [w["word"] for w in body["words"]] == [" hello", " world"] and body["language"] == "chinese"
        options = stand_in.calls[-1]
        assert (options.language, options.initial_prompt, options.temperature) == ("zh", "专有名词", (0.3,))
        assert options.word_timestamps and options.return_timestamps and options.task == "transcribe"
        post(client, {}, ("a.wav", wav, "audio/wav"), path="translations")
        assert stand_in.calls[-1].task == "translate"


@pytest.mark.parametrize(
    "data, file, headers, status, message",
    [
        ({}, None, {}, 400, "file: Field required"),
        ({}, ("a.wav", b"\x00garbage" * 50, "audio/wav"), {}, 400, "not usable audio"),
        ({}, ("a.wav", b"", "audio/wav"), {}, 400, "not usable audio"),
        ({"language": "xx"}, "wav", {}, 400, "is not a Whisper language"),
        ({"response_format": "docx"}, "wav", {}, 400, "response_format must be one of"),
        ({"timestamp_granularities[]": "char"}, "wav", {}, 400, "not char"),
        ({"temperature": "7"}, "wav", {}, 400, "temperature must be between 0 and 1"),
    ],
)
def test_bad_requests_get_400_with_the_reason(wav, data, file, headers, status, message):
    with client_for() as client:
        response = post(client, data, ("a.wav", wav, "audio/wav") if file == "wav" else file, headers=headers)
        assert response.status_code == status and message in response.json()["error"]["message"], response.text


def test_wrong_content_type_is_415():
    with client_for() as client:
        response = client.post("/v1/audio/transcriptions", json={"file": "a.wav"})
        assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]["message"]


def test_api_key():
    with client_for(api_key="secret") as client:
        assert client.get("/v1/models").status_code == 401
        assert post(client, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer secret"}).status_code == 200
        probe = client.get("/health")  # probes need no key, and learn no paths or failure details without it
        assert probe.status_code == 200 and probe.json() == {"status": "ready"}
        detailed = client.get("/health", headers={"Authorization": "Bearer secret"}).json()
        assert detailed["model"] == "base" and detailed["models"] == {"base": "loaded"}


def test_oversize_upload_is_413_by_its_declared_length(wav):
    with client_for(max_upload_mb=0.01) as client:
        response = post(client, {}, ("big.wav", b"\x00" * 20_000, "audio/wav"))
        assert response.status_code == 413 and "0.01 MB limit" in response.json()["error"]["message"]


def test_oversize_upload_without_a_length_is_413_while_streaming():
    boundary = "x"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'.encode()

    def body():  # chunked: no Content-Length header, so only counting the bytes can catch it
        yield head
        for _ in range(100):
            yield b"\x00" * 4096

    with client_for(max_upload_mb=0.05) as client:
        response = client.post(
            "/v1/audio/transcriptions",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
        assert response.status_code == 413 and "0.05 MB limit" in response.json()["error"]["message"]


def test_full_queue_gets_503_with_retry_after(wav):
    release = threading.Event()
    stand_in = StandIn(release)
    with client_for(stand_in, workers=1, max_queue=0) as client:
        first = threading.Thread(target=post, args=(client, {}, ("a.wav", wav, "audio/wav")))
        first.start()
        assert stand_in.started.wait(10)
        response = post(client, {}, ("a.wav", wav, "audio/wav"))
        release.set()
        first.join()
        assert response.status_code == 503 and response.headers["Retry-After"] == "5"
        assert post(client, {}, ("a.wav", wav, "audio/wav")).status_code == 200  # the slot came back


def test_temporary_files_are_removed_on_success_and_error(wav, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with client_for() as client:
        assert post(client, {}, ("a.wav", wav, "audio/wav")).status_code == 200
        assert post(client, {}, ("a.wav", b"garbage", "audio/wav")).status_code == 400
        assert post(client, {}, ("/etc/hostname", b"garbage", "audio/wav")).status_code == 400  # a name, never opened
    assert list(tmp_path.iterdir()) == []


def test_word_timestamps_on_the_transformers_backend_are_refused(wav):
    stand_in = StandIn()
    stand_in.backend = "transformers"
    with client_for(stand_in) as client:
        response = post(client, {"timestamp_granularities[]": "word"}, ("a.wav", wav, "audio/wav"))
        assert response.status_code == 400 and "need --backend ct2" in response.json()["error"]["message"]


def test_loading_model_answers_503():
    app = create_app(ServeSettings(Runtime(model_path="/no/such/model")))
    with TestClient(app) as client:
        for _ in range(100):
            health = client.get("/health")
            if health.json()["status"] != "loading":
                break
            threading.Event().wait(0.05)
        assert health.status_code == 503 and health.json()["status"].startswith(
            "failed: Unknown model '/no/such/model'"
        )
        assert post(client).status_code == 503


def test_a_model_that_fails_to_load_with_any_error_says_why(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA driver too old")

    monkeypatch.setattr(Transcriber, "__init__", broken)
    with TestClient(create_app(ServeSettings(Runtime(model_path="demo_output/model")))) as client:
        for _ in range(100):
            health = client.get("/health")
            if health.json()["status"] != "loading":
                break
            threading.Event().wait(0.05)
        assert health.status_code == 503 and health.json()["status"] == "failed: RuntimeError: CUDA driver too old"
        response = post(client)
        message = response.json()["error"]["message"]  # the reason is for the log and key holders, not every client
        assert response.status_code == 503 and "failed to load" in message and "CUDA" not in message


def test_api_key_is_compared_in_constant_time(monkeypatch):
    import hmac

    compared, original = [], hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: compared.append((a, b)) or original(a, b))
    with client_for(api_key="secret") as client:
        assert client.get("/v1/models", headers={"Authorization": "Bearer secret"}).status_code == 200
    assert compared == [(b"Bearer secret", b"Bearer secret")]


def ready(client, every: bool = False) -> dict:
    """/health once the default model (or every model) has loaded or failed."""
    for _ in range(200):
        health = client.get("/health").json()
        if health["status"] != "loading" and not (every and "not loaded" in health["models"].values()):
            break
        threading.Event().wait(0.02)
    return health


def named(loaded: list, failing: str = "") -> callable:
    """A load(path) for create_app: a stand-in whose transcript names its path; failing raises like a broken folder."""

    def load(path):
        if path == failing:
            raise RuntimeError(f"{path} is broken")
        loaded.append(path)
        return StandIn(text=f"from {path}")

    return load


def test_each_named_model_answers_the_requests_that_name_it(wav):
    loaded = []
    settings = ServeSettings(models={"support": "./support", "legal": "./legal"}, preload=True)
    with TestClient(create_app(settings, load=named(loaded))) as client:
        assert ready(client, every=True)["models"] == {"support": "loaded", "legal": "loaded"}
        assert [m["id"] for m in client.get("/v1/models").json()["data"]] == ["support", "legal"]
        for model, text in (("legal", "from ./legal"), ("support", "from ./support"), ("whisper-1", "from ./support")):
            assert post(client, {"model": model}, ("a.wav", wav, "audio/wav")).json()["text"] == text, model
        unknown = post(client, {"model": "medical"}, ("a.wav", wav, "audio/wav"))
        error = unknown.json()["error"]
        assert unknown.status_code == 404 and (error["code"], error["param"]) == ("model_not_found", "model")
        assert "'medical' does not exist; this server has: support, legal" in error["message"]
    assert loaded == ["./support", "./legal"]


def test_models_load_on_their_first_request_and_at_most_max_loaded_stay(wav):
    loaded = []
    settings = ServeSettings(Runtime(model_path="./base"), models={"a": "./a", "b": "./b"}, max_loaded=2)
    with TestClient(create_app(settings, load=named(loaded))) as client:
        assert ready(client)["models"] == {"./base": "loaded", "a": "not loaded", "b": "not loaded"}
        for model in ("a", "./base", "b", "a"):
            post(client, {"model": model}, ("a.wav", wav, "audio/wav"))
        assert loaded == ["./base", "./a", "./b", "./a"]  # b pushed a out (least recently used), a came back
        assert client.get("/health").json()["models"] == {"./base": "not loaded", "a": "loaded", "b": "loaded"}


def test_a_model_that_fails_to_load_gets_503_and_the_others_still_serve(wav, caplog):
    settings = ServeSettings(models={"good": "./good", "bad": "./bad"})
    with TestClient(create_app(settings, load=named([], failing="./bad"))) as client:
        ready(client)
        failed = post(client, {"model": "bad"}, ("a.wav", wav, "audio/wav"))
        assert failed.status_code == 503 and "'bad' failed to load" in failed.text and "broken" not in failed.text
        assert client.get("/health").json()["models"]["bad"] == "failed: RuntimeError: ./bad is broken"  # no key set
        assert "./bad is broken" in caplog.text  # the server log has the reason, with its traceback
        assert post(client, {"model": "good"}, ("a.wav", wav, "audio/wav")).json()["text"] == "from ./good"


def test_serve_flags_name_the_models_in_order_after_model_path():
    from whisper_lora.cli.common import runtime
    from whisper_lora.cli.main import build_parser
    from whisper_lora.cli.serve import named_models
    from whisper_lora.core.errors import UserError

    args = build_parser().parse_args(["serve", "--model_path", "./out", "--model", "zh=./zh", "--model", "en=tiny.en"])
    settings = ServeSettings(runtime(args), models=named_models(args.model))
    assert settings.served() == {"./out": "./out", "zh": "./zh", "en": "tiny.en"} and settings.model_id == "./out"
    assert ServeSettings().served() == {"base": None}
    for bad in (["zh"], ["=./zh"], ["zh=./a", "zh=./b"], ["zh =./a", "zh=./b"]):
        with pytest.raises(UserError, match="--model"):
            named_models(bad)


class Streaming(StandIn):
    """A stand-in whose segments come one by one, the second only after the first has been sent."""

    def __init__(self, fail: bool = False):
        super().__init__()
        self.fail, self.sent = fail, threading.Event()

    def segments(self, samples, options):
        def each():
            yield Segment(0.0, 1.0, "Hello there.")
            if self.fail:
                raise RuntimeError("the decoder fell over")
            yield Segment(1.0, 2.0, "General Kenobi.")

        return "en", each()


def events(response) -> list[dict]:
    import json

    assert response.headers["content-type"].startswith("text/event-stream"), response.text
    blocks = [b for b in response.text.split("\n\n") if b.strip()]
    assert all(b.startswith("data: ") for b in blocks), blocks
    return [json.loads(b.removeprefix("data: ")) for b in blocks]


def test_stream_true_sends_a_delta_per_segment_then_done(wav):
    with client_for(Streaming()) as client:
        response = post(client, {"stream": "true"}, file=("clip.wav", wav, "audio/wav"))
    assert response.status_code == 200
    first, second = (
        {"start": 0.0, "end": 1.0, "text": "Hello there."},
        {"start": 1.0, "end": 2.0, "text": "General Kenobi."},
    )
    assert events(response) == [
        {"type": "transcript.text.delta", "delta": "Hello there.", "segment": first},
        {"type": "transcript.text.delta", "delta": " General Kenobi.", "segment": second},
        {"type": "transcript.text.done", "text": "Hello there. General Kenobi."},
    ]


def test_a_failure_mid_stream_is_an_error_event_after_the_text_already_sent(wav):
    with client_for(Streaming(fail=True)) as client:
        sent = events(post(client, {"stream": "true"}, file=("clip.wav", wav, "audio/wav")))
    assert sent[0]["delta"] == "Hello there."
    assert sent[1]["type"] == "error" and "the server log has the details" in sent[1]["error"]["message"]
    assert "decoder fell over" not in str(sent)
    assert len(sent) == 2


def test_stream_refuses_timed_formats_and_bad_audio_before_streaming(wav):
    with client_for(Streaming()) as client:
        timed = post(client, {"stream": "true", "response_format": "srt"}, file=("clip.wav", wav, "audio/wav"))
        broken = post(client, {"stream": "true"}, file=("clip.wav", b"not audio", "audio/wav"))
    assert timed.status_code == 400 and "response_format must be json or text" in timed.json()["error"]["message"]
    assert broken.status_code == 400 and broken.json()["error"]["message"]


def test_ctranslate2_runs_as_many_decodings_at_once_as_serve_has_workers(tiny_model_dir):
    from whisper_lora.serve.state import ModelPool

    settings = ServeSettings(Runtime(model_path=str(tiny_model_dir), backend="ct2"), workers=2)
    transcriber = ModelPool(settings).load(str(tiny_model_dir))
    assert transcriber.engine.model.model.num_workers == 2  # one worker would queue the second request behind the first


@pytest.fixture(scope="module")
def long_opus(tmp_path_factory):
    """Two minutes of silence as Opus: a small upload that decodes to far more samples than bytes."""
    silence = np.zeros((1, 120 * 16000), np.float32)
    return write_audio(tmp_path_factory.mktemp("audio") / "long.ogg", silence, 16000).read_bytes()


@pytest.mark.parametrize("stream", ["false", "true"])
def test_audio_longer_than_the_limit_is_413_before_the_model_sees_it(long_opus, stream):
    stand_in = StandIn()
    with client_for(stand_in, max_audio_s=30) as client:
        assert len(long_opus) < 200_000  # under the upload limit by far
        response = post(client, {"stream": stream}, ("long.ogg", long_opus, "audio/ogg"))
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "audio_too_long" and "30 s limit (--max_audio_s)" in error["message"]
    assert stand_in.calls == []


def test_ten_hours_of_silence_in_seven_megabytes_is_refused_at_the_default_limit(tmp_path):
    bomb = silent_flac(tmp_path / "ten-hours.flac", 10 * 3600).read_bytes()
    stand_in = StandIn()
    with client_for(stand_in) as client:
        response = post(client, {}, ("ten-hours.flac", bomb, "audio/flac"))
    assert len(bomb) < 10_000_000 and response.status_code == 413, response.text
    assert "3600 s limit (--max_audio_s)" in response.json()["error"]["message"]
    assert stand_in.calls == []


def test_serve_refuses_limits_that_would_refuse_everything(capsys):
    from whisper_lora.cli.main import main

    for flag, value in (("--max_queue", "-1"), ("--max_audio_s", "0"), ("--max_upload_mb", "nan")):
        with pytest.raises(SystemExit) as exited:
            main(["serve", flag, value])
        assert exited.value.code == 2 and flag in capsys.readouterr().err


def run_admission(settings: ServeSettings, bodies: dict, gate: dict | None = None) -> dict:
    """Responses of Admission to concurrent POSTs, by name: bodies maps a name to (seconds between pieces, pieces)."""
    import asyncio

    from whisper_lora.serve.app import Admission

    gate = gate or {"pending": 0, "live": 0, "ready": True, "error": None}
    served, statuses = [], {}

    async def app(scope, receive, send):
        received = b""
        while True:
            message = await receive()
            received += message.get("body", b"")
            if not message.get("more_body"):
                break
        served.append((scope["path"], gate["pending"], len(received)))
        await asyncio.sleep(0.3)  # the model's work
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def request(name, pause, pieces):
        queue = list(pieces)

        async def receive():
            await asyncio.sleep(pause)
            piece = queue.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(queue)}

        async def send(message):
            if message["type"] == "http.response.start":
                statuses[name] = message["status"]

        headers = [(b"content-type", b"multipart/form-data; boundary=x")]
        await Admission(app, settings, gate)(
            {"type": "http", "method": "POST", "path": f"/v1/{name}", "headers": headers}, receive, send
        )

    async def main():
        await asyncio.gather(*(request(name, *body) for name, body in bodies.items()))

    asyncio.run(main())
    return {"statuses": statuses, "served": served}


def test_a_slow_upload_holds_no_place_in_the_queue_and_times_out():
    settings = ServeSettings(workers=1, max_queue=0, upload_timeout_s=1.0)
    result = run_admission(settings, {"slow": (0.4, [b"x"] * 10), "fast": (0.0, [b"y"] * 3)})
    assert result["statuses"] == {"fast": 200, "slow": 408}  # the fast one was served while the slow one trickled
    assert result["served"] == [("/v1/fast", 1, 3)]  # whole body in hand, one place taken: its own


def test_file_requests_and_live_sessions_share_the_places():
    settings = ServeSettings(workers=1, max_queue=1)
    gate = {"pending": 0, "live": 2, "ready": True, "error": None}  # two live sessions take both places
    assert run_admission(settings, {"late": (0.0, [b"z"])}, gate)["statuses"] == {"late": 503}


@pytest.mark.parametrize(
    "name, payload, reason",
    [
        ("empty.wav", b"", "empty file"),
        ("noise.wav", bytes(range(256)) * 40, "cannot decode"),
        ("notes.mp3", b"not audio at all", "cannot decode"),
        (
            "cut.wav",
            b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80>\x00\x00\x00}\x00\x00"
            b"\x02\x00\x10\x00data\xf0\xff\xff\x7f" + bytes(1000),
            "truncated",
        ),
    ],
)
def test_bad_audio_is_a_400_that_says_why_and_names_no_server_path(name, payload, reason):
    stand_in = StandIn()
    with client_for(stand_in) as client:
        response = post(client, {}, (name, payload, "application/octet-stream"))
    message = response.json()["error"]["message"]
    assert response.status_code == 400 and reason in message and "/tmp" not in message, message
    assert stand_in.calls == []


def test_max_loaded_is_a_hard_bound_and_a_held_model_is_never_unloaded():
    import time

    from whisper_lora.serve.state import ModelPool

    pool, in_memory = None, []

    def load(path):
        in_memory.append(len(pool.loaded) + len(pool.starting))  # this one included
        time.sleep(0.05)
        return SimpleNamespace(path=path)

    pool = ModelPool(ServeSettings(models={"a": "./a", "b": "./b", "c": "./c"}, max_loaded=1), load)
    with pool.using("a"):
        waiting = threading.Thread(target=pool.get, args=("b",))
        waiting.start()
        waiting.join(0.5)
        assert waiting.is_alive() and list(pool.loaded) == ["a"]  # b waits while a request holds a
    waiting.join(5)
    assert list(pool.loaded) == ["b"]
    crowd = [threading.Thread(target=pool.get, args=(name,)) for name in "abcabcabc"]
    for thread in crowd:
        thread.start()
    for thread in crowd:
        thread.join(10)
    assert max(in_memory) == 1 and len(pool.loaded) == 1

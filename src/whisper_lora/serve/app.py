"""whisper-lora serve: an OpenAI-compatible transcription API and a web page, on FastAPI and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Form, Request, UploadFile, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.websockets import WebSocketDisconnect

from whisper_lora.audio.decode import AudioError, decode_audio
from whisper_lora.core.errors import UserError
from whisper_lora.core.languages import NAMES, traits
from whisper_lora.core.records import (
    FALLBACK_TEMPERATURES,
    Runtime,
    Segment,
    TranscribeOptions,
    Transcript,
    join_segments,
)
from whisper_lora.infer.stream import LiveTranscriber
from whisper_lora.infer.transcriber import Clip, Transcriber
from whisper_lora.infer.writers import get_writer
from whisper_lora.serve.realtime import RealtimeSession, SessionConfig, dump

log = logging.getLogger("whisper_lora.serve.app")

API_KEY_VARIABLE = "WHISPER_LORA_API_KEY"
DEFAULT_NAMES = ("whisper-1", "")  # what OpenAI's clients send when they name none of ours: the default model
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
WEB_PAGE = Path(__file__).with_name("web") / "index.html"


@dataclass
class ServeSettings:
    """What the server loads and the limits it keeps."""

    runtime: Runtime = field(default_factory=Runtime)  # how models run; its model_path is served first, by its path
    max_upload_mb: float = 25.0
    api_key: str | None = None
    workers: int = 1  # model calls at once; more only helps with more cores or a GPU
    max_queue: int = 8  # requests waiting for a worker before new ones get 503
    retry_after_s: int = 5
    models: dict[str, str | None] = field(default_factory=dict)  # --model NAME=PATH, in order
    preload: bool = False  # load every model at start instead of on its first request
    max_loaded: int | None = None  # most models in memory at once; the least recently used goes first
    max_streams: int = 1  # live /v1/realtime sessions at once; more are refused, so the others keep up

    def served(self) -> dict[str, str | None]:
        """Every model served, by the name a request's model field gives, the default first."""
        path = self.runtime.model_path
        first = {} if self.models and not path else {str(path or "base"): path}
        return first | self.models

    @property
    def model_id(self) -> str:
        """The default model's name: /health shows it, and requests naming whisper-1 get it."""
        return next(iter(self.served()))


class UnknownModel(Exception):
    """A request named a model this server does not serve."""


class ModelUnavailable(Exception):
    """A served model failed to load; the message says why."""


def _rss_mb() -> float | None:
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None  # not Linux


def _failure(error: Exception) -> str:
    return str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"


class ModelPool:
    """The served models by name: each loads on its first request (or at start), at most max_loaded at once (LRU)."""

    def __init__(self, settings: ServeSettings, load: Callable[[str | None], Transcriber] | None = None):
        self.settings, self.paths = settings, settings.served()
        self.load = load or (
            lambda path: Transcriber.run(replace(settings.runtime, model_path=path), 1, settings.workers)
        )
        self.loaded: OrderedDict[str, Transcriber] = OrderedDict()
        self.errors: dict[str, str] = {}
        self.lock, self.loading = threading.Lock(), {name: threading.Lock() for name in self.paths}

    def name(self, requested: str | None) -> str:
        """The served name that a request's model field picks."""
        if requested in self.paths:
            return str(requested)
        if requested is None or requested in DEFAULT_NAMES:
            return self.settings.model_id
        raise UnknownModel(f"The model {requested!r} does not exist; this server has: {', '.join(self.paths)}")

    def get(self, name: str) -> Transcriber:
        """The model, loaded first if it is not (this blocks); ModelUnavailable if it failed to load."""
        with self.loading[name]:  # one load per model, however many requests wait for it
            with self.lock:
                if name in self.loaded:
                    self.loaded.move_to_end(name)
                    return self.loaded[name]
            if name in self.errors:
                raise self._unavailable(name)
            transcriber = self._load(name)
            with self.lock:
                self.loaded[name] = transcriber
                while self.settings.max_loaded and len(self.loaded) > self.settings.max_loaded:
                    unloaded, _ = self.loaded.popitem(last=False)
                    log.info("unloaded %s (--max_loaded %d)", unloaded, self.settings.max_loaded)
            return transcriber

    def _load(self, name: str) -> Transcriber:
        before, started = _rss_mb(), time.perf_counter()
        try:
            transcriber = self.load(self.paths[name])
        except Exception as error:  # any failure must be reported, or requests would wait on it forever
            self.errors[name] = _failure(error)
            raise self._unavailable(name) from None
        after = _rss_mb()
        memory = f"; RSS {after:.0f} MB ({after - before:+.0f} MB)" if after and before else ""
        log.info("loaded %s in %.1f s%s", name, time.perf_counter() - started, memory)
        return transcriber

    def _unavailable(self, name: str) -> ModelUnavailable:
        return ModelUnavailable(f"the model {name!r} failed to load: {self.errors[name]}")

    def add(self, name: str, transcriber: Transcriber) -> None:
        """Serve an already loaded model under name."""
        self.loaded[name] = transcriber

    def status(self) -> dict[str, str]:
        """Each model's state: loaded, not loaded, or failed with the reason."""
        return {name: self._state(name) for name in self.paths}

    def _state(self, name: str) -> str:
        if name in self.loaded:
            return "loaded"
        return f"failed: {self.errors[name]}" if name in self.errors else "not loaded"


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
    """An error in the shape OpenAI's API (and so its client) uses."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class Admission:
    """ASGI middleware in front of the API: key, content type, upload size and queue length, before any body is read."""

    def __init__(self, app, settings: ServeSettings, gate: dict):
        self.app, self.settings, self.gate = app, settings, gate
        self.limit = int(settings.max_upload_mb * 2**20)

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/v1/"):
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal:
            return await _send_json(send, *refusal)
        if scope["method"] != "POST":
            return await self.app(scope, receive, send)
        self.gate["pending"] += 1
        try:
            await self._forward_limited(scope, receive, send)
        finally:
            self.gate["pending"] -= 1

    def _refusal(self, scope, headers: dict) -> tuple | None:
        key = self.settings.api_key
        if key and not hmac.compare_digest(headers.get("authorization", "").encode(), f"Bearer {key}".encode()):
            return 401, error_body("missing or wrong API key (send Authorization: Bearer KEY)", "authentication_error")
        if scope["method"] != "POST":
            return None
        if not headers.get("content-type", "").startswith("multipart/form-data"):
            return 415, error_body("send the audio as multipart/form-data with a 'file' field")
        length = headers.get("content-length", "0")
        if length.isdigit() and int(length) > self.limit:
            return 413, self._too_large()
        if self.gate["error"]:
            return 503, error_body(f"the model failed to load: {self.gate['error']}", "server_error"), None
        if not self.gate["ready"]:
            return 503, error_body("the model is still loading", "server_error"), self.settings.retry_after_s
        if self.gate["pending"] >= self.settings.workers + self.settings.max_queue:
            return 503, error_body("the server is busy; retry later", "server_error"), self.settings.retry_after_s
        return None

    async def _forward_limited(self, scope, receive, send):
        # The app may wrap our exception in its own 400 while parsing the form, so the 413 replaces whatever it sends.
        received, over, replied = 0, False, False

        async def limited_receive():
            nonlocal received, over
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                over = True
                raise _TooLarge()
            return message

        async def guarded_send(message):
            nonlocal replied
            if not over:
                await send(message)
            elif not replied:
                replied = True
                await _send_json(send, 413, self._too_large())

        try:
            await self.app(scope, limited_receive, guarded_send)
        except _TooLarge:
            if not replied:
                await _send_json(send, 413, self._too_large())

    def _too_large(self) -> dict:
        return error_body(f"upload is over the {self.settings.max_upload_mb:g} MB limit", param="file")


class _TooLarge(Exception):
    pass


async def _send_json(send, status: int, body: dict, retry_after: int | None = None) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if retry_after:
        headers.append((b"retry-after", str(retry_after).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def request_options(
    task: str,
    language: str | None,
    prompt: str | None,
    temperature: float,
    granularities: list[str],
    response_format: str,
) -> TranscribeOptions:
    """TranscribeOptions for one API request; UserError for values the API refuses."""
    if response_format not in RESPONSE_FORMATS:
        raise UserError(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}")
    unknown = set(granularities) - {"segment", "word"}
    if unknown:
        raise UserError(f"timestamp_granularities[] takes segment and word, not {', '.join(sorted(unknown))}")
    if not 0 <= temperature <= 1:
        raise UserError("temperature must be between 0 and 1")
    temperatures = list(FALLBACK_TEMPERATURES) if temperature == 0 else [temperature]
    return TranscribeOptions(
        language=language or None,
        task=task,
        return_timestamps=response_format in ("srt", "vtt", "verbose_json"),
        temperature=temperatures,
        initial_prompt=prompt or None,
        word_timestamps="word" in granularities,
    )


def render(transcript: Transcript, response_format: str, task: str, granularities: list[str]):
    """The response body for a finished transcript in the requested format."""
    if response_format == "json":
        return JSONResponse({"text": transcript.text})
    if response_format == "text":
        return PlainTextResponse(transcript.text)
    if response_format in ("srt", "vtt"):
        return PlainTextResponse(get_writer(response_format).render([transcript]))
    body: dict[str, Any] = {
        "task": task,
        "language": NAMES.get(transcript.language or "", transcript.language),
        "duration": transcript.duration,
        "text": transcript.text,
    }
    if "segment" in granularities or not granularities:
        body["segments"] = [
            {"id": i, "start": s.start, "end": s.end, "text": s.text} for i, s in enumerate(transcript.segments)
        ]
    if "word" in granularities:
        body["words"] = [asdict(w) for s in transcript.segments for w in s.words or []]
    return JSONResponse(body)


def read_upload(upload):
    """The upload's audio: copied to a private temporary folder, decoded there, and the folder removed whatever happens."""
    folder = tempfile.mkdtemp(prefix="whisper-lora-upload-")
    try:
        path = Path(folder) / "upload"  # never the client's file name
        with open(path, "wb") as handle:
            shutil.copyfileobj(upload, handle)
        return decode_audio(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def transcribe_upload(transcriber: Transcriber, upload, options: TranscribeOptions) -> Transcript:
    """The upload's transcript; the options are checked before any decoding."""
    transcriber.check(options)
    return transcriber.clips([Clip("upload", read_upload(upload))], options)[0]


def sse(event: dict) -> str:
    """One Server-Sent Event carrying event as JSON, as OpenAI's streaming responses send it."""
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"


def text_events(transcriber: Transcriber, samples, options: TranscribeOptions, stop: threading.Event):
    """transcript.text.delta events as segments are decoded, then transcript.text.done; stops early when stop is set."""
    language, segments = transcriber.segments(samples, options)
    said: list[Segment] = []
    for segment in segments:
        if stop.is_set():
            return
        delta = (" " if said and traits(language or options.language).spaces else "") + segment.text
        said.append(segment)
        timed = {"start": segment.start, "end": segment.end, "text": segment.text}  # ours, beside OpenAI's fields
        yield {"type": "transcript.text.delta", "delta": delta, "segment": timed}
    yield {"type": "transcript.text.done", "text": join_segments(said, language or options.language)}


def create_app(  # noqa: C901, PLR0915 (to be split into routers)
    settings: ServeSettings,
    transcriber: Transcriber | None = None,
    load: Callable[[str | None], Transcriber] | None = None,
) -> FastAPI:
    """The FastAPI app. It loads the default model in the background (every model with preload), unless transcriber
    is given as that model; load(path) replaces Transcriber.run for the others. /health says when it is ready."""
    models = ModelPool(settings, load)
    if transcriber is not None:
        models.add(settings.model_id, transcriber)
    gate = {"pending": 0, "ready": transcriber is not None, "error": None}
    pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="whisper-lora")
    live = {"open": 0}  # /v1/realtime sessions

    def start():
        try:
            models.get(settings.model_id)
            gate["ready"] = True
        except ModelUnavailable:
            gate["error"] = models.errors[settings.model_id]
            return
        for name in list(models.paths)[1:] if settings.preload else []:
            with contextlib.suppress(ModelUnavailable):  # /health shows it, and its requests get 503 with the reason
                models.get(name)

    async def lifespan(app):
        threading.Thread(target=start, daemon=True).start()
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="whisper-lora", lifespan=lifespan)
    app.add_middleware(Admission, settings=settings, gate=gate)
    _add_error_handlers(app)

    @app.get("/health")
    async def health():
        body = {"model": settings.model_id, "models": models.status()}
        if gate["ready"]:
            return {"status": "ready", **body, "pending": gate["pending"]}
        status = "failed: " + gate["error"] if gate["error"] else "loading"
        return JSONResponse({"status": status, **body}, status_code=503)

    @app.get("/v1/models")
    async def listing():
        created = int(time.time())
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": created, "owned_by": "whisper-lora"} for name in models.paths
            ],
        }

    async def handle(task: str, file: UploadFile, model, language, prompt, response_format, temperature, granularities):
        options = request_options(task, language, prompt, temperature, granularities or [], response_format)
        name = models.name(model)
        loop = asyncio.get_running_loop()
        transcript = await loop.run_in_executor(pool, lambda: transcribe_upload(models.get(name), file.file, options))
        return render(transcript, response_format, task, granularities or [])

    async def stream_text(file: UploadFile, model, language, prompt, response_format, temperature):
        if response_format not in ("json", "text"):
            raise UserError("stream=true sends text events: response_format must be json or text")
        options = request_options("transcribe", language, prompt, temperature, [], "json")
        name, loop = models.name(model), asyncio.get_running_loop()
        transcriber = await loop.run_in_executor(pool, models.get, name)
        transcriber.check(options)
        samples = await loop.run_in_executor(pool, read_upload, file.file)  # a bad file is refused before the stream
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def produce():
            try:
                for event in text_events(transcriber, samples, options, stop):
                    loop.call_soon_threadsafe(queue.put_nowait, event)
            except Exception as error:  # the status line is sent already: the error goes in the stream
                log.exception("streamed transcription failed")
                loop.call_soon_threadsafe(
                    queue.put_nowait, {"type": "error", **error_body(_failure(error), "server_error")}
                )
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        pool.submit(produce)

        async def body():
            try:
                while (event := await queue.get()) is not None:
                    yield sse(event)
            finally:
                stop.set()  # the client went away, or the stream ended: the decoding stops at its next segment

        return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(
        file: UploadFile,
        model: str = Form("whisper-1"),
        language: str | None = Form(None),
        prompt: str | None = Form(None),
        response_format: str = Form("json"),
        temperature: float = Form(0.0),
        timestamp_granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
        stream: bool = Form(False),
    ):
        if stream:
            return await stream_text(file, model, language, prompt, response_format, temperature)
        granularities = timestamp_granularities
        return await handle("transcribe", file, model, language, prompt, response_format, temperature, granularities)

    @app.post("/v1/audio/translations")
    async def translations(
        file: UploadFile,
        model: str = Form("whisper-1"),
        prompt: str | None = Form(None),
        response_format: str = Form("json"),
        temperature: float = Form(0.0),
    ):
        return await handle("translate", file, model, None, prompt, response_format, temperature, [])

    @app.websocket("/v1/realtime")
    async def realtime(websocket: WebSocket, model: str | None = None):
        await live_session(websocket, model)

    async def live_session(websocket: WebSocket, model: str | None) -> None:
        offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if not _realtime_key_ok(settings.api_key, websocket.headers.get("authorization", ""), offered):
            await websocket.close(code=1008, reason="missing or wrong API key")
            return
        await websocket.accept(subprotocol=_subprotocol(offered))
        if live["open"] >= settings.max_streams:
            body = error_body(
                f"the server keeps {settings.max_streams} live sessions at once; retry later", "server_error"
            )
            await websocket.send_text(dump({"type": "error", **body}))
            await websocket.close(code=1013)
            return
        live["open"] += 1
        loop = asyncio.get_running_loop()
        limit = int(settings.max_upload_mb * 2**20)
        session = RealtimeSession(
            send=lambda event: websocket.send_text(dump(event)),
            run=lambda work: loop.run_in_executor(pool, work),
            make_live=make_live,
            config=SessionConfig(model=model),
            message_limit=limit,
            minute_limit=limit,
        )
        worker = asyncio.create_task(_work(session, websocket))
        try:
            await session.start()
            while not worker.done():
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("text") is None:
                    await session.error("send events as JSON text frames")
                elif not await session.handle(message["text"]):
                    await websocket.close(code=1008)
                    break
        except (RuntimeError, WebSocketDisconnect):
            pass  # the client went away
        finally:
            session.close()
            worker.cancel()
            live["open"] -= 1

    def make_live(config):
        transcriber = models.get(models.name(config.model))
        return LiveTranscriber(transcriber, TranscribeOptions(language=config.language, initial_prompt=config.prompt))

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return WEB_PAGE.read_text(encoding="utf-8")

    return app


async def _work(session, websocket) -> None:
    """The session's engine loop; a failure becomes an error event and ends the session."""
    try:
        await session.work()
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a model that fails to load, an unknown model, a decoding failure
        log.exception("live session failed")
        try:
            await session.error(_failure(error), code="server_error")
            await websocket.close(code=1011)
        except Exception:
            pass  # the client is gone already


def _realtime_key_ok(key: str | None, authorization: str, offered: list[str]) -> bool:
    """The API key from the Authorization header, or from a browser's openai-insecure-api-key.KEY subprotocol."""
    if not key:
        return True
    sent = [authorization] + [
        f"Bearer {p.removeprefix('openai-insecure-api-key.')}"
        for p in offered
        if p.startswith("openai-insecure-api-key.")
    ]
    return any(hmac.compare_digest(value.encode(), f"Bearer {key}".encode()) for value in sent)


def _subprotocol(offered: list[str]) -> str | None:
    # A browser that offers subprotocols drops the connection unless the server picks one of them.
    plain = [p for p in offered if not p.startswith("openai-insecure-api-key.")]
    if "realtime" in offered:
        return "realtime"
    return (plain or offered)[0] if offered else None


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in error.errors())
        return JSONResponse(error_body(problems), status_code=400)

    @app.exception_handler(AudioError)
    async def undecodable(request: Request, error: AudioError):
        return JSONResponse(error_body(f"the uploaded file is not usable audio: {error.reason}", param="file"), 400)

    @app.exception_handler(UserError)
    async def refused(request: Request, error: UserError):
        return JSONResponse(error_body(str(error)), status_code=400)

    @app.exception_handler(UnknownModel)
    async def unknown_model(request: Request, error: UnknownModel):
        return JSONResponse(error_body(str(error), param="model", code="model_not_found"), status_code=404)

    @app.exception_handler(ModelUnavailable)
    async def unavailable(request: Request, error: ModelUnavailable):
        return JSONResponse(error_body(str(error), "server_error"), status_code=503)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return JSONResponse(error_body(str(error.detail)), status_code=error.status_code)


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server until interrupted."""
    settings.api_key = settings.api_key or os.environ.get(API_KEY_VARIABLE) or None
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")

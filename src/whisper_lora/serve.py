"""whisper-lora serve: an OpenAI-compatible transcription API and a web page, on FastAPI and uvicorn."""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from transformers.models.whisper.tokenization_whisper import LANGUAGES

from .audio import AudioError, decode_audio
from .backends import Clip, Transcriber
from .errors import UserError
from .records import FALLBACK_TEMPERATURES, Runtime, TranscribeOptions, Transcript
from .writers import get_writer

API_KEY_VARIABLE = "WHISPER_LORA_API_KEY"
RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
WEB_PAGE = Path(__file__).with_name("web") / "index.html"


@dataclass
class ServeSettings:
    """What the server loads and the limits it keeps."""

    runtime: Runtime = field(default_factory=Runtime)  # the model and how it runs
    max_upload_mb: float = 25.0
    api_key: str | None = None
    workers: int = 1  # model calls at once; more only helps with more cores or a GPU
    max_queue: int = 8  # requests waiting for a worker before new ones get 503
    retry_after_s: int = 5

    @property
    def model_id(self) -> str:
        """The name /v1/models lists."""
        return str(self.runtime.model_path or "base")


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict:
    """An error in the shape OpenAI's API (and so its client) uses."""
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


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
        "language": LANGUAGES.get(transcript.language or "", transcript.language),
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


def transcribe_upload(transcriber: Transcriber, upload, options: TranscribeOptions) -> Transcript:
    """Copy the upload to a private temporary folder, decode it there, and remove the folder whatever happens."""
    folder = tempfile.mkdtemp(prefix="whisper-lora-upload-")
    try:
        path = Path(folder) / "upload"  # never the client's file name
        with open(path, "wb") as handle:
            shutil.copyfileobj(upload, handle)
        samples = decode_audio(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return transcriber.clips([Clip("upload", samples)], options)[0]


def create_app(settings: ServeSettings, transcriber: Transcriber | None = None) -> FastAPI:
    """The FastAPI app; it loads the model in the background unless one is given, and /health says when it is ready."""
    gate = {"pending": 0, "ready": transcriber is not None, "error": None}
    pool = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="whisper-lora")
    state = {"transcriber": transcriber}

    def load():
        try:
            state["transcriber"] = Transcriber.run(settings.runtime, batch_size=1)
            gate["ready"] = True
        except Exception as error:  # any failure must reach /health, or it would answer "loading" forever
            gate["error"] = str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"

    async def lifespan(app):
        if transcriber is None:
            threading.Thread(target=load, daemon=True).start()
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="whisper-lora", lifespan=lifespan)
    app.add_middleware(Admission, settings=settings, gate=gate)
    _add_error_handlers(app)

    @app.get("/health")
    async def health():
        if gate["ready"]:
            return {"status": "ready", "model": settings.model_id, "pending": gate["pending"]}
        status = "failed: " + gate["error"] if gate["error"] else "loading"
        return JSONResponse({"status": status, "model": settings.model_id}, status_code=503)

    @app.get("/v1/models")
    async def models():
        return {
            "object": "list",
            "data": [
                {"id": settings.model_id, "object": "model", "created": int(time.time()), "owned_by": "whisper-lora"}
            ],
        }

    async def handle(task: str, file: UploadFile, language, prompt, response_format, temperature, granularities):
        options = request_options(task, language, prompt, temperature, granularities or [], response_format)
        transcriber = state["transcriber"]
        assert transcriber is not None  # the ready gate lets no request through before the model loads
        transcriber.check(options)
        loop = asyncio.get_running_loop()
        transcript = await loop.run_in_executor(pool, transcribe_upload, transcriber, file.file, options)
        return render(transcript, response_format, task, granularities or [])

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(
        file: UploadFile,
        model: str = Form("whisper-1"),
        language: str | None = Form(None),
        prompt: str | None = Form(None),
        response_format: str = Form("json"),
        temperature: float = Form(0.0),
        timestamp_granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
    ):
        return await handle("transcribe", file, language, prompt, response_format, temperature, timestamp_granularities)

    @app.post("/v1/audio/translations")
    async def translations(
        file: UploadFile,
        model: str = Form("whisper-1"),
        prompt: str | None = Form(None),
        response_format: str = Form("json"),
        temperature: float = Form(0.0),
    ):
        return await handle("translate", file, None, prompt, response_format, temperature, [])

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return WEB_PAGE.read_text(encoding="utf-8")

    return app


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

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        return JSONResponse(error_body(str(error.detail)), status_code=error.status_code)


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run the server until interrupted."""
    import uvicorn

    settings.api_key = settings.api_key or os.environ.get(API_KEY_VARIABLE) or None
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info")

"""whisper-lora serve: the app factory, admission in front of the routes, error bodies, and uvicorn."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from whisper_lora.audio.decode import AudioError, AudioTooLong
from whisper_lora.core.errors import UserError
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.serve import live, routes
from whisper_lora.serve.state import (
    WORKER_PREFIX,
    ModelUnavailable,
    ServerState,
    ServeSettings,
    UnknownModel,
    authorized,
    error_body,
)

log = logging.getLogger(__name__)

API_KEY_VARIABLE = "WHISPER_LORA_API_KEY"

__all__ = ["ServeSettings", "create_app", "serve"]


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
        if not authorized(self.settings, headers.get("authorization", "")):
            return 401, error_body("missing or wrong API key (send Authorization: Bearer KEY)", "authentication_error")
        if scope["method"] != "POST":
            return None
        if not headers.get("content-type", "").startswith("multipart/form-data"):
            return 415, error_body("send the audio as multipart/form-data with a 'file' field")
        length = headers.get("content-length", "0")
        if length.isdigit() and int(length) > self.limit:
            return 413, self._too_large()
        if self.gate["error"]:
            reason = "the model failed to load; the server log (or /health with the key) says why"
            return 503, error_body(reason, "server_error"), None
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


def create_app(
    settings: ServeSettings,
    transcriber: Transcriber | None = None,
    load: Callable[[str | None], Transcriber] | None = None,
) -> FastAPI:
    """The FastAPI app. It loads the default model in the background (every model with preload), unless transcriber
    is given as that model; load(path) replaces Transcriber.run for the others. /health says when it is ready."""
    state = ServerState.build(settings, transcriber, load)

    async def lifespan(app):
        threading.Thread(target=state.load_models, daemon=True).start()
        yield
        state.pool.shutdown(wait=False, cancel_futures=True)
        if unfinished := busy_workers():
            log.warning("stopping with %d transcriptions unfinished (--graceful_shutdown_s)", unfinished)

    app = FastAPI(title="whisper-lora", lifespan=lifespan)
    app.state.server = state
    app.add_middleware(Admission, settings=settings, gate=state.gate)
    _add_error_handlers(app)
    app.include_router(routes.router)
    app.include_router(live.router)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'][1:])) or 'body'}: {e['msg']}" for e in error.errors())
        return JSONResponse(error_body(problems), status_code=400)

    @app.exception_handler(AudioTooLong)
    async def too_long(request: Request, error: AudioTooLong):
        message = f"the audio is longer than this server's {error.limit_s:g} s limit (--max_audio_s)"
        return JSONResponse(error_body(message, param="file", code="audio_too_long"), 413)

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


def serve(settings: ServeSettings, host: str = "127.0.0.1", port: int = 8000, app: FastAPI | None = None) -> None:
    """Run the server until SIGINT or SIGTERM; it stops within settings.graceful_shutdown_s, whatever is running."""
    settings.api_key = settings.api_key or os.environ.get(API_KEY_VARIABLE) or None
    app = app or create_app(settings)
    limit = max(1, round(settings.graceful_shutdown_s))  # uvicorn counts whole seconds
    server = uvicorn.Server(uvicorn.Config(app, host, port, log_level="info", timeout_graceful_shutdown=limit))
    # uvicorn raises the signal that stopped it again once it has shut down: SIGTERM then ends the process
    # at once, and SIGINT arrives here as KeyboardInterrupt.
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if busy_workers():  # Python would wait for the thread at exit
        logging.shutdown()
        os._exit(0)


def busy_workers() -> int:
    """Model threads still running, after a short wait for those about to finish."""
    busy = [thread for thread in threading.enumerate() if thread.name.startswith(WORKER_PREFIX)]
    for thread in busy:
        thread.join(timeout=0.2)
    return sum(thread.is_alive() for thread in busy)

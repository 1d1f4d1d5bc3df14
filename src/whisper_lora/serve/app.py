"""whisper-lora serve: the app factory, admission in front of the routes, error bodies, and uvicorn."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
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
    no_place,
)

log = logging.getLogger(__name__)

API_KEY_VARIABLE = "WHISPER_LORA_API_KEY"

__all__ = ["ServeSettings", "create_app", "serve"]


class Admission:
    """ASGI middleware in front of the API: key, content type and size before the body is read; then the whole body,
    within a deadline, before the request takes a place in the queue, so a slow upload holds no place."""

    def __init__(self, app, settings: ServeSettings, gate: dict):
        self.app, self.settings, self.gate = app, settings, gate
        self.limit = settings.max_upload_bytes

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
        with tempfile.SpooledTemporaryFile(max_size=2**20) as body:  # larger bodies wait on disk, not in memory
            refusal = await self._read_body(receive, body) or self._queue_refusal()
            if refusal:
                return await _send_json(send, *refusal)
            self.gate["pending"] += 1
            try:
                await self.app(scope, _replay(body, receive), send)
            finally:
                self.gate["pending"] -= 1

    async def _read_body(self, receive, body) -> tuple | None:
        """Copy the request body into body; a refusal when it is too large or takes longer than the deadline."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.upload_timeout_s
        more = True
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
                limit = self.settings.upload_timeout_s
                return 408, error_body(f"the upload took longer than {limit:g} s (--upload_timeout_s)", param="file")
            if message["type"] == "http.disconnect":
                return 400, error_body("the client went away before the upload ended")
            body.write(message.get("body", b""))
            if body.tell() > self.limit:
                return 413, self._too_large()
            more = message.get("more_body", False)
        body.seek(0)
        return None

    def _queue_refusal(self) -> tuple | None:
        if no_place(self.settings, self.gate):
            return 503, error_body("the server is busy; retry later", "server_error"), self.settings.retry_after_s
        return None

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
        return None

    def _too_large(self) -> dict:
        return error_body(f"upload is over the {self.settings.max_upload_mb:g} MB limit", param="file")


def _replay(body, receive):
    """An ASGI receive that hands the app the body already read, in pieces, then waits on the client as usual."""
    done = False

    async def replayed():
        nonlocal done
        if done:
            return await receive()  # the disconnect, whenever it comes
        piece = body.read(2**16)
        done = len(piece) < 2**16
        return {"type": "http.request", "body": piece, "more_body": not done}

    return replayed


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
        state.pool.shutdown(wait=False)
        state.pool = state.new_pool(settings)  # a fresh pool each start, so the app can be started again
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

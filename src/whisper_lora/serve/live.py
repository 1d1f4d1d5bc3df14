"""The /v1/realtime WebSocket route: key and session checks, then the realtime protocol over a live engine."""

from __future__ import annotations

import asyncio
import logging
import threading
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from whisper_lora.core.records import TranscribeOptions
from whisper_lora.infer.stream import LiveTranscriber
from whisper_lora.serve.realtime import RealtimeSession, SessionConfig, dump
from whisper_lora.serve.state import ServerState, ServeSettings, authorized, error_body, no_place, public_failure

log = logging.getLogger(__name__)

router = APIRouter()


@router.websocket("/v1/realtime")
async def realtime(websocket: WebSocket, model: str | None = None):
    state: ServerState = websocket.app.state.server
    offered = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    origin = websocket.headers.get("origin")
    if not _origin_ok(origin, websocket.headers.get("host", ""), state.settings):
        reason = f"cross-origin socket from {origin} refused (serve --allowed_origins {origin} allows it)"
        await websocket.close(code=1008, reason=reason)
        return
    if not _realtime_key_ok(state.settings, websocket.headers.get("authorization", ""), offered):
        await websocket.close(code=1008, reason="missing or wrong API key")
        return
    await websocket.accept(subprotocol=_subprotocol(offered))
    gate, settings = state.gate, state.settings
    if gate["live"] >= settings.max_streams or no_place(settings, gate):
        limit = settings.max_streams
        body = error_body(
            f"the server keeps {limit} live sessions at once, and shares its queue with file requests; retry later",
            "server_error",
        )
        await websocket.send_text(dump({"type": "error", **body}))
        await websocket.close(code=1013)
        return
    gate["live"] += 1
    try:
        await live_session(state, websocket, model)
    finally:
        gate["live"] -= 1


async def live_session(state: ServerState, websocket: WebSocket, model: str | None) -> None:
    """Run one accepted session: client events in, the engine's events out, until either side ends it."""
    held: list[str] = []  # a model per turn, held until the session ends
    holding = threading.Lock()

    def make_live(config):
        name = state.models.name(config.model)
        transcriber = state.models.acquire(name)
        with holding:
            if session.closed:  # the session ended while the model loaded
                state.models.release(name)
                raise ConnectionError("the session has ended")
            held.append(name)
        return LiveTranscriber(transcriber, TranscribeOptions(language=config.language, initial_prompt=config.prompt))

    session = RealtimeSession(
        send=lambda event: websocket.send_text(dump(event)),
        run=state.run,
        make_live=make_live,
        config=SessionConfig(model=model),
        message_limit=state.settings.max_upload_bytes,
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
        with holding:
            for name in held:
                state.models.release(name)


async def _work(session, websocket) -> None:
    """The session's engine loop; a failure becomes an error event and ends the session."""
    try:
        await session.work()
    except asyncio.CancelledError:
        raise
    except Exception as error:  # a model that fails to load, an unknown model, a decoding failure
        log.exception("live session failed")
        try:
            await session.error(public_failure(error), code="server_error")
            await websocket.close(code=1011)
        except Exception:
            pass  # the client is gone already


def _realtime_key_ok(settings: ServeSettings, authorization: str, offered: list[str]) -> bool:
    """The API key from the Authorization header, or from a browser's openai-insecure-api-key.KEY subprotocol."""
    sent = [authorization] + [
        f"Bearer {p.removeprefix('openai-insecure-api-key.')}"
        for p in offered
        if p.startswith("openai-insecure-api-key.")
    ]
    return any(authorized(settings, value) for value in sent)


def _origin_ok(origin: str | None, host: str, settings: ServeSettings) -> bool:
    """Whether a browser page from origin may open the socket: its own page, an allowed one, or any with a key set.

    Clients other than browsers send no Origin; without a key, a page elsewhere could otherwise use the server.
    """
    if origin is None or settings.api_key or origin in settings.allowed_origins:
        return True
    return urlsplit(origin).netloc == host


def _subprotocol(offered: list[str]) -> str | None:
    """The subprotocol to accept: realtime, else the first one that carries no key (a key is never echoed back)."""
    # A browser that offers subprotocols drops the connection unless the server picks one of them.
    plain = [p for p in offered if not p.startswith("openai-insecure-api-key.")]
    if "realtime" in plain:
        return "realtime"
    return plain[0] if plain else None

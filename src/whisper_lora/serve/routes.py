"""OpenAI's audio routes (transcriptions, translations, with SSE streaming), the model list, /health and the page."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, StreamingResponse

from whisper_lora.audio.decode import decode_audio
from whisper_lora.core.errors import UserError
from whisper_lora.core.languages import NAMES, traits
from whisper_lora.core.records import FALLBACK_TEMPERATURES, Segment, TranscribeOptions, Transcript, join_segments
from whisper_lora.infer.transcriber import Clip, Transcriber
from whisper_lora.infer.writers import get_writer
from whisper_lora.serve.state import ServerState, authorized, error_body, public_failure, server_state

log = logging.getLogger(__name__)

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
WEB_PAGE = Path(__file__).with_name("web") / "index.html"

router = APIRouter()


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


def read_upload(upload, max_seconds: float | None = None):
    """The upload's audio: copied to a private temporary folder, decoded there (AudioTooLong past max_seconds), and
    the folder removed whatever happens."""
    folder = tempfile.mkdtemp(prefix="whisper-lora-upload-")
    try:
        path = Path(folder) / "upload"  # never the client's file name
        with open(path, "wb") as handle:
            shutil.copyfileobj(upload, handle)
        return decode_audio(path, max_seconds=max_seconds)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def transcribe_upload(
    transcriber: Transcriber, upload, options: TranscribeOptions, max_seconds: float | None = None
) -> Transcript:
    """The upload's transcript; the options are checked before any decoding."""
    transcriber.check(options)
    return transcriber.clips([Clip("upload", read_upload(upload, max_seconds))], options)[0]


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


@router.get("/health")
async def health(request: Request, state: ServerState = Depends(server_state)):
    """Ready, loading or failed for any probe; the models, their paths and failures only with the key, if one is set."""
    gate, detailed = state.gate, authorized(state.settings, request.headers.get("authorization", ""))
    body = {"model": state.settings.model_id, "models": state.models.status()} if detailed else {}
    if gate["ready"]:
        return {"status": "ready", **body, **({"pending": gate["pending"]} if detailed else {})}
    failed = f"failed: {gate['error']}" if detailed else "failed"
    status = failed if gate["error"] else "loading"
    return JSONResponse({"status": status, **body}, status_code=503)


@router.get("/v1/models")
async def listing(state: ServerState = Depends(server_state)):
    created = int(time.time())
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": created, "owned_by": "whisper-lora"}
            for name in state.models.paths
        ],
    }


@router.post("/v1/audio/transcriptions")
async def transcriptions(
    file: UploadFile,
    model: str = Form("whisper-1"),
    language: str | None = Form(None),
    prompt: str | None = Form(None),
    response_format: str = Form("json"),
    temperature: float = Form(0.0),
    timestamp_granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
    stream: bool = Form(False),
    state: ServerState = Depends(server_state),
):
    if stream:
        if response_format not in ("json", "text"):
            raise UserError("stream=true sends text events: response_format must be json or text")
        options = request_options("transcribe", language, prompt, temperature, [], "json")
        return await stream_text(state, file, model, options)
    granularities = timestamp_granularities or []
    options = request_options("transcribe", language, prompt, temperature, granularities, response_format)
    return await answer(state, file, model, options, response_format, granularities)


@router.post("/v1/audio/translations")
async def translations(
    file: UploadFile,
    model: str = Form("whisper-1"),
    prompt: str | None = Form(None),
    response_format: str = Form("json"),
    temperature: float = Form(0.0),
    state: ServerState = Depends(server_state),
):
    options = request_options("translate", None, prompt, temperature, [], response_format)
    return await answer(state, file, model, options, response_format, [])


@router.get("/", response_class=HTMLResponse)
async def page():
    return WEB_PAGE.read_text(encoding="utf-8")


async def answer(state: ServerState, file: UploadFile, model, options, response_format: str, granularities: list):
    """The whole transcript of the upload, rendered in response_format."""
    name, limit = state.models.name(model), state.settings.max_audio_s

    def held():
        with state.models.using(name) as transcriber:
            return transcribe_upload(transcriber, file.file, options, limit)

    return render(await state.run(held), response_format, options.task, granularities)


async def stream_text(state: ServerState, file: UploadFile, model, options: TranscribeOptions):
    """The transcript as Server-Sent Events, one per decoded segment; a bad file is refused before the stream."""
    name = state.models.name(model)
    transcriber = await state.run(state.models.acquire, name)  # held until the stream ends
    try:
        transcriber.check(options)
        samples = await state.run(read_upload, file.file, state.settings.max_audio_s)
    except BaseException:
        state.models.release(name)
        raise
    loop, stop = asyncio.get_running_loop(), threading.Event()
    queue: asyncio.Queue = asyncio.Queue()

    def produce():
        try:
            for event in text_events(transcriber, samples, options, stop):
                loop.call_soon_threadsafe(queue.put_nowait, event)
        except Exception as error:  # the status line is sent already: the error goes in the stream
            log.exception("streamed transcription failed")
            loop.call_soon_threadsafe(
                queue.put_nowait, {"type": "error", **error_body(public_failure(error), "server_error")}
            )
        finally:
            state.models.release(name)
            loop.call_soon_threadsafe(queue.put_nowait, None)

    state.pool.submit(produce)

    async def body():
        try:
            while (event := await queue.get()) is not None:
                yield sse(event)
        finally:
            stop.set()  # the client went away, or the stream ended: the decoding stops at its next segment

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

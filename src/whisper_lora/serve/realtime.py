"""The /v1/realtime WebSocket: the transcription subset of OpenAI's Realtime protocol, over the live engine."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

import av
import numpy as np
from faster_whisper.vad import VadOptions, get_speech_timestamps

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.core.errors import UserError
from whisper_lora.core.languages import normalize_language
from whisper_lora.infer.stream import LiveTranscriber, TimedWord, Update, join_words

RATES = (16000, 24000)
STEP_SECONDS = 1.0  # least new audio between two decodings of a turn
VAD_CONTEXT_SECONDS = 3.0  # audio before the new samples that the voice-activity check reads again
MINUTE_AUDIO_SECONDS = 240.0  # audio a session may send in any minute: 4x real time, room for a client catching up


@dataclass(frozen=True)
class SessionConfig:
    """What session.update may set: language, prompt, model, the PCM16 rate, and server-side turn detection."""

    model: str | None = None
    language: str | None = None
    prompt: str | None = None
    rate: int = 24000  # OpenAI's pcm16 is 24 kHz
    server_vad: bool = True
    silence_ms: int = 600
    threshold: float = 0.5

    def public(self) -> dict:
        """The session as session.created and session.updated describe it."""
        turns = (
            {"type": "server_vad", "threshold": self.threshold, "silence_duration_ms": self.silence_ms}
            if self.server_vad
            else None
        )
        return {
            "object": "realtime.transcription_session",
            "input_audio_format": "pcm16",
            "input_audio_sample_rate": self.rate,
            "input_audio_transcription": {"model": self.model, "language": self.language, "prompt": self.prompt},
            "turn_detection": turns,
        }


def _object(value: Any, name: str) -> dict:
    """value as a JSON object ({} for null or absent); UserError naming the field otherwise."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise UserError(f"{name} must be an object, not {type(value).__name__}")
    return value


def _number(value: Any, name: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise UserError(f"{name} must be a number from {low:g} to {high:g}, not {value!r}")
    return value


def updated_config(config: SessionConfig, session: Any) -> SessionConfig:
    """config with a session.update's fields, in the Realtime beta shape or the GA one (session.audio.input)."""
    if not isinstance(session, dict):
        raise UserError("session.update needs a 'session' object")
    audio = _object(_object(session.get("audio"), "session.audio").get("input"), "session.audio.input")
    transcription = _object(
        audio.get("transcription") or session.get("input_audio_transcription"), "input_audio_transcription"
    )
    fields: dict[str, Any] = {}
    for key in ("model", "language", "prompt"):
        if key in transcription:
            if transcription[key] is not None and not isinstance(transcription[key], str):
                raise UserError(f"input_audio_transcription.{key} must be a string or null")
            fields[key] = transcription[key] or None
    if fields.get("language") and normalize_language(fields["language"]) is None:
        raise UserError(f"language {fields['language']!r} is not a Whisper language (use a code such as zh or en)")
    fields.update(_format_fields(session, audio))
    if "turn_detection" in audio or "turn_detection" in session:
        turns = audio.get("turn_detection", session.get("turn_detection"))
        fields.update(_turn_fields(turns))
    return replace(config, **fields)


def _format_fields(session: dict, audio: dict) -> dict:
    found = audio.get("format")
    if found is not None and not isinstance(found, dict):
        raise UserError("session.audio.input.format must be an object such as {'type': 'audio/pcm', 'rate': 24000}")
    if isinstance(found, dict):  # GA: {"type": "audio/pcm", "rate": 24000}
        kind, rate = found.get("type"), found.get("rate", 24000)
    else:
        kind, rate = session.get("input_audio_format"), session.get("input_audio_sample_rate", 24000)
    if kind is None:
        return {}
    if kind not in ("pcm16", "audio/pcm"):
        raise UserError(f"input_audio_format {kind!r} is not supported: send pcm16 (16-bit mono PCM)")
    if isinstance(rate, bool) or rate not in RATES:
        raise UserError(f"the PCM16 sample rate must be 16000 or 24000, not {rate!r}")
    return {"rate": rate}


def _turn_fields(turns: Any) -> dict:
    if turns is None:
        return {"server_vad": False}
    if not isinstance(turns, dict) or turns.get("type", "server_vad") != "server_vad":
        raise UserError(
            "turn_detection must be null (turns end at input_audio_buffer.commit) or {'type': 'server_vad'}"
        )
    fields: dict[str, Any] = {"server_vad": True}
    if "silence_duration_ms" in turns:
        fields["silence_ms"] = int(_number(turns["silence_duration_ms"], "silence_duration_ms", 100, 10_000))
    if "threshold" in turns:
        fields["threshold"] = float(_number(turns["threshold"], "threshold", 0.0, 1.0))
    return fields


class PCMDecoder:
    """Base64 PCM16 mono at the session's rate into 16 kHz float samples, with PyAV's resampler keeping its state."""

    def __init__(self, rate: int):
        self.rate = rate
        self.resampler = (
            av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE) if rate != SAMPLE_RATE else None
        )

    def __call__(self, pcm: bytes) -> np.ndarray:
        samples = np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], dtype="<i2")
        if self.resampler is None:
            return samples.astype(np.float32) / 32768.0
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        return np.concatenate(
            [out.to_ndarray().reshape(-1) for out in self.resampler.resample(frame)] or [np.zeros(0, np.float32)]
        )


def speech_spans(tail: np.ndarray, threshold: float, silence_ms: int) -> list[tuple[int, int]]:
    """Speech in the tail as (start, end) samples, pauses shorter than silence_ms merged, by Silero VAD (faster-whisper's)."""
    options = VadOptions(threshold=threshold, min_silence_duration_ms=silence_ms, speech_pad_ms=30)
    return [(span["start"], span["end"]) for span in get_speech_timestamps(tail, options)]


def turn_cut(spans: list[tuple[int, int]], length: int, silence_ms: int) -> int | None:
    """Where a turn ends in audio of this length: halfway into the first pause of silence_ms after speech, if any."""
    silence = silence_ms * SAMPLE_RATE // 1000
    if not spans:
        return None
    for (_, end), following in zip(spans, [start for start, _ in spans[1:]] + [length], strict=True):
        if following - end >= silence:
            return end + min(following - end, silence) // 2
    return None


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:16]}"


class RealtimeSession:
    """One WebSocket's state: it reads client events, steps the live engine off the event loop, and sends what it decides.

    run(function) runs blocking work (model loads, decoding) in the server's pool; send(event) writes one event.
    """

    def __init__(
        self,
        send: Callable[[dict], Awaitable[None]],
        run: Callable[[Callable[[], Any]], Awaitable[Any]],
        make_live: Callable[[SessionConfig], LiveTranscriber],
        config: SessionConfig,
        message_limit: int,
    ):
        self.send_event, self.run, self.make_live, self.config = send, run, make_live, config
        self.message_limit = message_limit
        self.received: deque[tuple[float, float]] = deque()  # (time, seconds) of the last minute's audio
        self.incoming: list[np.ndarray] = []
        self.decoder: PCMDecoder | None = None
        self.live: LiveTranscriber | None = None
        self.item: str = _id("item")
        self.previous_item: str | None = None
        self.turn_tail = np.zeros(0, dtype=np.float32)
        self.turn_seconds = 0.0  # audio in this turn, for speech_started / stopped times
        self.turn_start = 0.0  # session seconds where this turn began
        self.heard_speech = False
        self.turn_words: list[TimedWord] = []
        self.commit_requested = False
        self.closed = False
        self.wake = asyncio.Event()

    async def send(self, kind: str, **fields) -> None:
        await self.send_event({"type": kind, "event_id": _id("event"), **fields})

    async def error(self, message: str, code: str = "invalid_request_error", event_id: str | None = None) -> None:
        body = {"type": "invalid_request_error", "code": code, "message": message, "param": None, "event_id": event_id}
        await self.send("error", error=body)

    async def start(self) -> None:
        await self.send("session.created", session=self.config.public())

    async def handle(self, text: str) -> bool:
        """Act on one client message; False when the session must end (the per-minute budget is spent)."""
        try:
            event = json.loads(text)
        except ValueError:
            await self.error("the message is not JSON")
            return True
        if not isinstance(event, dict):
            await self.error("the message must be a JSON object with a 'type'")
            return True
        kind, event_id = event.get("type"), event.get("event_id")
        try:
            if kind in ("session.update", "transcription_session.update"):
                await self._update(event.get("session"))
            elif kind == "input_audio_buffer.append":
                return await self._append(event.get("audio"), event_id)
            elif kind == "input_audio_buffer.commit":
                self.commit_requested = True
                self.wake.set()
            elif kind == "input_audio_buffer.clear":
                self._clear_turn()
                await self.send("input_audio_buffer.cleared")
            else:
                await self.error(f"unknown event type {kind!r}", event_id=event_id)
        except UserError as problem:
            await self.error(str(problem), event_id=event_id)
        return True

    async def _update(self, session) -> None:
        if self.live is not None or self.incoming:
            raise UserError("session.update must come before the first audio of a turn")
        self.config = updated_config(self.config, session)
        self.decoder = None
        await self.send("session.updated", session=self.config.public())

    async def _append(self, audio, event_id) -> bool:
        if not isinstance(audio, str):
            raise UserError("input_audio_buffer.append needs 'audio': base64 PCM16")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise UserError("'audio' is not valid base64") from None
        if len(pcm) > self.message_limit:
            raise UserError(
                f"the audio message is {len(pcm) / 2**20:.1f} MB, over the {self.message_limit / 2**20:g} MB limit"
            )
        now = time.monotonic()
        self.received.append((now, len(pcm) / 2 / self.config.rate))
        while self.received and self.received[0][0] < now - 60:
            self.received.popleft()
        if sum(seconds for _, seconds in self.received) > MINUTE_AUDIO_SECONDS:
            await self.error(
                f"more than {MINUTE_AUDIO_SECONDS:g} s of audio in a minute ({MINUTE_AUDIO_SECONDS / 60:g}x real time)",
                code="rate_limit_exceeded",
                event_id=event_id,
            )
            return False
        self.decoder = self.decoder or PCMDecoder(self.config.rate)
        self.incoming.append(self.decoder(pcm))
        self.wake.set()
        return True

    async def work(self) -> None:
        """Step the engine while audio arrives and end turns; runs until the session closes."""
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while not self.closed and (self.commit_requested or self.waiting_seconds() >= STEP_SECONDS):
                if self.commit_requested:
                    self.commit_requested = False
                    await self._end_turn()
                    continue
                if await self._step():
                    await self._end_turn(at_commit=False)

    def _clear_turn(self) -> None:
        """Forget the turn's audio and the words it committed; the session's clock moves past the audio dropped."""
        self.turn_start += (self.live.seconds if self.live else 0.0) + self.waiting_seconds()
        self.incoming, self.live, self.turn_words = [], None, []
        self.turn_tail, self.turn_seconds, self.heard_speech = np.zeros(0, np.float32), 0.0, False

    def waiting_seconds(self) -> float:
        """Seconds of audio received and not yet stepped."""
        return sum(len(chunk) for chunk in self.incoming) / SAMPLE_RATE

    async def _step(self) -> bool:
        """Decode the turn once and send what it commits; True when server VAD says the turn has ended."""
        samples = self._take_incoming()
        if self.live is None:
            self.live = await self.run(lambda: self.make_live(self.config))
        live = self.live
        if self.config.server_vad:
            samples, ended = await self._listen(samples)
            live.feed(samples)
            if ended:
                return True
            if not self.heard_speech:
                live.drop_audio(keep_seconds=0.5)  # silence before the turn's speech is not decoded
                return False
        else:
            live.feed(samples)
        update = await self.run(live.step)
        if self.live is live:  # not cleared while it decoded
            await self._send_update(update)
        return False

    async def _listen(self, samples: np.ndarray) -> tuple[np.ndarray, bool]:
        """The part of samples in this turn, and whether the turn ends there; the rest waits for the next turn."""
        before = self.turn_tail  # the turn's last seconds before these samples, for the pause that spans both
        tail = np.concatenate([before, samples])
        new_from = len(before)
        config = self.config
        spans = await self.run(lambda: speech_spans(tail, config.threshold, config.silence_ms))
        at = lambda index: int((self.turn_start + self.turn_seconds + (index - new_from) / SAMPLE_RATE) * 1000)  # noqa: E731
        if spans and not self.heard_speech:
            self.heard_speech = True
            await self.send("input_audio_buffer.speech_started", audio_start_ms=at(spans[0][0]), item_id=self.item)
        cut = turn_cut(spans, len(tail), config.silence_ms) if self.heard_speech else None
        if cut is not None:
            keep = min(len(samples), max(0, cut - new_from))
            await self.send("input_audio_buffer.speech_stopped", audio_end_ms=at(cut), item_id=self.item)
            self.incoming.insert(0, samples[keep:])
            samples = samples[:keep]
        self.turn_tail = np.concatenate([before, samples])[-int(VAD_CONTEXT_SECONDS * SAMPLE_RATE) :]
        self.turn_seconds += len(samples) / SAMPLE_RATE
        return samples, cut is not None

    def _take_incoming(self) -> np.ndarray:
        samples = np.concatenate(self.incoming) if self.incoming else np.zeros(0, dtype=np.float32)
        self.incoming = []
        return samples

    async def _end_turn(self, at_commit: bool = True) -> None:
        """Commit the turn: its last words, input_audio_buffer.committed, then the turn's completed transcript.

        At the client's commit the turn takes all the audio received; at a pause found by server VAD, the audio
        after the pause stays for the next turn.
        """
        samples = self._take_incoming() if at_commit else np.zeros(0, dtype=np.float32)
        if self.live is None and not len(samples):
            await self.error("the input audio buffer is empty", code="input_audio_buffer_commit_empty")
            return
        if self.live is None:
            self.live = await self.run(lambda: self.make_live(self.config))
        live = self.live
        live.feed(samples)
        rest = await self.run(live.finish)
        if self.live is not live:  # cleared while it decoded: the turn is gone
            return
        await self._send_update(Update(rest, []))
        await self.send("input_audio_buffer.committed", item_id=self.item, previous_item_id=self.previous_item)
        await self.send(
            "conversation.item.input_audio_transcription.completed",
            item_id=self.item,
            content_index=0,
            transcript=join_words(self.turn_words),
        )
        self.previous_item, self.item = self.item, _id("item")
        self.turn_start += live.seconds
        self.live, self.turn_words = None, []
        self.turn_tail, self.turn_seconds, self.heard_speech = np.zeros(0, np.float32), 0.0, False

    async def _send_update(self, update: Update) -> None:
        if update.committed:
            first = not self.turn_words
            self.turn_words = self.turn_words + update.committed
            text = "".join(w.text for w in update.committed)
            await self.send(
                "conversation.item.input_audio_transcription.delta",
                item_id=self.item,
                content_index=0,
                delta=text.lstrip() if first else text,
                audio_end_ms=int((self.turn_start + update.committed[-1].end) * 1000),  # ours: where its last word ends
            )
        await self.send(
            "conversation.item.input_audio_transcription.tentative",
            item_id=self.item,
            text="".join(w.text for w in update.tentative),
        )

    def close(self) -> None:
        """Free the turn's audio and engine; a step still running in the pool finishes and is dropped."""
        self.closed, self.live, self.incoming = True, None, []
        self.wake.set()


def dump(event: dict) -> str:
    """An event as the JSON text frame the client reads."""
    return json.dumps(event, ensure_ascii=False)

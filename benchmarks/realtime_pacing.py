"""Realtime turns under load: a /v1/realtime session fed steps of random sizes, its text against the file offline.

On a busy machine each decoding of a live turn takes longer, so the next step takes whatever audio came meanwhile:
1 to 6 s instead of 1. The session here is serve's RealtimeSession with server VAD, driven in this process: each
step gets a seeded random length of new audio, so a pacing repeats from run to run, on a minute of recorded English
test prompts of two sentences or more, 0.8 s apart (the live page test's file). The same audio, as PCM16, is read
offline by the same model; the table gives the streamed WER against that reading, and the turns.

    whisper_lora_env/bin/python benchmarks/realtime_pacing.py [--pacings 1-1,1-6:1,1-6:5,2-4:6] [--seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random

import numpy as np
from results import write_result  # benchmarks/ is on the path when a script in it runs

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.audio.encode import pcm16
from whisper_lora.core.metrics import error_rate
from whisper_lora.core.records import Clip, TranscribeOptions
from whisper_lora.data.realspeech import end_to_end, prompts
from whisper_lora.infer.stream import LiveTranscriber
from whisper_lora.infer.transcriber import Transcriber
from whisper_lora.serve.realtime import STEP_SECONDS, RealtimeSession, SessionConfig


def minute_of_speech(seconds: float) -> np.ndarray:
    """Recorded English test prompts of two sentences or more, 0.8 s apart, up to `seconds` of speech, as PCM16."""
    samples, _ = end_to_end([p for p in prompts("en") if p.split == "test"], seconds)
    return pcm16(samples)


def pacing_parts(pacing: str) -> tuple[str, str, str]:
    """LOW-HIGH[:SEED] as its low and high seconds a step and its seed ('' for none)."""
    span, _, seed = pacing.partition(":")
    low, high = span.split("-")
    return low, high, seed


def step_lengths(pacing: str) -> list[int]:
    """Step lengths in samples, drawn uniformly from LOW to HIGH seconds with the pacing's seed (0 by default)."""
    low, high, seed = pacing_parts(pacing)
    draw = random.Random(int(seed or 0))
    return [int(draw.uniform(float(low), float(high)) * SAMPLE_RATE) for _ in range(10_000)]


def label(pacing: str) -> str:
    """A pacing as the table names it: 1 s, or 1 to 6 s, seed 1."""
    low, high, seed = pacing_parts(pacing)
    return (f"{low} s" if low == high else f"{low} to {high} s") + (f", seed {seed}" if seed else "")


class PacedSession:
    """A RealtimeSession in this process, with a counter of the decodings it has running."""

    def __init__(self, transcriber: Transcriber):
        self.events: list[dict] = []
        self.running = 0

        def make_live(config):
            return LiveTranscriber(transcriber, TranscribeOptions(language=config.language))

        self.session = RealtimeSession(
            self._send, self._run, make_live, SessionConfig(language="en", rate=16000), 2**30
        )

    async def _send(self, event: dict) -> None:
        self.events.append(event)

    async def _run(self, function):
        self.running += 1
        try:
            return await asyncio.to_thread(function)
        finally:
            self.running -= 1

    def idle(self) -> bool:
        """Whether the session has taken the audio it can and decodes nothing."""
        session = self.session
        return session.waiting_seconds() < STEP_SECONDS and not self.running and not session.wake.is_set()

    def finished(self) -> bool:
        """Whether the turn that the client's commit ended has been transcribed (a VAD turn's end does not count)."""
        paused = {e["item_id"] for e in self.events if e["type"] == "input_audio_buffer.speech_stopped"}
        return any(e["type"].endswith(".completed") and e["item_id"] not in paused for e in self.events)

    async def play(self, pcm: np.ndarray, lengths: list[int]) -> list[str]:
        """Send pcm a step at a time, commit, and return each turn's transcript."""
        worker = asyncio.create_task(self.session.work())
        at = 0
        for length in lengths:
            if at >= len(pcm):
                break
            audio = base64.b64encode(pcm[at : at + length].tobytes()).decode()
            await self.session.handle(json.dumps({"type": "input_audio_buffer.append", "audio": audio}))
            at += length
            while not self.idle():
                await asyncio.sleep(0.01)
        await self.session.handle(json.dumps({"type": "input_audio_buffer.commit"}))
        while not self.finished():
            await asyncio.sleep(0.05)
        self.session.close()
        worker.cancel()
        return [e["transcript"] for e in self.events if e["type"].endswith(".completed")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pacings", default="1-1,1-6:1,1-6:5,2-4:6", help="LOW-HIGH[:SEED] seconds a step, each")
    parser.add_argument("--seconds", type=float, default=60.0, help="speech in the file")
    parser.add_argument("--result", default="realtime_pacing")
    args = parser.parse_args()
    pcm = minute_of_speech(args.seconds)
    transcriber = Transcriber(None)
    heard = Clip("file", pcm.astype(np.float32) / 32768)
    offline = transcriber.clips([heard], TranscribeOptions(language="en"))[0].text
    rows = []
    for pacing in args.pacings.split(","):
        turns = asyncio.run(PacedSession(transcriber).play(pcm, step_lengths(pacing)))
        live = " ".join(t for t in turns if t)
        wer = error_rate([offline], [live], "wer", "en")
        print(f"{pacing}: {len(turns)} turns, WER against offline {wer:.1%}", flush=True)
        rows.append([label(pacing), len(turns), f"{wer:.1%}"])
    table = {
        "title": "Realtime turns under load, steps of random length",
        "columns": ["step length", "turns", "WER against offline"],
        "rows": rows,
    }
    write_result(
        args.result,
        table,
        f"{len(pcm) / SAMPLE_RATE:.0f} s of recorded English prompts; base int8, ct2; offline: the same PCM16 in one call",
    )


if __name__ == "__main__":
    main()

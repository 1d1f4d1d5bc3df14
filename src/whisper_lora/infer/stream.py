"""Live transcription: LocalAgreement-2 over a growing audio buffer (Macháček et al. 2023); committed text never changes."""

from __future__ import annotations

import re
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from whisper_lora.audio.decode import SAMPLE_RATE
from whisper_lora.core.errors import UserError
from whisper_lora.core.models import trained_objective
from whisper_lora.core.records import Clip, Segment, TranscribeOptions, Word
from whisper_lora.infer.backends.ct2 import repeats_itself

SENTENCE_END = (".", "?", "!", "。", "？", "！", "…")
PROMPT_CHARS = 200  # committed text that steers the next decoding, as whisper_streaming keeps it
LOOP_NGRAM = 3  # a looping live decoding is redone with no run of this many tokens allowed twice
PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"  # faster-whisper's: marks alone are not words to judge


@dataclass(frozen=True)
class TimedWord:
    """A word with its start and end in the session's seconds; its text keeps the space the model put before it."""

    start: float
    end: float
    text: str


@dataclass
class Update:
    """What one step decided: the words committed now, and the tentative tail that may still change."""

    committed: list[TimedWord]
    tentative: list[TimedWord]


def join_words(words: Iterable[TimedWord]) -> str:
    """The words as text: faster-whisper's words carry their own leading spaces, so they join with nothing."""
    return "".join(word.text for word in words).strip()


def anomaly(word: Word) -> float:
    """How unlike speech a word is: improbable, spoken in under 0.133 s, or stretched past 2 s (faster-whisper's score)."""
    duration = word.end - word.start
    return (word.probability < 0.15) + max(0.0, 0.133 - duration) * 15 + max(0.0, duration - 2.0)


def hallucinated(segment: Segment) -> bool:
    """Whether a segment's first 8 words are anomalous enough to be invented, as faster-whisper judges one."""
    words = [w for w in segment.words or [] if w.word.strip() not in PUNCTUATION][:8]
    score = sum(anomaly(w) for w in words)
    return bool(words) and (score >= 3 or score + 0.01 >= len(words))


def spoken_segments(segments: list[Segment]) -> list[Segment]:
    """The segments without the invented ones that end the buffer.

    Past the speech at a buffer's end, Whisper may repeat what it heard earlier: words of probability near 0,
    squeezed into the last frame. A live decoding commits them at the turn's end, where nothing decodes the
    stretch again.
    """
    end = len(segments)
    while end and hallucinated(segments[end - 1]):
        end -= 1
    return segments[:end]


def _key(text: str) -> str:
    return re.sub(r"[^\w]", "", text.lower())


class LocalAgreement:
    """Commits the longest prefix on which two consecutive hypotheses agree (LocalAgreement-2)."""

    def __init__(self):
        self.pending: list[TimedWord] = []  # the previous hypothesis, past what is committed
        self.committed_end = 0.0
        self.recent: deque[TimedWord] = deque(maxlen=5)

    def update(self, words: list[TimedWord]) -> list[TimedWord]:
        """Words newly committed by this hypothesis of the buffer."""
        words = self._unseen(words)
        agreed = 0
        while agreed < min(len(words), len(self.pending)) and _key(words[agreed].text) == _key(
            self.pending[agreed].text
        ):
            agreed += 1
        committed, self.pending = words[:agreed], words[agreed:]
        if committed:
            self.committed_end = committed[-1].end
            self.recent.extend(committed)
        return committed

    def flush(self) -> list[TimedWord]:
        """Commit the tentative tail, at the end of the stream or of a turn."""
        rest, self.pending = self.pending, []
        if rest:
            self.committed_end = rest[-1].end
            self.recent.extend(rest)
        return rest

    def _unseen(self, words: list[TimedWord]) -> list[TimedWord]:
        # The buffer still holds committed audio, and the model reads it again: drop the words before the
        # committed end, then a 1-5 word run at the start that repeats the committed tail.
        words = [w for w in words if w.start > self.committed_end - 0.1]
        if words and abs(words[0].start - self.committed_end) < 1.0:
            tail = [_key(w.text) for w in self.recent]
            for n in range(min(5, len(tail), len(words)), 0, -1):
                if tail[-n:] == [_key(w.text) for w in words[:n]]:
                    return words[n:]
        return words


class LiveTranscriber:
    """Audio in as it arrives, committed words out: each step decodes the buffer and keeps what two decodings agree on.

    The buffer is cut after a committed sentence end once it passes trim_seconds (or after any committed word
    past max_buffer_seconds), so memory and decoding time stay bounded however long the session runs.
    """

    def __init__(
        self,
        transcriber,
        options: TranscribeOptions | None = None,
        trim_seconds: float = 15.0,
        max_buffer_seconds: float = 25.0,
    ):
        if transcriber.backend != "ct2":
            raise UserError("live transcription needs word times, which the ct2 backend gives: use --backend ct2")
        options = options or TranscribeOptions()
        self.transcriber, self.user_prompt = transcriber, options.initial_prompt
        short = options.short_window or trained_objective(transcriber.model_path) == "short_context"
        self.options = replace(options, word_timestamps=True, return_timestamps=True, short_window=short)
        self.trim_seconds, self.max_buffer_seconds = trim_seconds, max_buffer_seconds
        self.audio = np.zeros(0, dtype=np.float32)
        self.offset = 0.0  # session seconds at the buffer's start
        self.received = 0  # samples fed in all
        self.undecoded = False  # audio came since the last decoding
        self.agreement = LocalAgreement()
        self.before_buffer: deque[str] = deque(maxlen=100)  # committed words already cut from the buffer
        self.in_buffer: list[TimedWord] = []  # committed words still in it

    @property
    def seconds(self) -> float:
        """Session seconds received so far."""
        return self.received / SAMPLE_RATE

    def feed(self, samples: np.ndarray) -> None:
        """Append 16 kHz mono float samples."""
        self.audio = np.concatenate([self.audio, np.asarray(samples, dtype=np.float32)])
        self.received += len(samples)
        self.undecoded = self.undecoded or len(samples) > 0

    def drop_audio(self, keep_seconds: float) -> None:
        """Forget all but the buffer's last keep_seconds (silence before any speech); the session's clock runs on."""
        extra = len(self.audio) - int(keep_seconds * SAMPLE_RATE)
        if extra > 0 and not self.in_buffer and not self.agreement.pending:
            self.audio = self.audio[extra:]
            self.offset += extra / SAMPLE_RATE

    def step(self) -> Update:
        """Decode the buffer once; commit what this decoding and the previous one agree on."""
        if len(self.audio) < SAMPLE_RATE // 2:
            return Update([], self.agreement.pending)
        committed = self.agreement.update(self._decode())
        self.in_buffer += committed
        self._trim()
        return Update(committed, self.agreement.pending)

    def finish(self) -> list[TimedWord]:
        """Commit the tentative tail and empty the buffer: the end of the stream, or of a turn."""
        rest = self.agreement.update(self._decode()) if self.undecoded and len(self.audio) >= SAMPLE_RATE // 10 else []
        rest += self.agreement.flush()  # the last decoding read the most audio: its tail stands
        self.before_buffer.extend(w.text for w in self.in_buffer + rest)
        self.in_buffer, self.offset = [], self.seconds
        self.audio = np.zeros(0, dtype=np.float32)
        return rest

    def _decode(self) -> list[TimedWord]:
        """The buffer's words at the first temperature; where those repeat themselves, decoded again without repeats.

        A loop must not reach the text: two greedy decodings loop alike, and agree. It is decoded once more with no
        3-token run allowed twice (where --no_repeat_ngram_size is not set already), then, if it still loops, at the
        next temperatures, which cost a decoding each. The fallback for unlikely text is left out for speed: it took
        p95 from 2.8 to 7.4 s.
        """
        self.undecoded = False
        options = replace(self.options, initial_prompt=self._prompt())
        first, rest = replace(options, temperature=options.temperature[:1]), options.temperature[1:]
        transcript = self._heard(first)
        if not options.no_repeat_ngram_size and repeats_itself(transcript.text, options):
            transcript = self._heard(replace(first, no_repeat_ngram_size=LOOP_NGRAM))
        if rest and repeats_itself(transcript.text, options):
            transcript = self._heard(replace(options, temperature=rest))
        return [
            TimedWord(round(self.offset + w.start, 2), round(self.offset + w.end, 2), w.word)
            for segment in spoken_segments(transcript.segments)
            for w in segment.words or []
        ]

    def _heard(self, options: TranscribeOptions):
        return self.transcriber.clips([Clip("live", self.audio)], options)[0]

    def _prompt(self) -> str | None:
        said = "".join(self.before_buffer).strip()[-PROMPT_CHARS:]
        text = " ".join(part for part in (self.user_prompt, said) if part)
        return text or None

    def _trim(self) -> None:
        length = len(self.audio) / SAMPLE_RATE
        if length < self.trim_seconds:
            return
        ends = [w for w in self.in_buffer if w.text.rstrip().endswith(SENTENCE_END)]
        cut = ends[-1].end if ends else None
        if cut is None and length > self.max_buffer_seconds:
            # No sentence end to cut at: after any committed word, else (no speech at all) keep the last seconds.
            cut = self.in_buffer[-1].end if self.in_buffer else (None if self.agreement.pending else self.seconds - 2.0)
        if cut is not None and cut > self.offset:
            self.before_buffer.extend(w.text for w in self.in_buffer if w.end <= cut)
            self.in_buffer = [w for w in self.in_buffer if w.end > cut]
            self.audio = self.audio[int((cut - self.offset) * SAMPLE_RATE) :]
            self.offset = cut


@dataclass(frozen=True)
class Commit:
    """A committed word and when it was committed, in the stream's clock (seconds of audio that had arrived)."""

    word: TimedWord
    committed_at: float

    @property
    def latency(self) -> float:
        """Seconds from the word's end in the audio to its commit."""
        return round(self.committed_at - self.word.end, 3)


def play(
    live: LiveTranscriber,
    samples: np.ndarray,
    speed: float = 1.0,
    chunk_seconds: float = 1.0,
    on_update: Callable[[Update, float], None] | None = None,
) -> list[Commit]:
    """Play samples into live at speed x real time (0: as fast as it decodes), a step per chunk_seconds at least.

    At speed > 0 each step takes all the audio that has arrived by then, as a microphone would deliver it, and
    the clock is the wall time; at speed 0 the clock is the audio fed so far.
    """
    commits: list[Commit] = []
    started, fed, step = time.monotonic(), 0, max(1, int(chunk_seconds * SAMPLE_RATE))

    def elapsed() -> float:
        return (time.monotonic() - started) * speed

    def clock() -> float:
        return round(elapsed() if speed > 0 else live.seconds, 3)

    while fed < len(samples):
        if speed > 0:
            time.sleep(max(0.0, (fed + step) / SAMPLE_RATE / speed - elapsed() / speed))
            upto = min(len(samples), max(fed + 1, int(elapsed() * SAMPLE_RATE)))
        else:
            upto = min(len(samples), fed + step)
        live.feed(samples[fed:upto])
        fed = upto
        _record(live.step(), clock(), commits, on_update)
    rest = live.finish()
    _record(Update(rest, []), clock(), commits, on_update)
    return commits


def play_chunks(
    live: LiveTranscriber, chunks: Iterable[np.ndarray], on_update: Callable[[Update, float], None] | None = None
) -> list[Commit]:
    """Feed chunks as their source delivers them (stdin PCM), a step after each; the clock is the audio fed so far."""
    commits: list[Commit] = []
    for chunk in chunks:
        live.feed(chunk)
        _record(live.step(), live.seconds, commits, on_update)
    rest = live.finish()
    _record(Update(rest, []), live.seconds, commits, on_update)
    return commits


def _record(update: Update, now: float, commits: list[Commit], on_update) -> None:
    commits.extend(Commit(word, now) for word in update.committed)
    if on_update is not None:
        on_update(update, now)


def pcm_chunks(stream, seconds: float) -> Iterator[np.ndarray]:
    """16-bit little-endian 16 kHz mono PCM from a binary stream (stdin), in pieces of the given length."""
    size = 2 * max(1, int(seconds * SAMPLE_RATE))
    while data := stream.read(size):
        usable = len(data) - len(data) % 2
        yield np.frombuffer(data[:usable], dtype="<i2").astype(np.float32) / 32768.0


class CommitPrinter:
    """Writes newly committed text as it comes, unbuffered, without the space before the first word."""

    def __init__(self, out=None):
        self.out, self.started = out or sys.stdout, False

    def __call__(self, update: Update, now: float) -> None:
        text = "".join(word.text for word in update.committed)
        if not self.started:
            text = text.lstrip()
        if text:
            self.out.write(text)
            self.out.flush()
            self.started = True

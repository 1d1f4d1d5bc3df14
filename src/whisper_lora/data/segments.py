"""Long recordings with timed segments (SRT, WebVTT or Whisper-Finetune's sentences): cues read, checked and
planned into training windows of whole consecutive segments."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import srt
import webvtt
from webvtt.errors import MalformedFileError

from whisper_lora.core.errors import UserError
from whisper_lora.core.files import decode_utf8

MARKUP = re.compile(r"<[^>]*>|\{\\[^}]*\}")  # SRT markup: HTML-like tags, ASS overrides such as {\an8}
MARGIN = 0.5  # seconds of audio kept before a window's first segment and after its last, when no cue is there
END_TOLERANCE = 0.1  # seconds a cue may run past the audio's end (rounded subtitle times) before it is refused
WINDOW_TOKENS = 440  # a window's timestamped label, prompt included, stays under the decoder's 448 positions
PROMPT_TOKENS = 4  # start, language, task and end of text


class SubtitleError(UserError):
    """A subtitle file that cannot be read: missing, not UTF-8, or not SRT or WebVTT."""


@dataclass(frozen=True)
class Cue:
    """One timed segment: its number in the subtitle file (or the sentences list, from 1), times in seconds, text."""

    number: int
    start: float
    end: float
    text: str

    def shifted(self, offset: float) -> Cue:
        return Cue(self.number, round(self.start - offset, 3), round(self.end - offset, 3), self.text)


@dataclass(frozen=True)
class Window:
    """A planned training window: a span of the recording and the cues inside it, timed from the span's start."""

    start: float
    end: float
    cues: tuple[Cue, ...]


def read_subtitles(path: Path, error_class: type[UserError] = SubtitleError) -> list[Cue]:
    """Every cue of an SRT or WebVTT file (by suffix), markup removed and whitespace folded; error_class if unreadable."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error_class(f"{path}: subtitle file not found") from None
    except OSError as error:
        raise error_class(f"{path}: cannot read it ({error.strerror or error})") from None
    text = decode_utf8(raw, path, error_class).replace("\r\n", "\n").replace("\r", "\n")
    cues = _srt(text, path, error_class) if path.suffix.lower() == ".srt" else _vtt(text, path, error_class)
    return [Cue(number, start, end, " ".join(MARKUP.sub("", words).split())) for number, start, end, words in cues]


def _srt(text: str, path: Path, error_class: type[UserError]) -> list[tuple[int, float, float, str]]:
    try:
        return [(cue.index, cue.start.total_seconds(), cue.end.total_seconds(), cue.content) for cue in srt.parse(text)]
    except srt.SRTParseError as error:
        raise error_class(f"{path}: not a valid SRT file ({error})") from None


def _vtt(text: str, path: Path, error_class: type[UserError]) -> list[tuple[int, float, float, str]]:
    try:
        captions = webvtt.WebVTT.from_buffer(io.StringIO(text)).captions
    except MalformedFileError as error:
        raise error_class(f"{path}: not a valid WebVTT file ({error})") from None
    return [
        (number, c.start_time.in_milliseconds() / 1000, c.end_time.in_milliseconds() / 1000, c.text)
        for number, c in enumerate(captions, start=1)
    ]


def sentence_cues(sentences) -> tuple[list[Cue], str | None]:
    """Cues from Whisper-Finetune's "sentences": [{"start", "end", "text"}, ...]; (cues, why the list is unusable)."""
    if not isinstance(sentences, list) or not sentences:
        return [], f"'sentences' must be a non-empty list of {{start, end, text}}, got {sentences!r:.60}"
    cues = []
    for number, sentence in enumerate(sentences, start=1):
        if not isinstance(sentence, dict):
            return [], f"sentence {number}: expected an object with start, end and text"
        times = [sentence.get("start"), sentence.get("end")]
        found = [float(v) for v in times if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0]
        text = sentence.get("text")
        if len(found) < 2 or not isinstance(text, str):
            return [], f"sentence {number}: needs 'start' and 'end' in seconds (>= 0) and a 'text' string"
        cues.append(Cue(number, found[0], found[1], " ".join(text.split())))
    return cues, None


def cue_problems(
    cues: list[Cue], seconds: float, max_seconds: float, count_tokens: Callable[[str], int], name: str = "cue"
) -> dict:
    """Why each unusable cue is skipped, by cue number: no text, backwards, too long, past the end, or overlapping.

    name is what the reasons call another cue ("sentence" for Whisper-Finetune's sentences).
    """
    problems: dict[int, str] = {}
    for cue in cues:
        if cue.end <= cue.start:
            problems[cue.number] = f"ends at {cue.end:.3f} s, not after its start {cue.start:.3f} s"
        elif not cue.text:
            problems[cue.number] = "no text"
        elif cue.start >= seconds or cue.end > seconds + END_TOLERANCE:
            problems[cue.number] = f"ends at {cue.end:.2f} s, past the audio's end at {seconds:.2f} s"
        elif cue.end - cue.start > max_seconds:
            problems[cue.number] = f"is {cue.end - cue.start:.1f} s long, over the {max_seconds:g} s window"
        elif PROMPT_TOKENS + count_tokens(cue.text) + 2 > WINDOW_TOKENS:
            problems[cue.number] = f"its text is over the {WINDOW_TOKENS} tokens a window's label may hold"
    timed = sorted((cue for cue in cues if cue.end > cue.start), key=lambda cue: (cue.start, cue.end))
    for before, cue in pairwise(timed):
        if cue.start < before.end:
            problems.setdefault(
                cue.number, f"overlaps {name} {before.number} (starts at {cue.start:.2f} s, before it ends)"
            )
            problems.setdefault(before.number, f"overlaps {name} {cue.number}, which starts at {cue.start:.2f} s")
    return problems


def plan_windows(
    cues: list[Cue], seconds: float, max_seconds: float, count_tokens: Callable[[str], int], name: str = "cue"
) -> tuple[list[Window], dict[int, str]]:
    """Usable cues grouped into windows of up to max_seconds of consecutive whole segments; and the skipped cues.

    A window never spans a skipped cue (its speech would go unlabelled), holds at most WINDOW_TOKENS of
    timestamped label, and takes up to MARGIN of audio on each side, but never a neighbouring cue's audio.
    """
    problems = cue_problems(cues, seconds, max_seconds, count_tokens, name)
    timed = sorted((cue for cue in cues if cue.end > cue.start), key=lambda cue: (cue.start, cue.end))
    groups: list[list[Cue]] = [[]]
    tokens = PROMPT_TOKENS
    for cue in timed:
        size = count_tokens(cue.text) + 2
        group = groups[-1]
        if cue.number in problems:
            if group:
                groups.append([])
                tokens = PROMPT_TOKENS
            continue
        if group and (cue.end - group[0].start > max_seconds - 2 * MARGIN or tokens + size > WINDOW_TOKENS):
            groups.append([])
            tokens = PROMPT_TOKENS
        groups[-1].append(cue)
        tokens += size
    return [_window(group, timed, seconds) for group in groups if group], problems


def _window(group: list[Cue], timed: list[Cue], seconds: float) -> Window:
    """The span around a group of cues: MARGIN each side, stopped by the nearest other cue or the audio's ends."""
    first, last = group[0], group[-1]
    before = max((cue.end for cue in timed if cue.end <= first.start and cue is not first), default=0.0)
    after = min((cue.start for cue in timed if cue.start >= last.end and cue is not last), default=seconds)
    start = max(before, first.start - MARGIN, 0.0)
    end = min(after, last.end + MARGIN, seconds)
    return Window(round(start, 3), round(end, 3), tuple(cue.shifted(start) for cue in group))

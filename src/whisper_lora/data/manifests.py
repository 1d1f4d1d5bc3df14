"""Read JSON / JSONL manifests into rows, resolve their audio paths, and check every row."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path
from typing import Any

from whisper_lora.audio.decode import AudioError, decode_audio, duration_seconds
from whisper_lora.core.errors import UserError
from whisper_lora.core.files import decode_utf8
from whisper_lora.core.languages import normalize_language, traits
from whisper_lora.data.segments import Cue, SubtitleError, plan_windows, read_subtitles, sentence_cues

MAX_AUDIO_SECONDS = 30.0  # Whisper's window; longer rows would be cut off in training
MAX_LABEL_TOKENS = 448  # Whisper's decoder positions
TIMESTAMP_LABEL_TOKENS = 2  # a timestamped training label adds a start and an end token
DURATION_BINS = (0, 2, 5, 10, 15, 20, 25, 30)  # seconds
TEXT_BINS = (0, 10, 20, 50, 100, 200)  # characters


class ManifestError(UserError):
    """A manifest that cannot be read at all: missing, not UTF-8, or not valid JSON."""


@dataclass(frozen=True)
class Row:
    """One manifest entry, with its audio path resolved. `number` counts from 1 within its manifest."""

    manifest: str
    number: int
    audio_path: str
    text: str
    language: str | None = None
    start: float | None = None
    end: float | None = None
    no_speech: bool = False  # the row's audio holds no speech; its text is empty
    # Timed segments: a recording's cues until check_rows plans it into windows, then a window's, from its start.
    segments: tuple[Cue, ...] | None = None
    window: int | None = None  # which of its recording's planned windows this row is, from 1
    subtitles: str | None = None  # the subtitle file the segments came from

    def where(self) -> str:
        if self.window is None:
            return f"{self.manifest} row {self.number}"
        return f"{self.manifest} row {self.number} window {self.window} ({self.start:.1f}-{self.end:.1f} s)"


@dataclass(frozen=True)
class Problem:
    """A row that cannot be used, and why."""

    manifest: str
    number: int
    audio_path: str
    kind: str  # one of KINDS
    reason: str

    def __str__(self) -> str:
        return f"{self.manifest} row {self.number}: {self.audio_path or '-'}: {self.reason}"


KINDS = (
    "bad row",
    "missing",
    "undecodable",
    "zero length",
    "too long",
    "empty text",
    "label too long",
    "duplicate",
    "bad cue",  # one segment of a recording, skipped while the rest of it trains
)


def _decode_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except IsADirectoryError:
        raise ManifestError(f"{path}: is a directory, not a manifest file") from None
    return decode_utf8(raw, path, ManifestError)


def _parse_entries(path: Path, text: str) -> list[tuple[int, object]]:
    """(row number, parsed value) pairs from a JSON list or from JSON Lines."""
    if text.lstrip().startswith("["):
        try:
            return list(enumerate(json.loads(text), start=1))
        except json.JSONDecodeError as error:
            raise ManifestError(
                f"{path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
            ) from None
    entries: list = []
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append((len(entries) + 1, json.loads(line)))
        except json.JSONDecodeError as error:
            raise ManifestError(
                f"{path}: invalid JSON at line {line_number} column {error.colno}: {error.msg}"
            ) from None
    if not entries and text.strip():
        raise ManifestError(f"{path}: no JSON rows found")
    return entries


def resolve_audio_path(raw: str, manifest_dir: Path) -> tuple[str, str | None]:
    """Resolve a relative path against the manifest's folder, then the working directory; (path, problem)."""
    path = Path(raw).expanduser()
    if path.is_absolute():
        return str(path), None if path.exists() else "audio file not found"
    beside, here = manifest_dir / path, Path.cwd() / path
    for candidate in (beside, here):
        if candidate.exists():
            return os.path.normpath(candidate), None
    return os.path.normpath(beside), f"audio file not found (looked in {beside} and {here})"


def _number(value, key: str) -> tuple[float | None, str | None]:
    if value is None:
        return None, None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        return None, f"'{key}' must be a number of seconds >= 0, got {value!r}"
    return float(value), None


def _row(path: Path, number: int, entry) -> Row | Problem:
    """Validate the shape of one entry. Whisper-Finetune's {"audio": {"path"}, "sentence"} is accepted too."""
    where: dict[str, Any] = dict(manifest=str(path), number=number)
    if not isinstance(entry, dict):
        return Problem(
            **where, audio_path="", kind="bad row", reason=f"expected a JSON object, got {type(entry).__name__}"
        )
    audio, text = entry.get("audio_path"), entry.get("text", entry.get("sentence"))
    if audio is None and isinstance(entry.get("audio"), dict):
        audio = entry["audio"].get("path")
    no_speech = entry.get("no_speech", False)
    timed = "subtitles" in entry or "sentences" in entry
    if (no_speech is True or timed) and text is None:
        text = ""
    missing = [key for key, value in (("audio_path", audio), ("text", text)) if value is None]
    if missing:
        reason = f"missing key {', '.join(map(repr, missing))}"
        return Problem(**where, audio_path=str(audio or ""), kind="bad row", reason=reason)
    if not isinstance(audio, str) or not isinstance(text, str):
        return Problem(**where, audio_path=str(audio), kind="bad row", reason="'audio_path' and 'text' must be strings")
    resolved, not_found = resolve_audio_path(audio, path.parent)
    if not_found:
        return Problem(**where, audio_path=resolved, kind="missing", reason=not_found)
    problem = None
    start, start_problem = _number(entry.get("start"), "start")
    end, end_problem = _number(entry.get("end"), "end")
    language = entry.get("language")
    if language is not None and (not isinstance(language, str) or normalize_language(language) is None):
        problem = problem or f"unknown language {language!r} (use a Whisper code such as 'zh' or 'en')"
    if start is not None and end is not None and end <= start:
        problem = problem or f"'end' ({end}) must be after 'start' ({start})"
    problem = problem or start_problem or end_problem or _no_speech_problem(no_speech, text)
    segments, subtitles = None, None
    if not problem and timed:
        segments, subtitles, problem = _segments(entry, path.parent, start, end)
    if problem:
        return Problem(**where, audio_path=resolved, kind="bad row", reason=problem)
    return Row(
        **where,
        audio_path=resolved,
        text=text,
        language=language and normalize_language(language),
        start=start,
        end=end,
        no_speech=no_speech,
        segments=segments,
        subtitles=subtitles,
    )


def _segments(entry: dict, folder: Path, start, end) -> tuple[tuple[Cue, ...] | None, str | None, str | None]:
    """A recording row's cues from "subtitles" (a file beside the manifest) or "sentences"; (cues, file, problem)."""
    if "subtitles" in entry and "sentences" in entry:
        return None, None, "give 'subtitles' or 'sentences', not both"
    if start is not None or end is not None:
        return None, None, "'start'/'end' do not combine with timed segments; the segments' own times place them"
    if "sentences" in entry:
        cues, problem = sentence_cues(entry["sentences"])
        return tuple(cues), None, problem
    raw = entry["subtitles"]
    if not isinstance(raw, str) or Path(raw).suffix.lower() not in (".srt", ".vtt"):
        return None, None, f"'subtitles' must name an .srt or .vtt file, got {raw!r}"
    found, not_found = resolve_audio_path(raw, folder)
    if not_found:
        return None, found, not_found.replace("audio file", "subtitle file")
    try:
        return tuple(read_subtitles(Path(found))), found, None
    except SubtitleError as error:
        return None, found, str(error)


def _no_speech_problem(no_speech, text: str) -> str | None:
    if not isinstance(no_speech, bool):
        return f"'no_speech' must be true or false, got {no_speech!r}"
    if no_speech and text.strip():
        return f"'no_speech' is true but the text is {text[:40]!r} (a row without speech has empty text)"
    return None


def read_manifest(path: str | Path) -> tuple[list[Row], list[Problem]]:
    """Read a JSON list or JSONL manifest into good rows and shape problems; ManifestError if unreadable."""
    path = Path(path)
    parsed = [_row(path, number, entry) for number, entry in _parse_entries(path, _decode_text(path))]
    return [r for r in parsed if isinstance(r, Row)], [p for p in parsed if isinstance(p, Problem)]


@dataclass
class Report:
    """The outcome of checking manifests: usable rows with their durations, and problems.

    A recording with timed segments counts as one row in `recordings` and adds one usable row per window.
    """

    ok: list[tuple[Row, float]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    cue_problems: list[Problem] = field(default_factory=list)  # skipped segments of otherwise usable recordings
    recordings: list[tuple[Row, float, int, int]] = field(default_factory=list)  # (row, seconds, windows, skipped)

    @property
    def rows(self) -> list[Row]:
        return [row for row, _ in self.ok]

    @property
    def usable_rows(self) -> int:
        """Manifest rows with something to train: a recording counts once, however many windows it gives."""
        return len({(row.manifest, row.number) for row, _ in self.ok})

    @property
    def total_seconds(self) -> float:
        return sum(seconds for _, seconds in self.ok)

    @property
    def without_speech(self) -> int:
        """Usable rows with empty text, which training labels as Whisper labels non-speech."""
        return sum(not row.text.strip() for row, _ in self.ok)

    def summary(self) -> str:
        """One line: how many rows are usable and why the others are not."""
        total = self.usable_rows + len(self.problems)
        kinds = Counter(problem.kind for problem in self.problems)
        reasons = ", ".join(f"{n} {kind}" for kind, n in kinds.most_common())
        silent = f", {self.without_speech} without speech" if self.without_speech else ""
        line = f"{self.usable_rows} of {total} rows usable ({self.total_seconds / 3600:.2f} h of audio{silent})"
        if self.recordings:
            windows = sum(count for *_, count, _ in self.recordings)
            line += f"; {len(self.recordings)} recordings planned into {windows} windows"
        line += f"; {len(self.problems)} skipped: {reasons}" if self.problems else ""
        return line + (f"; {len(self.cue_problems)} cues skipped" if self.cue_problems else "")


Verdict = tuple[str, str] | None  # (kind, reason), or None for a usable row


def _audio_problem(row: Row, max_seconds: float) -> tuple[float, Verdict]:
    try:
        seconds = duration_seconds(decode_audio(row.audio_path, row.start, row.end))
    except AudioError as error:
        kind = "missing" if "not found" in error.reason else "undecodable"
        return 0.0, ("zero length" if "0 bytes" in error.reason else kind, error.reason)
    if seconds == 0:
        return 0.0, ("zero length", "no audio samples in the file or the start/end span")
    if seconds > max_seconds and row.segments is None:
        return seconds, ("too long", f"audio is {seconds:.1f} s, over {max_seconds:g} s (split it or give start/end)")
    return seconds, None


def _text_problem(row: Row, tokenizer, allow_empty_text: bool) -> Verdict:
    if row.segments is not None:
        return None  # each cue is checked when its recording is planned
    if not row.text.strip():
        if row.no_speech or allow_empty_text:
            return None
        return "empty text", 'empty text (a row without speech says "no_speech": true, or pass --allow_empty_text)'
    if tokenizer is not None:
        tokens = len(tokenizer(row.text).input_ids) + TIMESTAMP_LABEL_TOKENS
        if tokens > MAX_LABEL_TOKENS:
            return "label too long", f"label is {tokens} tokens, over Whisper's {MAX_LABEL_TOKENS}"
    return None


def token_counter(tokenizer) -> Callable[[str], int]:
    """How many label tokens a segment's text takes (its characters when there is no tokenizer)."""
    if tokenizer is None:
        return len
    return lambda text: len(tokenizer(" " + text, add_special_tokens=False).input_ids)


def windows_of(
    row: Row, seconds: float, tokenizer, max_seconds: float
) -> tuple[list[tuple[Row, float]], list[Problem]]:
    """A recording row planned into window rows (with their seconds), and one problem per skipped cue."""
    assert row.segments is not None
    name = "cue" if row.subtitles else "sentence"
    windows, skipped = plan_windows(list(row.segments), seconds, max_seconds, token_counter(tokenizer), name)
    cue = f"{Path(row.subtitles).name} cue" if row.subtitles else "sentence"
    problems = [
        Problem(row.manifest, row.number, row.audio_path, "bad cue", f"{cue} {number}: {reason}")
        for number, reason in sorted(skipped.items())
    ]
    join = " " if traits(row.language).spaces else ""
    planned = [
        (
            replace(
                row,
                text=join.join(cue.text for cue in window.cues),
                start=window.start,
                end=window.end,
                segments=window.cues,
                window=number,
            ),
            window.end - window.start,
        )
        for number, window in enumerate(windows, start=1)
    ]
    return planned, problems


def check_rows(
    rows: list[Row],
    tokenizer=None,
    max_seconds: float = MAX_AUDIO_SECONDS,
    workers: int = 4,
    allow_empty_text: bool = False,
) -> Report:
    """Decode every row's audio and check its text; duplicates of an earlier row's audio span are problems.

    Empty text is a problem unless the row says "no_speech": true or allow_empty_text is set. A recording with
    timed segments may be of any length: it is planned into windows of up to max_seconds, each a row.
    """
    report = Report()
    first_seen: dict[tuple, Row] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        audio = pool.map(lambda row: _audio_problem(row, max_seconds), rows)
        for row, (seconds, audio_problem) in zip(rows, audio, strict=True):
            key = (row.audio_path, row.start, row.end)
            earlier = first_seen.setdefault(key, row)
            duplicate = ("duplicate", f"same audio as {earlier.where()}") if earlier is not row else None
            problem = duplicate or audio_problem or _text_problem(row, tokenizer, allow_empty_text)
            if problem:
                report.problems.append(Problem(row.manifest, row.number, row.audio_path, *problem))
            elif row.segments is not None:
                _add_recording(report, row, seconds, tokenizer, max_seconds)
            else:
                report.ok.append((row, seconds))
    return report


def _add_recording(report: Report, row: Row, seconds: float, tokenizer, max_seconds: float) -> None:
    planned, skipped = windows_of(row, seconds, tokenizer, max_seconds)
    report.cue_problems += skipped
    report.recordings.append((row, seconds, len(planned), len(skipped)))
    if planned:
        report.ok += planned
    else:
        reason = f"no usable cue ({len(skipped)} skipped)" if skipped else "no cues"
        source = f" in {row.subtitles}" if row.subtitles else " in 'sentences'"
        report.problems.append(Problem(row.manifest, row.number, row.audio_path, "bad row", reason + source))


def check_manifests(paths, tokenizer=None, **check) -> Report:
    """Read and check several manifests into one report (check: check_rows' options); ManifestError if unreadable."""
    rows, problems = [], []
    for path in paths:
        good, bad = read_manifest(path)
        rows += good
        problems += bad
    report = check_rows(rows, tokenizer, **check)
    report.problems = sorted(problems + report.problems, key=lambda p: (p.manifest, p.number))
    report.cue_problems.sort(key=lambda p: (p.manifest, p.number))
    return report


class DataError(UserError):
    """Training data with no usable row, or with bad rows under --strict."""


def usable_rows(
    paths, tokenizer=None, strict: bool = False, log=print, list_problems: bool = False, **check
) -> list[Row]:
    """The rows training may use: bad ones skipped with a one-line summary (and each named), or refused when strict."""
    return usable_report(paths, tokenizer, strict, log, list_problems, **check).rows


def usable_report(
    paths, tokenizer=None, strict: bool = False, log=print, list_problems: bool = False, **check
) -> Report:
    """usable_rows' report: the usable rows with their durations."""
    report = check_manifests(paths, tokenizer, **check)
    log(report.summary())
    bad = report.problems + report.cue_problems
    for problem in bad if list_problems and not strict else []:
        log(f"  skipped {problem}")
    if bad and strict:
        listed = "\n".join(f"  {problem}" for problem in bad[:20])
        more = f"\n  ... and {len(bad) - 20} more" if len(bad) > 20 else ""
        cues = f", {len(report.cue_problems)} bad cues" if report.cue_problems else ""
        raise DataError(f"--strict: {len(report.problems)} bad rows{cues}\n{listed}{more}")
    if not report.ok:
        raise DataError(f"no usable rows in {', '.join(map(str, paths))}; run `whisper-lora check-data` on them")
    return report


def histogram(values: list[float], edges: tuple, unit: str, width: int = 40) -> list[str]:
    """Text histogram lines, one per bin between consecutive edges plus one open bin above the last."""
    labels = [f"{lo:g}-{hi:g} {unit}" for lo, hi in pairwise(edges)] + [f">={edges[-1]:g} {unit}"]
    counts = [0] * len(labels)
    for value in values:
        counts[sum(value >= edge for edge in edges[1:])] += 1
    peak = max(counts) or 1
    pad = max(map(len, labels))
    return [
        f"  {label:>{pad}} | {'#' * round(width * n / peak):<{width}} {n}"
        for label, n in zip(labels, counts, strict=True)
    ]


def format_report(report: Report, windows: bool = False) -> str:
    """The check-data report: counts, each bad row, recordings and their windows, hours, and histograms.

    windows lists every planned window of every recording too.
    """
    silent = f" ({report.without_speech} without speech)" if report.without_speech else ""
    lines = [f"rows OK:  {report.usable_rows}{silent}", f"rows bad: {len(report.problems)}"]
    lines += [f"  {problem}" for problem in report.problems]
    if report.recordings:
        lines.append(f"recordings with timed segments: {len(report.recordings)}")
        lines += [_recording_line(report, *recording, windows) for recording in report.recordings]
    if report.cue_problems:
        lines.append(f"cues skipped: {len(report.cue_problems)}")
        lines += [f"  {problem}" for problem in report.cue_problems]
    lines.append(f"total audio: {report.total_seconds / 3600:.3f} h ({report.total_seconds:.1f} s)")
    if report.ok:
        lines.append("duration (usable rows and windows):")
        lines += histogram([seconds for _, seconds in report.ok], DURATION_BINS, "s")
        lines.append("text length (usable rows and windows):")
        lines += histogram([len(row.text) for row, _ in report.ok], TEXT_BINS, "chars")
    return "\n".join(lines)


def _recording_line(report: Report, row: Row, seconds: float, count: int, skipped: int, listed: bool) -> str:
    """One recording: its length, cues used and skipped, and its windows (each one when listed)."""
    planned = [
        (window, length)
        for window, length in report.ok
        if window.segments
        and window.manifest == row.manifest
        and window.number == row.number
        and window.window is not None
    ]
    cues = sum(len(window.segments or ()) for window, _ in planned)
    lengths = [length for _, length in planned]
    spread = f" of {min(lengths):.1f}-{max(lengths):.1f} s (covering {sum(lengths) / seconds:.0%})" if lengths else ""
    line = f"  {row.where()}: {row.audio_path}: {seconds:.1f} s, {cues} cues in {count} windows{spread}"
    line += f", skipped cues: {skipped}" if skipped else ""
    for window, _ in planned if listed else []:
        numbers = [cue.number for cue in window.segments or ()]
        line += f"\n    window {window.window}: {window.start:.2f}-{window.end:.2f} s, cues {numbers[0]}-{numbers[-1]}"
    return line

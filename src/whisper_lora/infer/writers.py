"""Transcript output formats, one small writer per format, each rendering a list of transcripts to text."""

from __future__ import annotations

import json
from dataclasses import asdict

from whisper_lora.core.records import Transcript

FORMATS = ("json", "txt", "srt", "vtt", "tsv")


def _clock(seconds: float, decimal: str) -> str:
    milliseconds = round(seconds * 1000)
    hours, milliseconds = divmod(milliseconds, 3_600_000)
    minutes, milliseconds = divmod(milliseconds, 60_000)
    secs, milliseconds = divmod(milliseconds, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{milliseconds:03d}"


class JsonWriter:
    """Every field of every transcript; segment times only when timestamps were asked for."""

    def render(self, transcripts: list[Transcript], timestamps: bool) -> str:
        records = [asdict(t) for t in transcripts]
        for record in records:
            for note in ("redecoded", "unheard"):
                if record[note] is None:
                    record.pop(note)
            if not timestamps:
                record.pop("segments")
            for segment in record.get("segments", []):
                if segment["words"] is None:
                    segment.pop("words")
        return json.dumps(records, ensure_ascii=False, indent=2) + "\n"


class TxtWriter:
    """The text of each file, one file per paragraph; with timestamps, one segment per line."""

    def render(self, transcripts: list[Transcript], timestamps: bool) -> str:
        if not timestamps:
            return "\n".join(t.text for t in transcripts) + "\n"
        lines = [f"[{s.start:.2f} --> {s.end:.2f}] {s.text}" for t in transcripts for s in t.segments]
        return "\n".join(lines) + "\n"


class SrtWriter:
    """SubRip subtitles of the segments."""

    def render(self, transcripts: list[Transcript], timestamps: bool = True) -> str:
        cues = [s for t in transcripts for s in t.segments]
        return "".join(
            f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n\n" for i, s in enumerate(cues, start=1)
        )


class VttWriter:
    """WebVTT subtitles of the segments."""

    def render(self, transcripts: list[Transcript], timestamps: bool = True) -> str:
        cues = [s for t in transcripts for s in t.segments]
        return "WEBVTT\n\n" + "".join(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n\n" for s in cues)


class TsvWriter:
    """start, end (integer milliseconds, as openai/whisper writes them) and text, tab-separated."""

    def render(self, transcripts: list[Transcript], timestamps: bool = True) -> str:
        rows = [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text}" for t in transcripts for s in t.segments]
        return "start\tend\ttext\n" + "".join(row + "\n" for row in rows)


WRITERS = {"json": JsonWriter, "txt": TxtWriter, "srt": SrtWriter, "vtt": VttWriter, "tsv": TsvWriter}


def get_writer(output_format: str):
    """The writer for a format name."""
    return WRITERS[output_format]()

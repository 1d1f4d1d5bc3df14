"""Transcribe many files: progress in audio seconds per second, a JSONL sidecar per finished file, resumable."""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from whisper_lora.core.errors import UserError
from whisper_lora.core.records import Segment, Transcript, Word


def read_audio_list(path: str | Path) -> list[str]:
    """Paths from a list file, one per line; blank lines and '#' comments are skipped, relative paths kept as written."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: audio list not found" if not path.exists() else f"{path}: is not a file")
    lines = [line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    paths = [line for line in lines if line]
    if not paths:
        raise UserError(f"{path}: lists no audio files")
    return paths


def _load_done(sidecar: Path) -> dict[str, Transcript]:
    done: dict[str, Transcript] = {}
    if not sidecar.is_file():
        return done
    for line in sidecar.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a run killed mid-write
        if record.get("error") is None:
            record["segments"] = [_segment(s) for s in record.get("segments", [])]
            done[record["path"]] = Transcript(**record)
    return done


def _segment(record: dict) -> Segment:
    words = [Word(**w) for w in record.pop("words", None) or []]
    return Segment(**record, words=words or None)


def _append(sidecar: Path, transcript: Transcript) -> None:
    with open(sidecar, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(asdict(transcript), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def transcribe_many(
    transcribe, paths: list[str], sidecar: Path | None = None, on_result=None, batch_size: int = 1
) -> list[Transcript]:
    """Run transcribe(list of paths) -> Transcripts over paths, batch_size at a time, skipping those in the sidecar."""
    done = _load_done(sidecar) if sidecar else {}
    pending = [path for path in dict.fromkeys(paths) if path not in done]
    audio_seconds, started = 0.0, time.perf_counter()
    with tqdm(total=len(pending), unit="file", disable=len(pending) < 2) as progress:
        for first in range(0, len(pending), batch_size):
            for transcript in transcribe(pending[first : first + batch_size]):
                done[transcript.path] = transcript
                audio_seconds += transcript.duration
                if sidecar:
                    _append(sidecar, transcript)
                if on_result:
                    on_result(transcript)
                progress.update(1)
            progress.set_postfix_str(f"{audio_seconds / (time.perf_counter() - started):.1f} audio s/s")
    return [done[path] for path in paths]

"""Transcribe many files: progress in audio seconds per second, a JSONL sidecar per finished file, resumable."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path

from whisper_lora.core.errors import UserError
from whisper_lora.core.progress import Progress
from whisper_lora.core.records import Runtime, Segment, TranscribeOptions, Transcript, Word

log = logging.getLogger(__name__)

Results = Callable[[list[str]], Iterator[Transcript]]  # the paths still to do -> their transcripts, in any order


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


def run_key(runtime: Runtime, options: TranscribeOptions) -> dict:
    """What a sidecar's results depend on: the model, how it runs and every decoding option, as JSON holds it."""
    key = {"model": runtime.model_path or "base", "backend": runtime.backend, "compute_type": runtime.compute_type}
    return json.loads(json.dumps({**key, "options": asdict(options)}))


def _load_done(sidecar: Path, key: dict | None) -> dict[str, Transcript]:
    done: dict[str, Transcript] = {}
    if not sidecar.is_file():
        return done
    lines = sidecar.read_text(encoding="utf-8").splitlines()
    if key is not None and _header(lines) != key:
        _set_aside(sidecar, key)
        return done
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a run killed mid-write
        if "run" not in record and record.get("error") is None:
            done[record["path"]] = transcript_from_record(record)
    return done


def _header(lines: list[str]) -> dict | None:
    try:
        return json.loads(lines[0]).get("run") if lines else None
    except (json.JSONDecodeError, AttributeError):
        return None


def _set_aside(sidecar: Path, key: dict) -> None:
    """Keep another run's results, renamed, instead of mixing them in or deleting them."""
    kept = sidecar.with_name(f"{sidecar.name.removesuffix('.jsonl')}.{time.strftime('%Y%m%d-%H%M%S')}.jsonl")
    sidecar.rename(kept)
    log.warning(
        "%s holds results of another model or other options; starting over, and keeping them in %s", sidecar, kept
    )


def transcript_from_record(record: dict) -> Transcript:
    """The Transcript a JSON record (asdict of one) holds."""
    return Transcript(**{**record, "segments": [_segment(s) for s in record.get("segments", [])]})


def _segment(record: dict) -> Segment:
    words = [Word(**w) for w in record.get("words") or []]
    return Segment(**{**record, "words": words or None})


def _append(sidecar: Path, transcript: Transcript, key: dict | None) -> None:
    with open(sidecar, "a", encoding="utf-8") as handle:
        if key is not None and handle.tell() == 0:
            handle.write(json.dumps({"run": key}, ensure_ascii=False) + "\n")
        handle.write(json.dumps(asdict(transcript), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def in_batches(transcribe: Callable[[list[str]], list[Transcript]], batch_size: int) -> Results:
    """Results from transcribe(list of paths) -> Transcripts, called batch_size paths at a time, in order."""

    def results(pending: list[str]) -> Iterator[Transcript]:
        for first in range(0, len(pending), batch_size):
            yield from transcribe(pending[first : first + batch_size])

    return results


def transcribe_many(
    results: Results,
    paths: list[str],
    sidecar: Path | None = None,
    on_result=None,
    key: dict | None = None,
) -> list[Transcript]:
    """Transcripts of the paths, in order, from results(paths not yet done) -> Transcripts in any order.

    Each finished file is appended to the sidecar; a rerun skips what it holds, and a sidecar written
    under another key (model, options) is set aside, not mixed in.
    """
    done = _load_done(sidecar, key) if sidecar else {}
    pending = [path for path in dict.fromkeys(paths) if path not in done]
    if done:
        _to_stderr(f"{len(done)} of {len(paths)} files are done already ({sidecar}); transcribing {len(pending)}")
    audio_seconds, started = 0.0, time.perf_counter()
    progress = Progress(len(pending), "transcribe", unit="file", write=_to_stderr) if len(pending) > 1 else None
    try:
        for transcript in results(pending) if pending else ():
            if transcript.path in done:  # a retried task may send a file again; its first transcript stands
                continue
            done[transcript.path] = transcript
            audio_seconds += transcript.duration
            if sidecar:
                _append(sidecar, transcript, key)
            if on_result:
                on_result(transcript)
            if progress:
                elapsed = time.perf_counter() - started
                progress.note = f"{(progress.done + 1) / elapsed:.2f} files/s, {audio_seconds / elapsed:.1f} audio s/s"
                progress.update(1)
    finally:
        if progress:
            progress.close()
    return [done[path] for path in paths]


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)

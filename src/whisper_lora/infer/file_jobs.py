"""Transcribe many files: progress in audio seconds per second, a JSONL sidecar per finished file, resumable."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict
from pathlib import Path

from tqdm import tqdm

from whisper_lora.core.errors import UserError
from whisper_lora.core.records import Runtime, Segment, TranscribeOptions, Transcript, Word

log = logging.getLogger(__name__)


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
            record["segments"] = [_segment(s) for s in record.get("segments", [])]
            done[record["path"]] = Transcript(**record)
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


def _segment(record: dict) -> Segment:
    words = [Word(**w) for w in record.pop("words", None) or []]
    return Segment(**record, words=words or None)


def _append(sidecar: Path, transcript: Transcript, key: dict | None) -> None:
    with open(sidecar, "a", encoding="utf-8") as handle:
        if key is not None and handle.tell() == 0:
            handle.write(json.dumps({"run": key}, ensure_ascii=False) + "\n")
        handle.write(json.dumps(asdict(transcript), ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def transcribe_many(
    transcribe,
    paths: list[str],
    sidecar: Path | None = None,
    on_result=None,
    batch_size: int = 1,
    key: dict | None = None,
) -> list[Transcript]:
    """Run transcribe(list of paths) -> Transcripts over paths, batch_size at a time, skipping those in the sidecar;
    a sidecar written under another key (model, options) is set aside, not mixed in."""
    done = _load_done(sidecar, key) if sidecar else {}
    pending = [path for path in dict.fromkeys(paths) if path not in done]
    audio_seconds, started = 0.0, time.perf_counter()
    with tqdm(total=len(pending), unit="file", disable=len(pending) < 2) as progress:
        for first in range(0, len(pending), batch_size):
            for transcript in transcribe(pending[first : first + batch_size]):
                done[transcript.path] = transcript
                audio_seconds += transcript.duration
                if sidecar:
                    _append(sidecar, transcript, key)
                if on_result:
                    on_result(transcript)
                progress.update(1)
            progress.set_postfix_str(f"{audio_seconds / (time.perf_counter() - started):.1f} audio s/s")
    return [done[path] for path in paths]

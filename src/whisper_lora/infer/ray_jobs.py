"""Transcribe a file list on Ray Data: a pool of actors, each loading the model once; transcripts stream to the driver."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from whisper_lora.core.errors import UserError
from whisper_lora.core.extras import require
from whisper_lora.core.records import Clip, Runtime, TranscribeOptions, Transcript
from whisper_lora.infer.file_jobs import transcript_from_record
from whisper_lora.infer.transcriber import Transcriber, backend_class, pick_backend

log = logging.getLogger(__name__)

PID_FOLDER = "WHISPER_LORA_RAY_PIDS"  # when set, each actor writes its process id there (for operators and tests)


def loaded(runtime: Runtime, batch_size: int) -> Transcriber:
    """An actor's Transcriber, its process id written to PID_FOLDER first when that is set."""
    if os.environ.get(PID_FOLDER):
        Path(os.environ[PID_FOLDER], str(os.getpid())).touch()
    return Transcriber.run(runtime, batch_size)


class FileTranscriber:
    """A Ray Data actor: one Transcriber, loaded once, transcribing batches of paths into JSON records."""

    def __init__(self, runtime: Runtime, options: TranscribeOptions, batch_size: int):
        self.transcriber, self.options = loaded(runtime, batch_size), options

    def __call__(self, batch: dict) -> dict:
        """{"path": [...]} -> {"record": [...]}, one JSON transcript per path."""
        transcripts = self.transcriber.files([str(path) for path in batch["path"]], self.options)
        return {"record": [json.dumps(asdict(t), ensure_ascii=False) for t in transcripts]}


class ClipTranscriber:
    """A Ray Data actor: one Transcriber, loaded once, transcribing decoded clips with the options each row carries."""

    def __init__(self, runtime: Runtime, batch_size: int):
        self.transcriber = loaded(runtime, batch_size)

    def __call__(self, batch: dict) -> dict:
        """{"index", "name", "samples", "options"} -> {"index", "record"}, rows of the same options decoded together."""
        groups: dict[str, list[int]] = {}
        for k, options in enumerate(batch["options"]):
            groups.setdefault(str(options), []).append(k)
        records: list[str] = [""] * len(batch["index"])
        for options, members in groups.items():
            clips = [Clip(str(batch["name"][k]), np.asarray(batch["samples"][k], np.float32)) for k in members]
            decoded = self.transcriber.clips(clips, TranscribeOptions(**json.loads(options)))
            for k, transcript in zip(members, decoded, strict=True):
                records[k] = json.dumps(asdict(transcript), ensure_ascii=False)
        return {"index": list(batch["index"]), "record": records}


def transcript_from_json(record: str) -> Transcript:
    """The Transcript an actor sent back as JSON."""
    return transcript_from_record(json.loads(record))


def check_on_ray(runtime: Runtime, options: TranscribeOptions) -> None:
    """Refuse, on the driver and before Ray starts, a model or options the actors could not use."""
    backend = pick_backend(runtime.model_path, runtime.backend)
    reason = backend_class(backend).supports(options)
    if reason:
        raise UserError(reason)


def start_ray(address: str | None, cpus: int):
    """Ray, connected to the cluster at address, or started here with `cpus` logical CPUs when address is None."""
    ray = require("ray", "--ray")
    if not ray.is_initialized():
        quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
        if address:
            ray.init(address=address, **quiet)
        else:  # a CPU more than the actors take, so that Ray Data's own tasks never wait for one (ray#44687)
            ray.init(num_cpus=cpus, include_dashboard=False, **quiet)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the driver shows its own: done/total, files/s, time left
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def transcribe_on_ray(
    paths: list[str],
    runtime: Runtime,
    options: TranscribeOptions,
    address: str | None = None,
    actors: int = 2,
    batch_size: int = 1,
) -> Iterator[Transcript]:
    """Transcripts of the paths in the order they finish, from `actors` actors (a local Ray without an address)."""
    items = [{"path": path} for path in paths]
    kwargs = {"runtime": runtime, "options": options, "batch_size": batch_size}
    for row in _pool_rows(items, FileTranscriber, kwargs, address, actors, batch_size):
        yield transcript_from_json(row["record"])


def clips_on_ray(
    clips: list[Clip],
    options: list[TranscribeOptions],
    runtime: Runtime,
    address: str | None = None,
    actors: int = 2,
    batch_size: int = 8,
) -> list[Transcript]:
    """The transcript of each decoded clip, in order, each decoded with its own options, by `actors` actors."""
    items = [
        {"index": k, "name": clip.name, "samples": clip.samples, "options": json.dumps(asdict(choice))}
        for k, (clip, choice) in enumerate(zip(clips, options, strict=True))
    ]
    kwargs = {"runtime": runtime, "batch_size": batch_size}
    found = {
        int(row["index"]): transcript_from_json(row["record"])
        for row in _pool_rows(items, ClipTranscriber, kwargs, address, actors, batch_size)
    }
    return [found[k] for k in range(len(clips))]


def _pool_rows(items: list[dict], actor: type, kwargs: dict, address, actors: int, batch_size: int) -> Iterator[dict]:
    """The rows an actor pool makes of the items, as they finish; Ray's failures as one UserError line.

    Ray sets each actor's OMP_NUM_THREADS from its CPUs, and CTranslate2 decodes on that many threads.
    """
    threads = max(1, (os.cpu_count() or 1) // actors)
    ray = start_ray(address, actors * threads + 1)
    blocks = max(1, min(len(items), 1000 * actors))  # small blocks: a killed actor's retry redoes little
    results = ray.data.from_items(items, override_num_blocks=blocks).map_batches(
        actor,
        fn_constructor_kwargs=kwargs,
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
    )
    try:
        yield from results.iter_rows()
    except ray.exceptions.RayError as error:  # an actor's own error, or the cluster's: one line, not Ray's traceback
        raise UserError(f"--ray: the transcription failed on Ray: {_cause(error)}") from None


def _cause(error: BaseException) -> str:
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}".splitlines()[0]

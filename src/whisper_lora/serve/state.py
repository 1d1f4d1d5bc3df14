"""The server's shared state: its settings, the served models, the admission gate and the worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from fastapi import Request

from whisper_lora.core.errors import UserError
from whisper_lora.core.memory import rss_mb
from whisper_lora.core.records import Runtime
from whisper_lora.infer.transcriber import Transcriber

log = logging.getLogger(__name__)

MODEL_WAIT_S = 60.0  # how long a request waits for a model place while every loaded model is in use
WORKER_PREFIX = "whisper-lora-worker"  # the names of the threads that run models
DEFAULT_NAMES = ("whisper-1", "")  # what OpenAI's clients send when they name none of ours: the default model


@dataclass
class ServeSettings:
    """What the server loads and the limits it keeps."""

    runtime: Runtime = field(default_factory=Runtime)  # how models run; its model_path is served first, by its path
    max_upload_mb: float = 25.0
    api_key: str | None = None
    workers: int = 1  # model calls at once; more only helps with more cores or a GPU
    max_queue: int = 8  # requests waiting for a worker before new ones get 503
    retry_after_s: int = 5
    models: dict[str, str | None] = field(default_factory=dict)  # --model NAME=PATH, in order
    preload: bool = False  # load every model at start instead of on its first request
    max_loaded: int | None = None  # most models in memory at once; the least recently used goes first
    max_streams: int = 1  # live /v1/realtime sessions at once; more are refused, so the others keep up
    max_audio_s: float = 3600.0  # decoded audio per request; a small compressed upload can hold hours
    allowed_origins: tuple[str, ...] = ()  # pages elsewhere that may open /v1/realtime when no key is set
    upload_timeout_s: float = 60.0  # a request body must arrive within this, before it takes a place in the queue
    graceful_shutdown_s: float = 10.0  # after SIGTERM, how long running requests may take before the server exits

    def served(self) -> dict[str, str | None]:
        """Every model served, by the name a request's model field gives, the default first."""
        path = self.runtime.model_path
        first = {} if self.models and not path else {str(path or "base"): path}
        return first | self.models

    @property
    def model_id(self) -> str:
        """The default model's name: /health shows it, and requests naming whisper-1 get it."""
        return next(iter(self.served()))

    @property
    def max_upload_bytes(self) -> int:
        """--max_upload_mb in bytes: the most an upload, or one realtime audio message, may hold."""
        return int(self.max_upload_mb * 2**20)


class UnknownModel(Exception):
    """A request named a model this server does not serve."""


class ModelUnavailable(Exception):
    """A served model failed to load; the message says why."""


def failure(error: Exception) -> str:
    """The error as the server log and /health (to key holders) tell it."""
    return str(error) if isinstance(error, UserError) else f"{type(error).__name__}: {error}"


def public_failure(error: Exception) -> str:
    """The error as a client is told it: what the client can fix, else no more than that the log has it."""
    return str(error) if isinstance(error, UserError) else "an internal error; the server log has the details"


class ModelPool:
    """The served models by name: each loads on its first request (or at start). With max_loaded, no more than that
    many are in memory or loading at any time: the least recently used one that no request holds makes room, and a
    request waits (MODEL_WAIT_S at most) while every loaded one is held."""

    def __init__(self, settings: ServeSettings, load: Callable[[str | None], Transcriber] | None = None):
        self.settings, self.paths = settings, settings.served()
        self.load = load or (
            lambda path: Transcriber.run(replace(settings.runtime, model_path=path), 1, settings.workers)
        )
        self.loaded: OrderedDict[str, Transcriber] = OrderedDict()
        self.errors: dict[str, str] = {}
        self.held: Counter[str] = Counter()  # requests and live sessions using each model now
        self.starting: set[str] = set()  # models being loaded now
        self.changed = threading.Condition()
        self.loading = {name: threading.Lock() for name in self.paths}

    def name(self, requested: str | None) -> str:
        """The served name that a request's model field picks."""
        if requested in self.paths:
            return str(requested)
        if requested is None or requested in DEFAULT_NAMES:
            return self.settings.model_id
        raise UnknownModel(f"The model {requested!r} does not exist; this server has: {', '.join(self.paths)}")

    def get(self, name: str) -> Transcriber:
        """The model, loaded first if it is not (this blocks); ModelUnavailable if it failed to load."""
        transcriber = self.acquire(name)
        self.release(name)
        return transcriber

    @contextlib.contextmanager
    def using(self, name: str) -> Iterator[Transcriber]:
        """The model, held (never unloaded) while the block runs."""
        transcriber = self.acquire(name)
        try:
            yield transcriber
        finally:
            self.release(name)

    def acquire(self, name: str) -> Transcriber:
        """The model, held until release(name); it is loaded first if it is not (this blocks)."""
        with self.loading[name]:  # one load per model, however many requests wait for it
            with self.changed:
                if name in self.loaded:
                    self.loaded.move_to_end(name)
                    self.held[name] += 1
                    return self.loaded[name]
                if name in self.errors:
                    raise self._unavailable(name)
                self._make_room()
                self.starting.add(name)
            try:
                transcriber = self._load(name)
            finally:
                with self.changed:
                    self.starting.discard(name)
                    self.changed.notify_all()
            with self.changed:
                self.loaded[name] = transcriber
                self.held[name] += 1
            return transcriber

    def release(self, name: str) -> None:
        """Let go of a model acquire() gave; an unheld model may be unloaded to make room."""
        with self.changed:
            self.held[name] -= 1
            self.changed.notify_all()

    def _make_room(self) -> None:
        """With self.changed held: unload unheld models until one more fits, waiting while all are held."""
        cap = self.settings.max_loaded
        deadline = time.monotonic() + MODEL_WAIT_S
        while cap and len(self.loaded) + len(self.starting) >= cap:
            idle = next((name for name in self.loaded if not self.held[name]), None)
            if idle is not None:
                del self.loaded[idle]
                log.info("unloaded %s (--max_loaded %d)", idle, cap)
            elif not self.changed.wait(timeout=max(0.0, deadline - time.monotonic())):
                raise ModelUnavailable(f"all {cap} model places (--max_loaded) are in use; retry later")

    def _load(self, name: str) -> Transcriber:
        before, started = rss_mb(), time.perf_counter()
        try:
            transcriber = self.load(self.paths[name])
        except Exception as error:  # any failure must be reported, or requests would wait on it forever
            log.exception("the model %s failed to load", name)
            self.errors[name] = failure(error)
            raise self._unavailable(name) from None
        after = rss_mb()
        memory = f"; RSS {after:.0f} MB ({after - before:+.0f} MB)" if after and before else ""
        log.info("loaded %s in %.1f s%s", name, time.perf_counter() - started, memory)
        return transcriber

    def _unavailable(self, name: str) -> ModelUnavailable:
        return ModelUnavailable(f"the model {name!r} failed to load; the server log (or /health with the key) says why")

    def add(self, name: str, transcriber: Transcriber) -> None:
        """Serve an already loaded model under name (it takes a place like any other)."""
        with self.changed:
            self._make_room()
            self.loaded[name] = transcriber

    def status(self) -> dict[str, str]:
        """Each model's state: loaded, not loaded, or failed with the reason."""
        return {name: self._state(name) for name in self.paths}

    def _state(self, name: str) -> str:
        if name in self.loaded:
            return "loaded"
        return f"failed: {self.errors[name]}" if name in self.errors else "not loaded"


def error_body(
    message: str, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
) -> dict:
    """An error in the shape OpenAI's API (and so its client) uses."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass
class ServerState:
    """What every route shares: settings, models, the admission gate (pending, ready, error) and the worker pool."""

    settings: ServeSettings
    models: ModelPool
    pool: ThreadPoolExecutor
    gate: dict

    @classmethod
    def build(
        cls,
        settings: ServeSettings,
        transcriber: Transcriber | None = None,
        load: Callable[[str | None], Transcriber] | None = None,
    ) -> ServerState:
        """The state of a new server; transcriber, when given, is the default model, already loaded."""
        models = ModelPool(settings, load)
        if transcriber is not None:
            models.add(settings.model_id, transcriber)
        gate = {"pending": 0, "live": 0, "ready": transcriber is not None, "error": None}
        return cls(settings, models, cls.new_pool(settings), gate)

    @staticmethod
    def new_pool(settings: ServeSettings) -> ThreadPoolExecutor:
        """The worker threads that run models: settings.workers of them."""
        return ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix=WORKER_PREFIX)

    def load_models(self) -> None:
        """Load the default model (every model with preload), recording a failure for /health."""
        try:
            self.models.get(self.settings.model_id)
            self.gate["ready"] = True
        except ModelUnavailable:
            self.gate["error"] = self.models.errors[self.settings.model_id]
            return
        for name in list(self.models.paths)[1:] if self.settings.preload else []:
            with contextlib.suppress(ModelUnavailable):  # /health shows it, and its requests get 503 with the reason
                self.models.get(name)

    async def run(self, work: Callable, *args):
        """work(*args) on a worker thread, awaited."""
        return await asyncio.get_running_loop().run_in_executor(self.pool, work, *args)


def no_place(settings: ServeSettings, gate: dict) -> bool:
    """Whether the workers and the queue are all taken; file requests and live sessions share the places."""
    return gate["pending"] + gate["live"] >= settings.workers + settings.max_queue


def authorized(settings: ServeSettings, authorization: str) -> bool:
    """Whether an Authorization header carries the API key (always, when none is set), compared in constant time."""
    key = settings.api_key
    return not key or hmac.compare_digest(authorization.encode(), f"Bearer {key}".encode())


def server_state(request: Request) -> ServerState:
    """The app's ServerState, for routes to depend on."""
    return request.app.state.server

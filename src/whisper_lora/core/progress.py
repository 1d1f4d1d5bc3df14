"""Progress of long work: tqdm's bar on a terminal; elsewhere (CI, nohup, a pipe) a readable line every few seconds."""

from __future__ import annotations

import sys
import threading
import time

from tqdm.auto import tqdm

EVERY_SECONDS = 10.0  # under the 15 s a log reader waits at most for a sign of life


def clock(seconds: float) -> str:
    """m:ss, or h:mm:ss from an hour on."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}" if minutes >= 60 else f"{minutes}:{seconds:02d}"


class Progress:
    """done of total units of work: a bar on a terminal, else a line every EVERY_SECONDS, between updates too."""

    def __init__(self, total: int, what: str, unit: str = "row", write=None, terminal: bool | None = None):
        self.total, self.what, self.unit, self.done = max(total, 0), what, unit, 0
        self.write = write or (lambda line: print(line, flush=True))
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.started = time.perf_counter()
        self.note = ""  # shown after the counts, such as a second rate
        self.bar = tqdm(total=total, desc=what, unit=unit, leave=False) if self.terminal else None
        self.stopped = threading.Event()
        if not self.terminal:
            threading.Thread(target=self._heartbeat, daemon=True).start()

    def _heartbeat(self) -> None:
        while not self.stopped.wait(EVERY_SECONDS):
            self.write(self.line())

    def line(self) -> str:
        """'what: done/total unit (share), elapsed, about ... left'."""
        elapsed = time.perf_counter() - self.started
        share = self.done / self.total if self.total else 1.0
        left = f", about {clock(elapsed / self.done * (self.total - self.done))} left" if self.done else ""
        note = f"; {self.note}" if self.note else ""
        return f"{self.what}: {self.done}/{self.total} {self.unit}s ({share:.0%}), {clock(elapsed)} elapsed{left}{note}"

    def update(self, count: int = 1) -> None:
        """count more units done."""
        self.done += count
        if self.bar is not None:
            self.bar.update(count)
            if self.note:
                self.bar.set_postfix_str(self.note, refresh=False)

    def close(self) -> None:
        """Stop, and say how long it took."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        if self.bar is not None:
            self.bar.close()
        else:
            self.write(
                f"{self.what}: {self.done}/{self.total} {self.unit}s in {clock(time.perf_counter() - self.started)}"
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

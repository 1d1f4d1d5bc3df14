"""The process's memory: resident set now, its peak so far, and a profile of both across a command's stages."""

from __future__ import annotations

import os
import resource
import sys
from pathlib import Path


def rss_mb() -> float | None:
    """Resident memory now, in MB; None where /proc is not there (not Linux)."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_mb() -> float:
    """The most resident memory this process has held so far, in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


class MemoryProfile:
    """RSS and peak RSS at the end of each stage of a command, printed as it goes and kept for metrics.json."""

    def __init__(self, command: str, write=print):
        self.command, self.write = command, write
        self.stages: list[dict] = []

    def mark(self, stage: str) -> None:
        """Record that a stage ended now."""
        now, peak = rss_mb(), peak_rss_mb()
        self.stages.append({"stage": stage, "rss_mb": None if now is None else round(now), "peak_mb": round(peak)})
        shown = "" if now is None else f"RSS {now:.0f} MB, "
        self.write(f"{self.command} memory after {stage}: {shown}peak {peak:.0f} MB")

"""The process's memory: resident set now, its peak so far, and a profile of both across a command's stages."""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import sys
import time
from pathlib import Path

LIBC = ctypes.CDLL("libc.so.6") if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc" else None
M_MMAP_THRESHOLD = -3  # mallopt's parameter number in glibc's malloc.h


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


def release_free_memory() -> None:
    """Hand memory freed by the last block back to the system (glibc keeps it otherwise, and hours of blocks of
    different sizes fragment it); elsewhere nothing."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def map_large_allocations(threshold_bytes: int = 4 << 20) -> bool:
    """Have glibc map each allocation of threshold_bytes or more on its own, and unmap it when freed.

    By default glibc raises that threshold each time such a block is freed (up to 32 MB), so a training step's
    activations land in its fragmenting heap: fp32 training of whisper-base at batch 4 peaked at 5.7 GB that way.
    8 MB left bf16's 6 MB activations in the heap (3.4 GB); 4 MB peaks at 2.7 GB in bf16 and in fp32, for a
    quarter more training time at batch 4 in bf16 (fresh mappings fault in); see benchmarks/README.md. Elsewhere nothing.
    """
    return LIBC is not None and LIBC.mallopt(M_MMAP_THRESHOLD, threshold_bytes) == 1


class MemoryProfile:
    """RSS, peak RSS and seconds of each stage of a command, printed as it goes and kept for metrics.json."""

    def __init__(self, command: str, write=print):
        self.command, self.write = command, write
        self.stages: list[dict] = []
        self.since = time.perf_counter()

    def mark(self, stage: str) -> None:
        """Record that a stage ended now."""
        now, peak, ended = rss_mb(), peak_rss_mb(), time.perf_counter()
        seconds, self.since = round(ended - self.since, 1), ended
        self.stages.append(
            {"stage": stage, "rss_mb": None if now is None else round(now), "peak_mb": round(peak), "seconds": seconds}
        )
        shown = "" if now is None else f"RSS {now:.0f} MB, "
        self.write(f"{self.command} memory after {stage}: {shown}peak {peak:.0f} MB ({seconds:g} s)")

"""glibc's allocator, told to map large blocks on their own, hands freed ones back."""

import subprocess
import sys

import pytest

from whisper_lora.core.memory import LIBC

SCRIPT = """
import sys
import numpy as np
from whisper_lora.core.memory import map_large_allocations, rss_mb
if sys.argv[1] == "mapped":
    assert map_large_allocations()
warm = np.ones(16 << 20, np.uint8)
del warm  # by default, freeing a mapped block raises glibc's threshold to its size
start = rss_mb()
blocks = [np.ones(6 << 20, np.uint8) for _ in range(40)]  # bf16 activations of a training step
pin = np.ones(6 << 20, np.uint8)  # the newest block, left in use, keeps a heap from shrinking
del blocks
print(rss_mb() - start)
"""


def kept_mb(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], check=True, capture_output=True, text=True)
    return float(done.stdout)


@pytest.mark.skipif(LIBC is None, reason="glibc only")
def test_large_freed_blocks_go_back_to_the_system_only_when_mapped_on_their_own():
    assert kept_mb("default") > 160  # 240 MB allocated in 6 MB blocks stay in glibc's heap
    assert kept_mb("mapped") < 20

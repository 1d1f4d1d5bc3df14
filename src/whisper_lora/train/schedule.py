"""The learning-rate schedule's defaults: a peak scaled to the rows an update reads, and a warm-up that fits the run."""

from __future__ import annotations

import math

BASE_LEARNING_RATE = 5e-4  # chosen at the default batch: one window of up to 4 rows an update
BASE_ROWS = 4
MAX_LEARNING_RATE = 2e-3
WARMUP_STEPS = 10
WARMUP_SHARE = 0.5  # of a shorter run's updates: the rate peaks halfway at the latest


def learning_rate(given: float | None, batch: int, accumulation: int, world: int, pack_rows: int) -> float:
    """given, else the base rate times the square root of the rows an update reads over the default's 4, capped at 2e-3.

    Adam's step holds its size as the batch grows, so a bigger batch makes fewer steps of the same length: the
    square-root rule (Malladi et al., 2022) gives it back. The recipe's 4 x 2 rows, packed 4 to a window, read 32.
    """
    if given is not None:
        return given
    rows = batch * accumulation * world * pack_rows
    return min(BASE_LEARNING_RATE * math.sqrt(rows / BASE_ROWS), MAX_LEARNING_RATE)


def updates(windows: int, batch: int, accumulation: int, world: int, epochs: float) -> int:
    """The optimizer steps the Trainer will take: a step per `accumulation` batches, the last one partial."""
    batches = math.ceil(windows / (batch * world))
    return max(1, math.ceil(epochs * max(1, math.ceil(batches / accumulation))))


def warmup_steps(given: int | None, total: int) -> int:
    """given, else 10 updates, or half a run of fewer than 20: a warm-up as long as the run never lets the rate peak."""
    return given if given is not None else min(WARMUP_STEPS, int(total * WARMUP_SHARE))

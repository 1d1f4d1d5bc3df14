"""The learning-rate schedule's defaults: the peak follows the rows an update reads, the warm-up the run's length."""

import math

import pytest

from whisper_lora.train import schedule


def test_the_default_batch_keeps_the_base_rate_and_bigger_ones_scale_by_the_square_root():
    assert schedule.learning_rate(None, 1, 1, 1, 4) == 5e-4  # one window of up to 4 rows
    assert schedule.learning_rate(None, 4, 1, 1, 1) == 5e-4  # 4 rows, unpacked
    assert schedule.learning_rate(None, 4, 2, 1, 4) == pytest.approx(5e-4 * math.sqrt(8))  # the recipe's 4 x 2
    assert schedule.learning_rate(None, 4, 4, 4, 4) == 2e-3  # capped
    assert schedule.learning_rate(1e-4, 4, 2, 1, 4) == 1e-4  # given: kept


def test_updates_count_as_the_trainer_counts_them():
    assert schedule.updates(windows=14, batch=4, accumulation=2, world=1, epochs=2) == 4
    assert schedule.updates(windows=14, batch=1, accumulation=1, world=1, epochs=2) == 28
    assert schedule.updates(windows=14, batch=4, accumulation=1, world=2, epochs=0.5) == 1


def test_a_short_run_warms_up_for_half_of_it_and_a_given_warm_up_is_kept():
    assert schedule.warmup_steps(None, 4) == 2
    assert schedule.warmup_steps(None, 28) == 10
    assert schedule.warmup_steps(None, 1000) == 10
    assert schedule.warmup_steps(500, 40) == 500

"""Issue 4's close-timing targets, on every seed of the 20,000-deal table in docs/timing.md
(11, 5, 23, 37): the 80 % days-to-close interval covers 77–83 % of the generator's true close
dates, and on long-cycle deals (what ``salesml train`` reports, and the deals the generator
planted a long cycle on) the mean error of the median is at least 30 % smaller than that of a
model trained on closed deals only.

About a minute per seed on one core; the revenue targets are in test_accuracy_revenue.py."""

from __future__ import annotations

import pytest

from tests.reference.accuracy import SEEDS, documented_study, timing_study


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_timing_interval_holds_and_long_cycles_beat_closed_only_training(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    study = documented_study(tmp_path_factory, seed)
    result = timing_study(study.history, study.snapshots, study.truth, short=False)
    assert abs(result.coverage - 0.8) <= 0.03, result.coverage
    for name, (ours, closed_only) in (("holdout", result.holdout), ("planted", result.planted)):
        assert closed_only < 0, (name, closed_only)  # closed-only training is biased short
        assert abs(ours) <= 0.7 * abs(closed_only), (name, ours, closed_only)

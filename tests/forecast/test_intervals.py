"""Interval widths from backtest errors (``salesml.models.revenue.intervals``): the 95 % bound is
outside the 80 % one at every step, widths follow noise + drift past the backtested steps, and
on errors of a known distribution the 80 % interval covers about 80 % of fresh errors."""

from __future__ import annotations

import numpy as np
import pytest

from salesml.models.revenue.bundle import widened
from salesml.models.revenue.intervals import Z_RATIO, conformal_quantile, step_widths


def _errors(
    rng: np.random.Generator, origins: int, steps: int, noise: float, drift: float
) -> tuple[np.ndarray, np.ndarray]:
    step = np.tile(np.arange(steps), origins)
    scale = np.sqrt(noise**2 + drift**2 * (step + 1))
    return rng.normal(size=len(step)) * scale, step


def test_95_bound_is_well_outside_the_80_bound_at_every_step_with_few_errors() -> None:
    """Eight origins × two steps: the empirical 95 % quantile is just the largest error, so
    the 95 % bound takes at least a normal error's ratio to the 80 % one."""
    err, step = _errors(np.random.default_rng(1), 8, 2, 0.2, 0.0)
    table = step_widths(err, step, 2)
    for row in table:
        assert row["lower_95"] < row["lower_80"] < 0 < row["upper_80"] < row["upper_95"]
        assert row["upper_95"] >= Z_RATIO * row["upper_80"] - 1e-12
        assert row["lower_95"] == -row["upper_95"]


def test_widths_grow_with_drift_and_stay_flat_with_noise() -> None:
    rng = np.random.default_rng(2)
    noise, step = _errors(rng, 40, 8, 0.2, 0.0)
    walk, _ = _errors(rng, 40, 8, 0.0, 0.1)
    flat = step_widths(noise, step, 52)
    grown = step_widths(walk, step, 52)
    assert flat[51]["upper_80"] < 1.5 * flat[0]["upper_80"]
    assert grown[51]["upper_80"] > 4 * grown[0]["upper_80"]  # √52 ≈ 7.2 for a pure walk


def test_the_bundle_extends_a_table_along_the_rules_own_growth() -> None:
    """A table learnt for the backtested steps, widened by the bundle past them, gives the
    widths the rule itself gives at those steps."""
    err, step = _errors(np.random.default_rng(3), 8, 3, 0.1, 0.08)
    near = step_widths(err, step, 3)
    far = step_widths(err, step, 12)
    for k in range(3, 12):
        for name in ("upper_80", "lower_95"):
            assert widened(near, k)[name] == pytest.approx(far[k][name], rel=1e-6)


def test_80_percent_interval_covers_about_80_percent_of_fresh_errors() -> None:
    """Widths learnt on 8 origins × 3 steps of noise + drift errors, judged on fresh errors a
    year of steps ahead (the far steps are extrapolated): coverage near 0.80 on average
    (0.83 here), and 95 % above 0.91 without covering everything (0.97 here)."""
    rng = np.random.default_rng(4)
    inside80, inside95 = [], []
    for _ in range(300):
        err, step = _errors(rng, 8, 3, 0.15, 0.03)
        table = step_widths(err, step, 12)
        fresh, fstep = _errors(rng, 1, 12, 0.15, 0.03)
        half80 = np.array([table[s]["upper_80"] for s in fstep])
        half95 = np.array([table[s]["upper_95"] for s in fstep])
        inside80.append(np.mean(np.abs(fresh) <= half80))
        inside95.append(np.mean(np.abs(fresh) <= half95))
    assert 0.74 <= float(np.mean(inside80)) <= 0.86
    assert 0.91 <= float(np.mean(inside95)) <= 0.985


def test_no_errors_give_zero_widths_and_the_quantile_caps_at_the_maximum() -> None:
    table = step_widths(np.array([]), np.array([], dtype=int), 3)
    assert table == [dict.fromkeys(("lower_95", "lower_80", "upper_80", "upper_95"), 0.0)] * 3
    assert conformal_quantile(np.array([1.0, 2.0, 3.0]), 0.95) == 3.0

"""The foreign benchmark's ECE decomposition (``benchmarks.foreign_win``): a miss in the large
and a wrong slope are told apart on the same deals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from benchmarks.foreign_win import calibration_decomposition
from salesml.models.evaluation import expected_calibration_error


def _world(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = expit(rng.normal(0.0, 1.2, 20_000))
    return true, (rng.random(true.size) < true).astype(float)


@pytest.mark.parametrize("seed", [1, 2])
def test_a_level_miss_is_read_as_an_intercept_and_levelling_removes_it(seed: int) -> None:
    true, y = _world(seed)
    low = expit(logit(true) - 0.4)
    d = calibration_decomposition(y, low)
    assert d["in_the_large"] < -0.05
    assert d["intercept"] == pytest.approx(0.4, abs=0.08)
    assert d["slope"] == pytest.approx(1.0, abs=0.06)
    assert d["level_shift"] == pytest.approx(0.4, abs=0.08)
    assert expected_calibration_error(y, low) > 0.06
    assert d["ece_levelled"] < 0.02


@pytest.mark.parametrize("seed", [1, 2])
def test_a_timid_model_is_read_as_a_slope_above_one_that_levelling_leaves(seed: int) -> None:
    true, y = _world(seed)
    timid = expit(0.6 * logit(true))
    d = calibration_decomposition(y, timid)
    assert abs(d["in_the_large"]) < 0.01 and abs(d["intercept"]) < 0.08
    assert d["slope"] == pytest.approx(1 / 0.6, abs=0.1)
    assert d["ece_levelled"] > 0.04

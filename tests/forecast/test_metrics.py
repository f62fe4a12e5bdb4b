"""WAPE, MASE and coverage on hand-computed examples and edge cases."""

from __future__ import annotations

import math

import pytest

from salesml.models.revenue.metrics import ForecastMetricsError, coverage, mase, wape


def test_wape_by_hand() -> None:
    # |10-8| + |20-25| + |0-1| = 8 over 30
    assert wape([10, 20, 0], [8, 25, 1]) == pytest.approx(8 / 30)
    assert wape([10, 20], [10, 20]) == 0.0


def test_wape_edges() -> None:
    assert math.isnan(wape([], []))
    assert math.isnan(wape([0, 0], [0, 0]))  # nothing to forecast: undefined, not perfect
    assert wape([0, 0], [1, 0]) == math.inf
    with pytest.raises(ForecastMetricsError, match="same length"):
        wape([1, 2], [1])
    with pytest.raises(ForecastMetricsError, match="NaN"):
        wape([1, float("nan")], [1, 2])


def test_mase_by_hand() -> None:
    train = [1, 2, 3, 4, 3, 4, 5, 6]  # season 4: |3-1|, |4-2|, |5-3|, |6-4| -> scale 2
    assert mase([7, 8], [6, 10], train, season=4) == pytest.approx((1 + 2) / 2 / 2)
    # history of one season or less: lag 1, scale mean |diff| = 1
    assert mase([5], [7], [1, 2, 3], season=4) == pytest.approx(2.0)


def test_mase_edges() -> None:
    assert math.isnan(mase([], [], [1, 2, 3], 1))
    assert math.isnan(mase([1], [1], [5], 1))
    assert math.isnan(mase([3], [3], [2, 2, 2], 1))  # zero scale, zero error: undefined
    assert mase([3], [4], [2, 2, 2], 1) == math.inf
    with pytest.raises(ForecastMetricsError, match="season"):
        mase([1], [1], [1, 2], 0)


def test_coverage_by_hand() -> None:
    # bounds are inclusive: 5 in [5, 6], 10 not in [0, 9], 3 in [1, 4], 7 not in [8, 9]
    assert coverage([5, 10, 3, 7], [5, 0, 1, 8], [6, 9, 4, 9]) == 0.5
    assert math.isnan(coverage([], [], []))
    # An export without amounts: zero revenue inside zero-width intervals tests nothing.
    assert math.isnan(coverage([0, 0], [0, 0], [0, 0]))
    assert coverage([0, 0], [0, 0], [0, 5]) == 1.0
    with pytest.raises(ForecastMetricsError, match="lower bounds exceed"):
        coverage([1], [2], [1])

"""Reconciliation: segments add up to the total to the cent, proportions stay sensible."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesml.errors import ConfigError
from salesml.models.revenue.reconcile import (
    allocate_cents,
    proportional_weights,
    reconcile,
    reconcile_period,
    to_cents,
    wls_weights,
)

amounts = st.floats(min_value=-1e5, max_value=1e7, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(
    total=st.floats(min_value=-1e6, max_value=1e9, allow_nan=False),
    seg=st.lists(amounts, min_size=1, max_size=12),
    var=st.lists(st.floats(min_value=0, max_value=1e12), min_size=12, max_size=12),
    method=st.sampled_from(["wls", "proportional"]),
)
def test_sums_to_the_cent(total: float, seg: list[float], var: list[float], method: str) -> None:
    cents = reconcile_period(total, seg, var[: len(seg)], method)
    assert cents.dtype == np.int64
    assert int(cents.sum()) == int(to_cents(total))
    if total >= 0:
        assert (cents >= 0).all()


@settings(max_examples=100, deadline=None)
@given(
    total=st.floats(min_value=0, max_value=1e8, allow_nan=False),
    seg=st.lists(st.floats(min_value=0.01, max_value=1e7), min_size=2, max_size=10),
)
def test_proportions_are_kept(total: float, seg: list[float]) -> None:
    s = np.asarray(seg)
    # without intervals, WLS-var uses v = s: the adjustment is proportional
    for method in ("wls", "proportional"):
        cents = reconcile_period(total, s, None, method)
        expected = total * s / s.sum() * 100
        assert np.abs(cents - expected).max() <= 1.0 + 1e-6 * expected.max()


def test_wls_moves_uncertain_segments_more() -> None:
    r = wls_weights(1300.0, [500.0, 500.0], [100.0, 900.0])
    np.testing.assert_allclose(r, [530.0, 770.0])
    assert r.sum() == pytest.approx(1300.0)


def test_wls_keeps_non_negative_and_zero_variance_segments() -> None:
    # shortfall: a big cut would push the uncertain segment negative; it stops at 0
    r = wls_weights(100.0, [80.0, 60.0, 10.0], [1.0, 1.0, 1e6])
    assert (r >= 0).all() and r.sum() == pytest.approx(100.0)
    assert r[2] == 0.0
    # a flat all-zero segment (zero-width interval) keeps 0
    r = wls_weights(200.0, [100.0, 0.0, 50.0], [100.0, 0.0, 100.0])
    assert r[1] == pytest.approx(0.0, abs=1e-6) and r.sum() == pytest.approx(200.0)
    # negative base forecasts count as 0 under a positive total
    p = proportional_weights(90.0, [-5.0, 30.0, 60.0])
    np.testing.assert_allclose(p, [0.0, 30.0, 60.0])
    np.testing.assert_allclose(proportional_weights(9.0, [0.0, -1.0, 0.0]), [3.0, 3.0, 3.0])


def test_largest_remainder() -> None:
    # 1/3 each of 1.00: 33 + 33 + 34 cents, the extra cent to the largest fraction
    got = allocate_cents(100, [33.3, 33.3, 33.4])
    assert list(got) == [33, 33, 34]
    assert allocate_cents(5, [0.0, 0.0]).sum() == 5
    assert list(allocate_cents(-3, [-1.5, -1.5], nonneg=False)) == [-2, -1] or list(
        allocate_cents(-3, [-1.5, -1.5], nonneg=False)
    ) == [-1, -2]


def frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    periods = pd.to_datetime(["2025-07-01", "2025-08-01"])
    total = pd.DataFrame({"period_start": periods, "forecast": [1000.005, 2000.0]})
    seg = pd.DataFrame(
        {
            "period_start": np.repeat(periods, 3),
            "segment": ["A", "B", "C"] * 2,
            "forecast": [300.0, 300.0, 300.0, 1200.0, 600.0, 0.0],
            "lower_80": [250.0, 200.0, 290.0, 1000.0, 500.0, 0.0],
            "upper_80": [350.0, 400.0, 310.0, 1400.0, 700.0, 0.0],
            "lower_95": [220.0, 150.0, 280.0, 900.0, 450.0, 0.0],
            "upper_95": [380.0, 450.0, 320.0, 1500.0, 750.0, 0.0],
        }
    )
    return total, seg


@pytest.mark.parametrize("method", ["wls", "proportional"])
def test_frame_reconciles_and_moves_intervals(method: str) -> None:
    total, seg = frames()
    out = reconcile(total, seg, method)
    sums = out.assign(c=to_cents(out["forecast"])).groupby("period_start")["c"].sum()
    assert list(sums) == list(to_cents(total["forecast"]))
    assert (out["lower_95"] <= out["lower_80"]).all()
    assert (out["lower_80"] <= out["forecast"]).all()
    assert (out["forecast"] <= out["upper_80"]).all()
    assert (out["upper_80"] <= out["upper_95"]).all()
    assert (out["lower_95"] >= 0).all()
    np.testing.assert_array_equal(out["base_forecast"], seg["forecast"])
    # the zero segment stays at zero in the second period
    c = out[(out["segment"] == "C") & (out["period_start"] == "2025-08-01")].iloc[0]
    assert c["forecast"] == 0.0 and c["upper_95"] == 0.0
    a = out.iloc[0]
    if method == "wls":  # shifted: the width is kept
        assert a["upper_80"] - a["lower_80"] == pytest.approx(100.0, abs=0.011)
    else:  # scaled with the point
        ratio = a["forecast"] / 300.0
        assert a["upper_80"] == pytest.approx(350.0 * ratio, abs=0.011)


def test_frame_errors() -> None:
    total, seg = frames()
    with pytest.raises(ConfigError, match="no total forecast"):
        reconcile(total.iloc[:1], seg)
    with pytest.raises(ConfigError, match="unknown reconciliation"):
        reconcile(total, seg, "mint")

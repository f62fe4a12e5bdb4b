"""The close-timing model's calendar bin columns (month of the bin's middle, quarter ends in
the bin) are computed in numpy's datetime64; they are the numbers of pandas' DatetimeIndex
formulas they replaced, bit for bit, NaT rows included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesml.models.timing.bundle import EDGES, bin_columns


def _reference(as_of: pd.Series, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``bin_month`` and ``bin_quarter_ends`` by the DatetimeIndex formulas, deal-major."""
    edges = np.asarray(EDGES, dtype=float)
    starts = np.tile(edges[:-1], len(as_of))
    widths = np.tile(np.diff(edges), len(as_of))
    when = np.repeat(pd.to_datetime(as_of).to_numpy("datetime64[us]"), n_bins)
    start_at = pd.DatetimeIndex(when + (starts * 86_400e6).astype("timedelta64[us]"))
    mid_at = start_at + pd.to_timedelta(widths / 2, unit="D")
    end_at = start_at + pd.to_timedelta(widths, unit="D")
    quarters = (end_at.year * 4 + (end_at.month - 1) // 3) - (
        start_at.year * 4 + (start_at.month - 1) // 3
    )
    return mid_at.month.to_numpy(dtype=float), np.asarray(quarters, dtype=float)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_calendar_bin_columns_equal_the_datetimeindex_formulas(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 400
    frame = pd.DataFrame({"age_days": rng.uniform(0, 400, n), "days_to_expected_close": 0.0})
    # Any microsecond from 1960 to 2060 (before the epoch too), some unknown.
    micros = rng.integers(-10 * 365 * 86_400 * 10**6, 90 * 365 * 86_400 * 10**6, n)
    as_of = pd.Series(pd.to_datetime(micros, unit="us"))
    as_of[rng.random(n) < 0.05] = pd.NaT
    k = len(EDGES) - 1
    _, extra = bin_columns(frame, as_of)
    month, quarters = _reference(as_of, k)
    np.testing.assert_array_equal(extra["bin_month"], month)
    np.testing.assert_array_equal(extra["bin_quarter_ends"], quarters)
    assert np.isnan(extra["bin_month"]).sum() == k * int(as_of.isna().sum())

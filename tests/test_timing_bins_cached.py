"""The close-timing model's bin columns at one as_of come from a per-as_of cache (the API's
one-row what-ifs); they are the numbers of the general computation, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesml.models.timing.bundle import EDGES, bin_columns


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("weighted", [False, True])
def test_bin_columns_at_one_as_of_equal_the_general_computation(seed: int, weighted: bool) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 6))
    frame = pd.DataFrame(
        {
            "age_days": rng.uniform(0, 400, n),
            "days_to_expected_close": np.where(rng.random(n) < 0.3, np.nan, rng.normal(30, 40, n)),
        }
    )
    as_of = pd.Timestamp("2025-01-01") + pd.Timedelta(seconds=int(rng.integers(0, 3e7)))
    calendar = (
        {"month": rng.uniform(0.5, 2, 12).tolist(), "weekday": rng.uniform(0.2, 1.5, 7).tolist()}
        if weighted
        else None
    )
    k = len(EDGES) - 1
    every = np.ones(n * k, dtype=bool)  # the same pairs, through the general path
    row, cached = bin_columns(frame, as_of, calendar=calendar)
    row_general, general = bin_columns(frame, as_of, keep=every, calendar=calendar)
    np.testing.assert_array_equal(row, row_general)
    assert list(cached) == list(general)
    for name in general:
        np.testing.assert_array_equal(cached[name], general[name], err_msg=name)
    # Another as_of gets its own columns, not the cached ones.
    later = bin_columns(frame, as_of + pd.Timedelta(days=40), calendar=calendar)[1]
    assert not np.array_equal(later["bin_month"], cached["bin_month"])

"""Period helpers: weeks start Monday, half-open periods."""

from __future__ import annotations

import pandas as pd
import pytest

from salesml.errors import ConfigError
from salesml.models.revenue.periods import (
    period_end,
    period_range,
    period_start,
    period_starts,
    periods_ahead,
    periods_between,
    season_length,
)


@pytest.mark.parametrize(
    ("ts", "freq", "start", "end"),
    [
        ("2025-07-02 13:45", "week", "2025-06-30", "2025-07-07"),  # Wednesday -> Monday
        ("2025-06-30 00:00", "week", "2025-06-30", "2025-07-07"),  # Monday stays
        ("2025-07-06 23:59", "week", "2025-06-30", "2025-07-07"),  # Sunday belongs to it
        ("2025-02-28 18:00", "month", "2025-02-01", "2025-03-01"),
        ("2024-11-15", "quarter", "2024-10-01", "2025-01-01"),
        ("2025-03-31 23:00", "quarter", "2025-01-01", "2025-04-01"),
    ],
)
def test_start_and_end(ts: str, freq: str, start: str, end: str) -> None:
    assert period_start(ts, freq) == pd.Timestamp(start)
    assert period_end(ts, freq) == pd.Timestamp(end)


def test_tz_aware_is_converted_to_utc() -> None:
    # 2025-07-01 01:00 in Berlin is still June 30 in UTC
    ts = pd.Timestamp("2025-07-01 01:00", tz="Europe/Berlin")
    assert period_start(ts, "month") == pd.Timestamp("2025-06-01")


def test_range_starts_at_the_containing_period() -> None:
    weeks = period_range("2025-01-01", 3, "week")
    assert list(weeks) == [pd.Timestamp(d) for d in ("2024-12-30", "2025-01-06", "2025-01-13")]
    assert all(d.weekday() == 0 for d in weeks)
    quarters = period_range("2025-05-20", 3, "quarter")
    assert list(quarters) == [pd.Timestamp(d) for d in ("2025-04-01", "2025-07-01", "2025-10-01")]
    assert len(period_range("2025-05-20", 0, "month")) == 0


def test_between_and_ahead() -> None:
    months = periods_between(pd.Timestamp("2025-01-15"), pd.Timestamp("2025-04-01"), "month")
    assert list(months.month) == [1, 2, 3]
    assert periods_ahead(pd.Timestamp("2025-01-15"), pd.Timestamp("2025-04-30"), "month") == 3
    assert periods_ahead(pd.Timestamp("2025-04-30"), pd.Timestamp("2025-01-15"), "month") == -3


def test_vectorised_matches_scalar() -> None:
    stamps = pd.Series(pd.to_datetime(["2025-07-02 10:00", "2024-12-31 23:59", None]))
    for freq in ("week", "month", "quarter"):
        got = period_starts(stamps, freq)
        assert got.iloc[0] == period_start(stamps.iloc[0], freq)
        assert got.iloc[1] == period_start(stamps.iloc[1], freq)
        assert pd.isna(got.iloc[2])


def test_unknown_freq_and_season() -> None:
    with pytest.raises(ConfigError, match="use one of week, month, quarter"):
        period_start("2025-01-01", "day")
    assert [season_length(f) for f in ("week", "month", "quarter")] == [52, 12, 4]

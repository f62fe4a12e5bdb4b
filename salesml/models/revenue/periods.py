"""Calendar periods for revenue forecasts: weeks (starting Monday), months and quarters.

A period is named by its start, a naive timestamp at midnight (naive = UTC, as the warehouse
stores time). Periods are half-open: ``[period_start, period_end)``, so ``period_end`` is the
start of the next period and a timestamp equal to it belongs to the next period.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal, get_args

import pandas as pd

from salesml.errors import ConfigError

Freq = Literal["week", "month", "quarter"]
FREQS: tuple[str, ...] = get_args(Freq)

# pandas spellings: periods for "which period holds ts", offsets for "the next n starts".
_PERIOD_ALIAS: dict[str, str] = {"week": "W-SUN", "month": "M", "quarter": "Q-DEC"}
_RANGE_ALIAS: dict[str, str] = {"week": "W-MON", "month": "MS", "quarter": "QS-JAN"}
# Periods per year: the season of seasonal naive and the unit of "years of history".
SEASON: dict[str, int] = {"week": 52, "month": 12, "quarter": 4}
# Mean length of a period in days (for Prophet's seasonality periods and horizons).
PERIOD_DAYS: dict[str, float] = {"week": 7.0, "month": 365.25 / 12, "quarter": 365.25 / 4}


def check_freq(freq: str) -> Freq:
    """``freq`` itself when it is a known period, else a ``ConfigError`` that lists them."""
    if freq not in FREQS:
        raise ConfigError(f"unknown forecast period {freq!r}; use one of {', '.join(FREQS)}")
    return freq  # type: ignore[return-value]


def season_length(freq: str) -> int:
    """Periods in a year: 52 weeks, 12 months or 4 quarters."""
    return SEASON[check_freq(freq)]


def to_naive_utc(ts: datetime | date | str | pd.Timestamp) -> pd.Timestamp:
    """A timestamp as the warehouse stores it: naive UTC (a bare date means its midnight)."""
    out = pd.Timestamp(ts)
    if out.tzinfo is not None:
        out = out.tz_convert("UTC").tz_localize(None)
    return out


def period_start(ts: datetime | date | str | pd.Timestamp, freq: str) -> pd.Timestamp:
    """Start (midnight) of the week (Monday), month or quarter that contains ``ts``."""
    alias = _PERIOD_ALIAS[check_freq(freq)]
    return pd.Timestamp(to_naive_utc(ts).to_period(alias).start_time).normalize()


def period_end(ts: datetime | date | str | pd.Timestamp, freq: str) -> pd.Timestamp:
    """Exclusive end of the period that contains ``ts``: the start of the next period."""
    return period_range(period_start(ts, freq), 2, freq)[1]


def period_range(
    start: datetime | date | str | pd.Timestamp, n: int, freq: str
) -> pd.DatetimeIndex:
    """The starts of ``n`` consecutive periods, the first being the one that contains ``start``."""
    if n < 0:
        raise ConfigError(f"a period range needs n >= 0 periods, got {n}")
    first = period_start(start, freq)
    return pd.date_range(first, periods=n, freq=_RANGE_ALIAS[freq], name="period_start")


def periods_between(start: pd.Timestamp, stop: pd.Timestamp, freq: str) -> pd.DatetimeIndex:
    """Starts of the periods from the one containing ``start`` up to, excluding, ``stop``'s.

    ``stop`` should be a period start; every returned period then ends on or before ``stop``.
    """
    first = period_start(start, freq)
    last = period_start(stop, freq)
    if last <= first:
        return pd.DatetimeIndex([], dtype="datetime64[ns]", name="period_start")
    idx = pd.date_range(first, last, freq=_RANGE_ALIAS[freq], inclusive="left")
    return idx.rename("period_start")


def period_starts(values: pd.Series, freq: str) -> pd.Series:
    """Vectorised :func:`period_start` of a datetime Series (NaT stays NaT)."""
    alias = _PERIOD_ALIAS[check_freq(freq)]
    stamps = pd.to_datetime(values)
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps.dt.to_period(alias).dt.start_time.dt.normalize()


def periods_ahead(start: pd.Timestamp, later: pd.Timestamp, freq: str) -> int:
    """How many periods ``later``'s period lies after ``start``'s (0 = the same period)."""
    a, b = period_start(start, freq), period_start(later, freq)
    if b < a:
        return -periods_ahead(b, a, freq)
    return len(periods_between(a, b, freq))

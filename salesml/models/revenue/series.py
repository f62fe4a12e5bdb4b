"""Won revenue per period, overall or per segment: the history the time-series model learns.

Rules (docs/forecast-timeseries.md):

- A won deal counts in the period that contains its ``closed_at``, with its ``amount``. A won
  deal without an amount adds 0 (its revenue is unknown); the count of such deals is kept in
  ``frame.attrs["won_without_amount"]``.
- Time is an argument: only deals closed strictly before ``end`` count.
- Periods run from the first period with any deal (earliest ``created_at``, or ``closed_at``
  where there is no creation time; or ``start`` when given) to the last *complete* period
  before ``end``. The period that contains ``end`` is partial unless ``end`` is exactly a period
  start, and is left out: a half-finished month would read as a revenue drop. Its wins so far
  are not lost; they appear once the period is complete.
- Every segment gets every period, with 0 where it won nothing, so segment series add up to the
  total period by period. A missing segment value becomes ``"(none)"``.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from salesml.errors import ConfigError
from salesml.models.revenue.periods import (
    period_start,
    period_starts,
    periods_between,
    to_naive_utc,
)

TOTAL = "total"
NO_SEGMENT = "(none)"
SEGMENT_DIMENSIONS: tuple[str, ...] = ("team", "region", "product")
SERIES_COLUMNS: tuple[str, ...] = ("period_start", "segment", "revenue")


def load_won_deals(con: duckdb.DuckDBPyConnection, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """Won deals from the warehouse ``deals`` table, with the columns the series needs.

    Returns deal_id, status, created_at, closed_at, amount, team, region, product (one row per
    won deal closed before ``end`` when given). ``attrs["history_start"]`` holds the earliest
    ``created_at`` of *all* deals, so the series starts where the CRM history starts even
    when the first deals were lost; pass it as ``start=`` to :func:`won_revenue_series`.
    """
    cur = con.cursor()
    try:
        where, params = "status = 'won' AND closed_at IS NOT NULL", []
        if end is not None:
            where += " AND closed_at < ?"
            params.append(to_naive_utc(end).to_pydatetime())
        frame = cur.execute(
            "SELECT deal_id, status, created_at, closed_at, amount, team, region, product "
            f"FROM deals WHERE {where} ORDER BY closed_at, deal_id",
            params,
        ).df()
        first = cur.execute("SELECT min(coalesce(created_at, closed_at)) FROM deals").fetchone()
    finally:
        cur.close()
    frame["amount"] = frame["amount"].astype("float64")
    if first is not None and first[0] is not None:
        frame.attrs["history_start"] = to_naive_utc(first[0])
    return frame


def won_revenue_series(
    deals: pd.DataFrame,
    freq: str,
    by: str | None,
    end: pd.Timestamp,
    start: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Won revenue per complete period before ``end``, for the company or per segment.

    Args:
        deals: the canonical deals table (at least status, closed_at, amount; created_at
            for the start; the ``by`` column). Other rows (open, lost) only set the start.
        freq: ``"week"`` (weeks start Monday), ``"month"`` or ``"quarter"``.
        by: ``None`` for one series with segment ``"total"``; else a deals column such as
            ``"team"``, ``"region"`` or ``"product"``.
        end: the as-of moment (naive = UTC). Deals closed at or after it are ignored and the
            period containing it is left out unless ``end`` is a period start.
        start: first period of the series (default: the first period with any deal; see
            :func:`load_won_deals` for the warehouse's history start).

    Returns:
        Columns period_start, segment, revenue; sorted by segment, then period; one row per
        segment per period (no rows when there is no complete period).
    """
    for col in ("status", "closed_at", "amount"):
        if col not in deals.columns:
            raise ConfigError(f"the deals table has no {col!r} column; pass canonical deals")
    if by is not None and by not in deals.columns:
        raise ConfigError(f"cannot split revenue by {by!r}: the deals table has no such column")
    end_ts = to_naive_utc(end)
    stop = period_start(end_ts, freq)  # the last complete period ends here (or at end_ts)
    # The period holding `end` is partial (unless `end` starts a period): leave it out.
    stop_excl = stop if stop != end_ts else end_ts
    closed = _naive(deals["closed_at"])
    first = _first_moment(deals, closed, start)
    empty = pd.DataFrame(
        {
            "period_start": pd.Series([], dtype="datetime64[ns]"),
            "segment": pd.Series([], dtype=object),
            "revenue": pd.Series([], dtype="float64"),
        }
    )
    if first is None:
        return empty
    grid = periods_between(first, stop_excl, freq)
    if len(grid) == 0:
        return empty

    status = deals["status"].astype("string").str.lower()
    won = (status == "won").fillna(False).to_numpy(dtype=bool)
    won &= closed.notna().to_numpy() & (closed < stop_excl).to_numpy()
    won &= (closed >= grid[0]).to_numpy()
    amounts = pd.to_numeric(deals["amount"], errors="coerce")
    missing_amount = int((won & amounts.isna().to_numpy()).sum())
    segments = _segments(deals, by)
    wins = pd.DataFrame(
        {
            "period_start": pd.DatetimeIndex(period_starts(closed[won], freq)).as_unit("ns"),
            "segment": segments[won].to_numpy(),
            "revenue": amounts[won].fillna(0.0).to_numpy(dtype=np.float64),
        }
    )
    sums = wins.groupby(["segment", "period_start"], sort=True)["revenue"].sum()
    # Every segment seen on a deal up to `end` gets a series, even with no wins yet.
    seen = segments[(_created_or_closed(deals, closed) < stop_excl).to_numpy()]
    names = sorted(set(seen.tolist()) | set(wins["segment"].tolist()))
    if by is None:
        names = [TOTAL]
    index = pd.MultiIndex.from_product(
        [names, pd.DatetimeIndex(grid).as_unit("ns")], names=["segment", "period_start"]
    )
    full = sums.reindex(index, fill_value=0.0).reset_index()
    out = full[["period_start", "segment", "revenue"]].copy()
    out["segment"] = out["segment"].astype(object)
    out["revenue"] = out["revenue"].astype("float64")
    out.attrs["won_without_amount"] = missing_amount
    return out.reset_index(drop=True)


def series_of(frame: pd.DataFrame, segment: str = TOTAL) -> pd.Series:
    """One segment's revenue from a :func:`won_revenue_series` frame, indexed by period_start."""
    part = frame[frame["segment"] == segment]
    return pd.Series(
        part["revenue"].to_numpy(dtype=np.float64),
        index=pd.DatetimeIndex(part["period_start"], name="period_start"),
        name=segment,
    )


def _naive(values: pd.Series) -> pd.Series:
    stamps = pd.to_datetime(values)
    if isinstance(stamps.dtype, pd.DatetimeTZDtype):
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps


def _created_or_closed(deals: pd.DataFrame, closed: pd.Series) -> pd.Series:
    if "created_at" in deals.columns:
        return _naive(deals["created_at"]).fillna(closed)
    return closed


def _first_moment(
    deals: pd.DataFrame, closed: pd.Series, start: pd.Timestamp | None
) -> pd.Timestamp | None:
    if start is not None:
        return to_naive_utc(start)
    if "history_start" in deals.attrs:
        return to_naive_utc(deals.attrs["history_start"])
    moments = _created_or_closed(deals, closed).dropna()
    if moments.empty:
        return None
    return to_naive_utc(moments.min())


def _segments(deals: pd.DataFrame, by: str | None) -> pd.Series:
    if by is None:
        return pd.Series(TOTAL, index=deals.index, dtype=object)
    values = deals[by].astype(object)
    text = values.where(values.notna(), NO_SEGMENT).astype(str).str.strip()
    return text.where(text != "", NO_SEGMENT).astype(object)

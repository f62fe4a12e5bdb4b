"""The generators' own expected won revenue per day: the oracle of the foreign benchmark.

A forecast of these values is the best any forecaster can do in expectation; its WAPE on the
judged periods is the history's irreducible noise. Read from the generators' parameters and
truth files, never from the judged actuals; the generators themselves are not changed.

- ``order_expected``: orders (``benchmarks.foreign.orders``): expected orders per day
  (``daily_intensity`` of the seed's drawn shape) × the expected order value.
- ``synth_expected``: ``salesml.synth`` histories: given the deals that will exist (creation
  time, true win probability, amount), each deal's win and cycle are still drawn: Σ P(win) ×
  amount × P(a won deal created then closes on the day) under the generator's log-normal
  cycle (median from its truth, σ ``CYCLE_SIGMA``, weekends moved to Monday). It knows every
  deal that will be created, which no forecaster does, so it is if anything too good.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from benchmarks.foreign.orders import CATEGORIES, daily_intensity, draw_shape
from salesml.models.revenue.periods import period_starts
from salesml.synth import catalog, effects
from salesml.synth.truth import DEALS_TRUTH, TRUTH_DIR

ORDER_MIX = (0.5, 0.2, 0.3)  # the category shares of ``make_orders``
MAX_CYCLE_DAYS = 1200  # P(cycle > 1200 d) < 1e-3 for every deal of the generator


def order_expected(seed: int, start: date, end: date) -> pd.Series:
    """Expected won revenue per day in [start, end) of ``write_orders(…, seed, start, end)``."""
    shape = draw_shape(np.random.default_rng(seed))  # the first draws of ``make_orders``
    days = pd.date_range(start, end, freq="D", inclusive="left")
    # amount = gamma(2, price / 2) + 1: mean price + 1 (rounding to cents aside)
    value = sum(p * (price + 1.0) for p, (_, price) in zip(ORDER_MIX, CATEGORIES, strict=True))
    return pd.Series(daily_intensity(days, shape) * value, index=days)


def synth_expected(export: Path, deals: pd.DataFrame) -> pd.Series:
    """Expected won revenue per day of a ``salesml.synth`` export (``deals``: the imported
    deals table with deal_id, created_at, amount)."""
    truth = pd.read_parquet(export / TRUTH_DIR / DEALS_TRUTH)
    frame = truth.merge(deals[["deal_id", "created_at", "amount"]], on="deal_id", how="inner")
    lost = frame["eventual_status"].astype(str) == "lost"
    stage = frame["exit_stage"].astype(str).map(catalog.STAGES.index).to_numpy()
    factor = np.asarray(effects.CYCLE_LOST_EXIT_FACTOR)[stage]  # by exit stage
    # the won cycle's median: the truth's median without a lost deal's exit-stage factor
    log_median = np.log(frame["cycle_median_days"].to_numpy(float)) - np.where(
        lost, np.log(factor), 0.0
    )
    created = pd.to_datetime(frame["created_at"])
    if isinstance(created.dtype, pd.DatetimeTZDtype):
        created = created.dt.tz_convert("UTC").dt.tz_localize(None)
    day0 = created.dt.normalize()
    # the office clock squeezes a raw day into 08:00–18:00: undo it for the fraction of day
    hours = (created - day0).dt.total_seconds().to_numpy() / 3600.0
    frac = np.clip((hours - 8.0) / 10.0, 0.0, 1.0)
    k = np.arange(MAX_CYCLE_DAYS + 1, dtype=float)
    # P(floor(t + cycle) = day0 + k) with t = frac, cycle log-normal
    upper = np.log(np.maximum(k + 1.0 - frac[:, None], 1e-9))
    lower = np.log(np.maximum(k - frac[:, None], 1e-9))
    sigma = effects.CYCLE_SIGMA
    cdf_hi = norm.cdf((upper - log_median[:, None]) / sigma)
    cdf_lo = np.where(k - frac[:, None] > 0, norm.cdf((lower - log_median[:, None]) / sigma), 0.0)
    amount = frame["amount"].fillna(0).to_numpy(float)
    weight = frame["true_win_probability"].to_numpy(float) * amount
    mass = (cdf_hi - cdf_lo) * weight[:, None]
    base = (day0 - pd.Timestamp("1970-01-01")).dt.days.to_numpy()
    day = base[:, None] + k[None, :].astype(np.int64)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday (3); Monday = 0
    day = day + np.where(weekday >= 5, 7 - weekday, 0)  # closes on weekdays only
    totals = np.bincount((day - day.min()).ravel(), weights=mass.ravel())
    offsets = pd.to_timedelta(day.min() + np.arange(len(totals)), unit="D")
    index = pd.Timestamp("1970-01-01") + offsets
    return pd.Series(totals, index=pd.DatetimeIndex(index))


def period_totals(daily: pd.Series, freq: str) -> pd.Series:
    """Daily values summed per period (week, month or quarter start)."""
    starts = period_starts(pd.Series(daily.index, index=daily.index), freq)
    return daily.groupby(starts.to_numpy()).sum()

"""Forecasts that agree across period lengths: a quarter is the sum of its months.

Each period length has its own model, chosen on its own backtests, so left alone the quarter's
forecast can come out below the forecast of a month inside it (issue 17: Q4 $1.97M next to
December $2.26M, with Q4 already holding $905k won). For the quarters the pipeline sees (the
current one and the next, ``COHERENT_QUARTERS``), the served quarter is built bottom-up from the
monthly forecast:

- **point**: what was won in the quarter's months before the current one, plus the monthly
  forecast of every month from the current one to the quarter's end (each already holding what
  is won in it). So a quarter is never below what is won in it, never below any month inside
  it, and equal to the sum of its months to the cent.
- **bounds**: the months' bounds are added level by level, which is exact when the months'
  errors move together (comonotone: one shared level that is too high or too low for the whole
  quarter, the main error of a level forecast) and too wide when they are independent. It is
  the conservative choice: the months of one quarter share the pipeline's deals and the
  series' level, so their errors are positively correlated, and adding quantiles never
  understates that. A quarter's 95 % range then holds its 80 % range, and is strictly wider
  whenever a month's is.

Later quarters keep the quarter model (chosen on quarterly backtests): a year out the monthly
model is extrapolating its errors, and the quarterly series is the better-measured one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from salesml.models.revenue.periods import period_range, period_start, period_starts
from salesml.models.revenue.reconcile import to_cents

COHERENT_QUARTERS = 2  # the current quarter and the next: the ones the pipeline sees
MONTHS_PER_QUARTER = 3
VALUE_COLUMNS = ("forecast", "lower_80", "upper_80", "lower_95", "upper_95")


def months_needed(as_of: pd.Timestamp, quarters: int = COHERENT_QUARTERS) -> int:
    """Months from the one holding ``as_of`` to the end of the ``quarters``-th quarter."""
    first = period_start(as_of, "quarter")
    end = period_range(first, quarters + 1, "quarter")[-1]
    return len(pd.date_range(period_start(as_of, "month"), end, freq="MS", inclusive="left"))


def quarters_from_months(
    quarters: pd.DataFrame,
    months: pd.DataFrame,
    quarter_won: float,
    month_won: float,
    as_of: pd.Timestamp,
    steps: int = COHERENT_QUARTERS,
) -> pd.DataFrame:
    """One segment's quarter rows with the first ``steps`` quarters summed from its month rows.

    Args:
        quarters: the segment's quarter rows (period_start and ``VALUE_COLUMNS``), from the
            quarter holding as_of on.
        months: the same segment's month rows, from the month holding as_of on.
        quarter_won / month_won: revenue won so far in the current quarter / current month.

    A quarter whose remaining months are not all in ``months`` keeps its own row.
    """
    out = quarters.reset_index(drop=True).copy()
    if months.empty or out.empty:
        return out
    month_rows = months.reset_index(drop=True)
    month_quarter = period_starts(month_rows["period_start"], "quarter")
    current_quarter = period_start(as_of, "quarter")
    current_month = period_start(as_of, "month")
    # Won in the quarter's months before the current month: those months are over.
    earlier = int(to_cents(max(quarter_won, 0.0))) - int(to_cents(max(month_won, 0.0)))
    starts = pd.DatetimeIndex(out["period_start"])
    for i in range(min(steps, len(out))):
        q = starts[i]
        first_open = max(q, current_month)  # the quarter's months not over yet start here
        expected = len(
            pd.date_range(first_open, period_range(q, 2, "quarter")[1], freq="MS", inclusive="left")
        )
        inside = month_rows[(month_quarter == q).to_numpy()]
        if len(inside) != expected or expected == 0 or expected > MONTHS_PER_QUARTER:
            continue
        base = max(earlier, 0) if q == current_quarter else 0
        for column in VALUE_COLUMNS:
            cents = to_cents(inside[column].to_numpy(dtype=float)).sum()
            out.loc[i, column] = (base + int(cents)) / 100.0
    out["lower_80"] = np.minimum(out["lower_80"], out["forecast"])
    out["lower_95"] = np.minimum(out["lower_95"], out["lower_80"])
    out["upper_80"] = np.maximum(out["upper_80"], out["forecast"])
    out["upper_95"] = np.maximum(out["upper_95"], out["upper_80"])
    return out

"""A period's forecast is never below what is already won in it, and its range is zero-width only
when nothing is left to forecast: the rule lives where forecast rows are assembled
(``ForecastBundle.forecast``), so the CLI, the API and the report agree."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from features.history import make_history
from salesml.models.revenue.bundle import (
    BOUNDS,
    DEFAULT_LOG_ERRORS,
    ForecastBundle,
    FreqModel,
    key,
)
from salesml.models.revenue.periods import period_range
from salesml.models.revenue.pipeline import PipelineForecast
from serving.forecast import won_so_far

AS_OF = pd.Timestamp("2026-03-20")
FLAT = {"lower_95": -0.5, "lower_80": -0.3, "upper_80": 0.3, "upper_95": 0.5}


class Zeros:
    """A series model that forecasts 0 (the blend below reads the pipeline only)."""

    def __init__(self, freq: str) -> None:
        self.freq = freq

    def future_periods(self, n: int) -> pd.DatetimeIndex:
        return period_range(AS_OF, n, self.freq)

    def predict(self, h: int) -> Any:
        periods = self.future_periods(h)
        return SimpleNamespace(forecast=np.zeros(h), period_start=periods)


def pipeline(freq: str, expected: dict[tuple[str, str], float]) -> PipelineForecast:
    start = period_range(AS_OF, 1, freq)[0]
    rows = [
        {"dimension": d, "segment": s, "period_start": start, "expected": v}
        for (d, s), v in expected.items()
    ]
    return PipelineForecast(pd.DataFrame(rows))


def freq_model(freq: str, log_errors: dict[str, list[dict[str, float]]]) -> FreqModel:
    series: dict[str, Any] = {key("total", "total"): Zeros(freq)}
    series |= {key("team", t): Zeros(freq) for t in ("A", "B")}
    return FreqModel(freq, series, [[1.0, 0.0]], log_errors, {"total": 0.0, "segment": 0.0})


def test_reconciled_segments_never_fall_below_what_they_have_won() -> None:
    """Team A has won 100 and expects 80 more with a wide range, team B has won 100 and expects
    20; the total expects only 10 more. Reconciling whole forecasts took 85 off A (95 < 100
    won); now only the part not yet won is reconciled."""
    fm = freq_model("month", {"total": [FLAT], "segment": [FLAT]})
    bundle = ForecastBundle({"month": fm})
    pipe = pipeline("month", {("total", "total"): 10.0, ("team", "A"): 80.0, ("team", "B"): 20.0})
    won = {key("total", "total"): 200.0, key("team", "A"): 100.0, key("team", "B"): 100.0}
    rows = bundle.forecast("month", 1, AS_OF, pipe, won, by="team").set_index("segment")
    assert rows.loc["total", "forecast"] == 210.0
    assert rows.loc[["A", "B"], "forecast"].sum() == 210.0  # still coherent, to the cent
    for team in ("A", "B"):
        for column in ("forecast", *BOUNDS):
            assert rows.loc[team, column] >= 100.0, (team, column)


def test_forecast_and_bounds_are_at_least_the_won_so_far() -> None:
    fm = freq_model("month", {"total": [FLAT], "segment": [FLAT]})
    bundle = ForecastBundle({"month": fm})
    pipe = pipeline("month", {("total", "total"): 0.0})
    rows = bundle.forecast("month", 1, AS_OF, pipe, {key("total", "total"): 1234.56})
    assert (rows[["forecast", *BOUNDS]] >= 1234.56).all(axis=None)


def test_a_period_length_without_backtests_borrows_widths() -> None:
    """The quarter has no backtest errors (too little history: Maven's case). It used to get a
    zero-width range around an uncertain forecast; it now borrows the month's widths, and
    without any backtests at all the default widths."""
    quarter = freq_model("quarter", {})
    month = freq_model("month", {"total": [FLAT], "segment": [FLAT]})
    pipe = pipeline("quarter", {("total", "total"): 1000.0})
    borrowed = ForecastBundle({"quarter": quarter, "month": month})
    row = borrowed.forecast("quarter", 1, AS_OF, pipe, {}).iloc[0]
    assert row["lower_80"] < row["forecast"] < row["upper_80"]
    assert row["upper_80"] == round(1000.0 * math.exp(0.3), 2)
    alone = ForecastBundle({"quarter": quarter}).forecast("quarter", 1, AS_OF, pipe, {}).iloc[0]
    assert alone["upper_80"] == round(1000.0 * math.exp(DEFAULT_LOG_ERRORS["upper_80"]), 2)
    assert alone["lower_95"] == round(1000.0 * math.exp(DEFAULT_LOG_ERRORS["lower_95"]), 2)
    nothing = ForecastBundle({"quarter": quarter}).forecast(
        "quarter", 1, AS_OF, pipeline("quarter", {("total", "total"): 0.0}), {"total|total": 5.0}
    )
    assert (nothing[["forecast", *BOUNDS]] == 5.0).all(axis=None)  # nothing uncertain: exact


def test_a_deal_closed_at_the_as_of_moment_counts_as_won() -> None:
    """A deal closed at as_of is no longer open (the pipeline leaves it out), so it must count
    as won; it used to fall between the two and vanish from the forecast."""
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3"],
            "created_at": pd.Timestamp("2026-03-01"),
            "status": ["won", "won", "won"],
            "closed_at": [AS_OF - pd.Timedelta(days=1), AS_OF, AS_OF + pd.Timedelta(days=1)],
            "amount": [100.0, 40.0, 7.0],
        }
    )
    won = won_so_far(make_history(deals, exported_at=AS_OF), "month", AS_OF)
    assert won[key("total", "total")] == 140.0


def test_a_period_whose_last_day_is_the_as_of_is_what_was_won() -> None:
    """CRM dates are days: at an as_of on a month's last day (midnight: the whole day is in the
    data, as the KPIs count it complete) nothing of that month is left to forecast, so its
    forecast and range are what was won; the day before, the pipeline still adds to it."""
    fm = freq_model("month", {"total": [FLAT], "segment": [FLAT]})
    bundle = ForecastBundle({"month": fm})
    won = {key("total", "total"): 200.0}
    last_day = pd.Timestamp("2026-03-31")
    pipe = PipelineForecast(
        pd.DataFrame(
            [
                {
                    "dimension": "total",
                    "segment": "total",
                    "period_start": pd.Timestamp("2026-03-01"),
                    "expected": 10.0,
                }
            ]
        )
    )
    done = bundle.forecast("month", 2, last_day, pipe, won).iloc[0]
    assert done["forecast"] == 200.0
    assert all(done[b] == 200.0 for b in BOUNDS)
    before = bundle.forecast("month", 2, pd.Timestamp("2026-03-30"), pipe, won).iloc[0]
    assert before["forecast"] > 200.0 and before["upper_80"] > 200.0

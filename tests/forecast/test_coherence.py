"""Quarters agree with months (issue 17, review 20 finding 4): each period length's model is
chosen on its own backtests, and the demo's quarter came out below the December inside it
(Q4 $1.97M, December $2.26M, $905k already won in Q4), with its 80 % and 95 % ranges equal.
The current and next quarter are now the sums of their months."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.history import History, make_history
from salesml.models.revenue.bundle import BOUNDS, ForecastBundle, FreqModel, key
from salesml.models.revenue.periods import period_range, period_start
from serving.forecast import forecast_rows

AS_OF = pd.Timestamp("2026-12-07")
MONTHLY = 2_000_000.0  # what the month model expects per month
QUARTERLY = 1_100_000.0  # the independently chosen quarter model: far below three months
MONTH_ERRORS = {"lower_95": -0.6, "lower_80": -0.35, "upper_80": 0.3, "upper_95": 0.5}
# A quarter backtested on few origins: the 80 % and 95 % conformal bounds coincide.
QUARTER_ERRORS = {"lower_95": -0.1, "lower_80": -0.1, "upper_80": 0.1, "upper_95": 0.1}
TEAMS = ("A", "B")


class Flat:
    """A series model forecasting ``level`` per period (split evenly over the teams)."""

    def __init__(self, freq: str, level: float) -> None:
        self.freq, self.level = freq, level

    def future_periods(self, n: int) -> pd.DatetimeIndex:
        return period_range(pd.Timestamp("2026-01-01"), n + 40, self.freq)[-n:]

    def predict(self, h: int) -> Any:
        start = period_range(pd.Timestamp("2026-01-01"), 1, self.freq)[0]
        periods = period_range(start, h + 40, self.freq)
        return SimpleNamespace(forecast=np.full(len(periods), self.level), period_start=periods)


def freq_model(freq: str, level: float, errors: dict[str, float]) -> FreqModel:
    series: dict[str, Any] = {key("total", "total"): Flat(freq, level)}
    series |= {key("team", t): Flat(freq, level / len(TEAMS)) for t in TEAMS}
    table = [dict(errors) for _ in range(3)]
    return FreqModel(
        freq,
        series,
        [[0.0, 1.0]],  # the series alone: the case does not need a pipeline
        {"total": table, "segment": table},
        {"total": 0.0, "segment": 0.0},
    )


def bundle(*freqs: str) -> ForecastBundle:
    models = {
        "month": freq_model("month", MONTHLY, MONTH_ERRORS),
        "quarter": freq_model("quarter", QUARTERLY, QUARTER_ERRORS),
    }
    return ForecastBundle({f: models[f] for f in freqs})


def history(as_of: pd.Timestamp) -> History:
    """$905k won in Q4 2026 before December (A 600k, B 305k), and 40k in December by the 3rd."""
    closed = ["2026-10-12", "2026-11-03", "2026-11-20", "2026-12-03"]
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3", "D4"],
            "created_at": pd.Timestamp("2026-09-01"),
            "status": "won",
            "closed_at": pd.to_datetime(closed),
            "amount": [400_000.0, 305_000.0, 200_000.0, 40_000.0],
            "team": ["A", "B", "A", "B"],
        }
    )
    return make_history(deals, exported_at=as_of)


def rows_of(b: ForecastBundle, freq: str, horizon: int, as_of: pd.Timestamp, by: str | None = None):
    return forecast_rows(history(as_of), None, b, freq, horizon, as_of, by=by)


def test_the_case_the_quarter_model_alone_puts_below_its_december() -> None:
    """Written first: the quarter model on its own serves Q4 below December."""
    alone = rows_of(bundle("quarter"), "quarter", 3, AS_OF).iloc[0]
    december = rows_of(bundle("month"), "month", 1, AS_OF).iloc[0]
    assert alone["forecast"] < december["forecast"] + 905_000.0
    assert alone["lower_80"] == alone["lower_95"]  # and its ranges coincide


def test_the_current_and_next_quarter_are_the_sums_of_their_months() -> None:
    both = bundle("month", "quarter")
    quarters = rows_of(both, "quarter", 3, AS_OF)
    months = rows_of(both, "month", 4, AS_OF).set_index("period_start")
    q4, q1, q2 = (quarters.iloc[i] for i in range(3))
    december = months.loc[pd.Timestamp("2026-12-01")]
    first = months.loc[pd.Timestamp("2027-01-01") : pd.Timestamp("2027-03-01")]
    for column in ("forecast", *BOUNDS):
        assert q4[column] == pytest.approx(905_000.0 + december[column], abs=0.005)
        assert q1[column] == pytest.approx(first[column].sum(), abs=0.005)
    assert q4["forecast"] >= december["forecast"]
    assert q4["lower_95"] >= 945_000.0  # never below what is won in it
    assert all(q1["forecast"] >= m for m in first["forecast"])
    # The third quarter is the quarter model's own (chosen on quarterly backtests).
    alone = rows_of(bundle("quarter"), "quarter", 3, AS_OF).iloc[2]
    assert q2[["forecast", *BOUNDS]].tolist() == alone[["forecast", *BOUNDS]].tolist()


@pytest.mark.parametrize(
    "as_of", ["2026-10-01", "2026-11-15", "2026-12-07", "2026-12-30", "2027-02-28"]
)
def test_no_quarter_below_a_month_inside_it_and_95_holds_80(as_of: str) -> None:
    when = pd.Timestamp(as_of)
    both = bundle("month", "quarter")
    quarters = rows_of(both, "quarter", 2, when, by="team")
    months = rows_of(both, "month", 6, when, by="team")
    months["quarter"] = [period_start(p, "quarter") for p in months["period_start"]]
    for _, q in quarters.iterrows():
        inside = months[
            (months["quarter"] == q["period_start"]) & (months["segment"] == q["segment"])
        ]
        assert not inside.empty
        assert (q["forecast"] >= inside["forecast"] - 1e-9).all()
        assert q["lower_95"] <= q["lower_80"] <= q["forecast"] <= q["upper_80"] <= q["upper_95"]
        assert q["lower_95"] < q["lower_80"] and q["upper_80"] < q["upper_95"]  # not over yet
    # Segments still add up to the total, to the cent.
    for period, group in quarters.groupby("period_start"):
        total = group[group.index < 2]["forecast"].sum()
        teams = group[group.index >= 2]["forecast"].sum()
        assert round(teams, 2) == round(total, 2), period


def test_a_quarter_that_is_over_is_what_was_won() -> None:
    last_day = pd.Timestamp("2026-12-31")
    q4 = rows_of(bundle("month", "quarter"), "quarter", 2, last_day).iloc[0]
    assert (q4[["forecast", *BOUNDS]] == 945_000.0).all()

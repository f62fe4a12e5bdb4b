"""The oracle of the foreign revenue benchmark: the generators' own expected won revenue."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.foreign.oracle import order_expected, period_totals, synth_expected
from benchmarks.foreign.orders import make_orders
from benchmarks.foreign_revenue import Row
from salesml.synth import effects
from salesml.synth.truth import DEALS_TRUTH, TRUTH_DIR


def test_order_expectation_matches_what_the_generator_draws_on_average() -> None:
    """Two years of one seed's orders: the months' won revenue scatters around the expected
    values without bias. The gamma-mixed daily counts give a month about 9 % of noise (seed
    7), so the mean of 24 months is within 2 % (1 sd) and 6 % is a 3-sd bound."""
    start, end = date(2022, 1, 1), date(2024, 1, 1)
    deals, _ = make_orders(7, start, end)
    day = pd.to_datetime(deals["closed_at"]).dt.tz_localize(None).dt.normalize()
    won = deals.groupby(day)["amount"].sum()
    ratio = period_totals(won, "month") / period_totals(order_expected(7, start, end), "month")
    assert len(ratio) == 24
    assert ratio.mean() == pytest.approx(1.0, abs=0.06)
    assert ratio.min() > 0.7 and ratio.max() < 1.3


def _truth(tmp_path: Path, median: float, status: str, stage: str) -> Path:
    export = tmp_path / "export"
    (export / TRUTH_DIR).mkdir(parents=True)
    pd.DataFrame(
        {
            "deal_id": ["D1"],
            "true_win_probability": [0.25],
            "cycle_median_days": [median],
            "eventual_status": [status],
            "exit_stage": [stage],
        }
    ).to_parquet(export / TRUTH_DIR / DEALS_TRUTH)
    return export


def test_synth_expectation_spreads_win_probability_times_amount_over_weekdays(
    tmp_path: Path,
) -> None:
    """One deal worth 1,000 at P(win) 0.25, created on a Monday at noon (office clock): 250
    expected in total, on weekdays only, centred on the won cycle's median."""
    export = _truth(tmp_path, 20.0, "won", "Negotiation")
    deals = pd.DataFrame(
        {"deal_id": ["D1"], "created_at": [pd.Timestamp("2025-03-03 13:00")], "amount": [1000.0]}
    )
    daily = synth_expected(export, deals)
    assert daily.sum() == pytest.approx(250.0, rel=1e-3)
    assert not daily[daily.index.dayofweek >= 5].any()
    median_day = daily.index[np.searchsorted(daily.cumsum().to_numpy(), 125.0)]
    assert abs((median_day - pd.Timestamp("2025-03-03")).days - 20) <= 2


def test_a_lost_deal_is_expected_on_its_won_cycle_not_its_shorter_lost_one(
    tmp_path: Path,
) -> None:
    """The truth's median of a lost deal carries its exit stage's factor; a won close would
    have taken the median without it."""
    factor = effects.CYCLE_LOST_EXIT_FACTOR[0]
    export = _truth(tmp_path, 40.0 * factor, "lost", "Qualification")
    deals = pd.DataFrame(
        {"deal_id": ["D1"], "created_at": [pd.Timestamp("2025-03-03 13:00")], "amount": [1000.0]}
    )
    daily = synth_expected(export, deals)
    median_day = daily.index[np.searchsorted(daily.cumsum().to_numpy(), 125.0)]
    assert abs((median_day - pd.Timestamp("2025-03-03")).days - 40) <= 2


def test_oracle_ratio_is_unknown_without_an_oracle() -> None:
    row = Row("maven", "month", 2, 0.1, "blend", 0.5, 0.8, 0.2, 0.5, 1.0)
    assert row.oracle_ratio is None
    reachable = Row("orders-1", "month", 12, 0.1, "ensemble", 0.2, 0.12, 0.3, 0.1 / 0.12, 0.8, 0.06)
    assert reachable.oracle_ratio == pytest.approx(0.5)

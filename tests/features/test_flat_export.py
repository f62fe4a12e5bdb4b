"""A flat export (deals without stage history): the deals table's amount, stage and expected
close date are read as creation-time values only where the leakage screen finds them filled
alike on won, lost and open deals."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from features.build import build_features
from features.history import History, make_history
from features.single import deal_context, deal_features
from features.spec import excluded_flat_columns, flat_columns

START = pd.Timestamp("2025-01-06")


def flat_history(n: int = 120, seed: int = 3, *, won_only_amount: bool = False) -> History:
    """``n`` deals, no stage history: a third still open, the rest won or lost; closed deals
    carry the stage "Closed" and have their expected close date set to the closing date."""
    rng = np.random.default_rng(seed)
    created = START + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    status = np.array(["won", "lost", "open"])[np.arange(n) % 3]
    closed = created + pd.to_timedelta(rng.integers(20, 90, n), unit="D")
    closed = pd.Series(closed).where(status != "open")
    amount = np.round(rng.lognormal(9, 1, n), 2)
    if won_only_amount:
        amount = np.where(status == "lost", np.nan, amount)  # lost deals have none
    stage = np.where(status == "open", rng.choice(["Qualify", "Propose"], n), "Closed")
    deals = pd.DataFrame(
        {
            "deal_id": [f"D{i:03d}" for i in range(n)],
            "created_at": created,
            "status": status,
            "closed_at": closed,
            "amount": amount,
            "stage": stage,
            "expected_close_date": closed.fillna(pd.Timestamp("2026-06-01")),
        }
    )
    return make_history(deals, exported_at=pd.Timestamp("2026-01-01"))


def test_flat_export_reads_the_deal_table_amount_when_filled_alike() -> None:
    history = flat_history()
    assert "amount" in flat_columns(history)
    features = build_features(history, history.exported_at)
    deals = history.deals.set_index("deal_id")
    assert features["amount"].notna().all()
    np.testing.assert_allclose(features["amount"], deals.loc[features.index, "amount"])


def test_closing_stage_and_closing_date_stay_out_of_a_flat_export() -> None:
    history = flat_history()
    excluded = excluded_flat_columns(history)
    assert "closing stage" in excluded["stage"]
    assert "closing date" in excluded["expected_close_date"]
    features = build_features(history, history.exported_at)
    assert (features["current_stage"] == "missing").all()
    assert features["days_to_expected_close"].isna().all()


def test_won_only_amounts_stay_out() -> None:
    history = flat_history(won_only_amount=True)
    assert "amount" not in flat_columns(history)
    assert "won" in excluded_flat_columns(history)["amount"]
    assert build_features(history, history.exported_at)["amount"].isna().all()


def test_deals_with_stage_history_never_read_the_deal_table() -> None:
    history = flat_history()
    staged = history.deals["deal_id"].iloc[2::3].head(5)  # open deals
    rows = pd.DataFrame(
        {
            "deal_id": staged,
            "stage": "Qualify",
            "changed_at": START,
            "amount": np.nan,
            "expected_close_date": pd.NaT,
        }
    )
    history = make_history(history.deals, stage_history=rows, exported_at=history.exported_at)
    features = build_features(history, history.exported_at)
    assert features.loc[staged, "amount"].isna().all()
    assert features.drop(index=staged)["amount"].notna().all()


def test_too_few_deals_without_stage_history_keep_nothing() -> None:
    history = flat_history(n=30)
    assert flat_columns(history) == {}
    assert "too few" in excluded_flat_columns(history)["amount"]


def test_a_what_if_on_a_flat_deal_reads_its_amount_as_the_full_build_does() -> None:
    history = flat_history()
    as_of = history.exported_at
    context = deal_context(history, as_of)
    deals = history.deals.copy()
    row = deals.index[deals["status"] == "open"][0]
    deals.loc[row, "amount"] = 1234.5  # the what-if: another amount
    deal_id = deals.loc[row, "deal_id"]
    changed = replace(history, deals=deals)
    expected = build_features(changed, as_of, deal_ids=[deal_id], features=context.spec)
    got = deal_features(
        context, deals.loc[[row]], history.stage_history.head(0), history.activities
    )
    assert got is not None and got["amount"].iat[0] == 1234.5
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=False)


def exit_stage_history(n: int = 600, seed: int = 5) -> History:
    """A flat export whose closed deals show the pipeline stage they closed at (won deals
    mostly the last one), and whose open deals at the export show the stage they have reached,
    further the older they are: the stage is progress, not a creation-time value."""
    rng = np.random.default_rng(seed)
    stages = np.array(["S0", "S1", "S2", "S3"])
    created = START + pd.to_timedelta(np.sort(rng.uniform(0, 500, n)), unit="D")
    closed = created + pd.to_timedelta(rng.uniform(20, 90, n), unit="D")
    export = pd.Timestamp(created[-1]) + pd.Timedelta(days=1)
    won = rng.random(n) < 0.4
    is_open = (closed > export) | (np.arange(n) >= n - 80)
    age = (export - created).days.to_numpy()
    exit_stage = np.where(won & (rng.random(n) < 0.7), 3, rng.integers(0, 4, n))
    open_stage = np.minimum(age // 20, 3)
    deals = pd.DataFrame(
        {
            "deal_id": [f"E{i:04d}" for i in range(n)],
            "created_at": created,
            "status": np.where(is_open, "open", np.where(won, "won", "lost")),
            "closed_at": pd.Series(closed).where(~is_open),
            "amount": np.round(rng.lognormal(9, 1, n), 2),
            "stage": stages[np.where(is_open, open_stage, exit_stage)],
        }
    )
    return make_history(deals, exported_at=export)


def test_a_history_cut_before_the_export_keeps_out_what_the_export_shows_is_progress() -> None:
    from training.data import truncate_history

    history = exit_stage_history()
    assert "changes with the deal's age" in excluded_flat_columns(history)["stage"]
    cut = pd.Timestamp(history.deals["created_at"].iloc[400]).normalize()
    known = truncate_history(history, cut)
    # Cut alone, the deals closing after the cut look open with the stage they closed at, and
    # the screen would take it for a creation-time value (the outcome leaks into training).
    assert "stage" in flat_columns(replace(known, export_excluded={}))
    assert "stage" not in flat_columns(known)
    assert excluded_flat_columns(known)["stage"].startswith("on the whole export")
    assert "amount" in flat_columns(known)
    assert (build_features(known, cut)["current_stage"] == "missing").all()

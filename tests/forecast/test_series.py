"""Won revenue series: zeros filled, partial period left out, segments add up to the total."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from salesml.models.revenue.series import load_won_deals, series_of, won_revenue_series


def deals_frame() -> pd.DataFrame:
    rows = [
        # deal_id, status, created_at, closed_at, amount, team, region, product
        ("D1", "won", "2025-01-03", "2025-01-20", 100.0, "SMB", "NA", "Team"),
        ("D2", "won", "2025-01-05", "2025-01-28", 50.0, "Enterprise", "EMEA", "Team"),
        ("D3", "lost", "2025-01-02", "2025-02-10", 999.0, "SMB", "NA", "Team"),
        ("D4", "won", "2025-02-01", "2025-03-15", 25.5, None, "NA", "Business"),
        ("D5", "won", "2025-03-01", "2025-04-02", 70.0, "SMB", "NA", "Team"),  # partial April
        ("D6", "open", "2025-03-20", None, 10.0, "Mid-Market", "APAC", "Team"),
        ("D7", "won", "2025-01-10", "2025-03-30", None, "SMB", "NA", "Team"),  # no amount
    ]
    cols = ["deal_id", "status", "created_at", "closed_at", "amount", "team", "region", "product"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["created_at"] = pd.to_datetime(frame["created_at"])
    frame["closed_at"] = pd.to_datetime(frame["closed_at"])
    return frame


END = pd.Timestamp("2025-04-10 12:00")


def test_total_fills_zeros_and_leaves_out_the_partial_period() -> None:
    frame = won_revenue_series(deals_frame(), "month", None, END)
    assert list(frame.columns) == ["period_start", "segment", "revenue"]
    assert list(frame["period_start"].dt.month) == [1, 2, 3]  # April is partial
    assert list(frame["revenue"]) == [150.0, 0.0, 25.5]  # February: no wins, a zero
    assert set(frame["segment"]) == {"total"}
    assert frame.attrs["won_without_amount"] == 1


def test_end_on_a_period_start_keeps_the_period_before_it() -> None:
    frame = won_revenue_series(deals_frame(), "month", None, pd.Timestamp("2025-05-01"))
    assert list(frame["revenue"]) == [150.0, 0.0, 25.5, 70.0]
    # ... and a deal closed at or after `end` does not count
    frame = won_revenue_series(deals_frame(), "month", None, pd.Timestamp("2025-03-15"))
    assert list(frame["revenue"]) == [150.0, 0.0]


def test_segments_add_up_to_total_and_missing_becomes_none() -> None:
    total = won_revenue_series(deals_frame(), "week", None, END)
    by_team = won_revenue_series(deals_frame(), "week", "team", END)
    assert set(by_team["segment"]) == {"SMB", "Enterprise", "Mid-Market", "(none)"}
    # every segment has every period
    counts = by_team.groupby("segment").size()
    assert (counts == len(total)).all()
    summed = by_team.groupby("period_start")["revenue"].sum()
    np.testing.assert_allclose(summed.to_numpy(), total["revenue"].to_numpy())
    assert by_team.loc[by_team["segment"] == "(none)", "revenue"].sum() == 25.5
    # the open-only team has a zero series
    assert by_team.loc[by_team["segment"] == "Mid-Market", "revenue"].sum() == 0.0
    weeks = pd.DatetimeIndex(total["period_start"])
    assert (weeks.day_of_week == 0).all()
    assert weeks[-1] + pd.Timedelta(days=7) <= END


def test_series_of_and_empty() -> None:
    frame = won_revenue_series(deals_frame(), "quarter", "region", END)
    s = series_of(frame, "NA")
    assert list(s.index) == [pd.Timestamp("2025-01-01")]
    assert s.iloc[0] == 125.5
    early = won_revenue_series(deals_frame(), "quarter", None, pd.Timestamp("2025-02-01"))
    assert early.empty


def test_load_won_deals_from_duckdb(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    deals = deals_frame()
    con.register("src", deals)
    con.execute("CREATE TABLE deals AS SELECT * FROM src")
    won = load_won_deals(con)
    assert set(won["status"]) == {"won"}
    assert len(won) == 5
    assert won.attrs["history_start"] == pd.Timestamp("2025-01-02")
    frame = won_revenue_series(won, "month", None, END)
    expected = won_revenue_series(deals, "month", None, END)
    pd.testing.assert_frame_equal(frame, expected)
    assert len(load_won_deals(con, end=pd.Timestamp("2025-03-01"))) == 2
    con.close()


def test_missing_required_column() -> None:
    from salesml.errors import ConfigError

    with pytest.raises(ConfigError, match="no 'amount' column"):
        won_revenue_series(deals_frame().drop(columns="amount"), "month", None, END)

"""The boosters read at most ``ROWS_PER_DEAL`` weekly snapshots of each deal, every deal still
counting once (``training.win.fit.thinned``)."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from features.build import build_snapshots, weekly_as_of_dates
from tests.helpers.history import synthetic_workspace
from training.data import temporal_split
from training.win.drift import deal_weights
from training.win.fit import ROWS_PER_DEAL, thinned, train_win_model


def _rows() -> pd.DataFrame:
    """Deals open 1 to 12 weeks, one row per week, in time order."""
    weeks = {f"d{i}": 1 + i % 12 for i in range(60)}
    frame = pd.DataFrame(
        [(deal, week) for deal, n in weeks.items() for week in range(n)],
        columns=["deal_id", "week"],
    )
    return frame.sort_values(["week", "deal_id"], ignore_index=True)


def test_every_deal_stays_with_at_most_the_cap_of_its_rows() -> None:
    rows = _rows()
    kept = thinned(rows, seed=3)
    before = rows.groupby("deal_id").size()
    after = kept.groupby("deal_id").size()
    assert set(after.index) == set(before.index)
    pd.testing.assert_series_equal(after, before.clip(upper=ROWS_PER_DEAL))
    assert kept.index.is_monotonic_increasing  # the original order
    pd.testing.assert_frame_equal(kept, rows.loc[kept.index])


def test_each_deal_keeps_its_weight_and_the_draw_is_seeded() -> None:
    rows = _rows()
    kept = thinned(rows, seed=3)
    per_deal = pd.Series(deal_weights(kept)).groupby(kept["deal_id"].to_numpy()).sum()
    np.testing.assert_allclose(per_deal.to_numpy(), per_deal.iloc[0])
    pd.testing.assert_frame_equal(kept, thinned(rows, seed=3))
    assert not kept.index.equals(thinned(rows, seed=4).index)
    assert thinned(rows, seed=3, cap=100).equals(rows)


def test_every_booster_fit_reads_the_thinned_rows(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early-stopping fits and both refits: every deal, at most the cap of its weeks."""
    history = synthetic_workspace(tmp_path_factory, deals=3000, seed=11).history
    snapshots = build_snapshots(history, weekly_as_of_dates(history))
    split = temporal_split(snapshots, history)
    labelled = snapshots[snapshots["label_won"].notna() & (snapshots["as_of"] <= split.holdout_end)]
    seen = pd.concat([split.train, split.validation])
    expected = {len(thinned(rows, seed=0)) for rows in (split.train, seen, labelled)}
    assert all(len(thinned(r, seed=0)) < len(r) for r in (split.train, seen, labelled))

    fitted: list[int] = []
    original = lgb.Dataset

    def recording(data: Any, label: Any = None, *args: Any, **kwargs: Any) -> lgb.Dataset:
        if kwargs.get("weight") is not None:  # the boosters' training sets (deal-weighted)
            fitted.append(len(data))
        return original(data, label, *args, **kwargs)

    monkeypatch.setattr(lgb, "Dataset", recording)
    result = train_win_model(history, snapshots=snapshots)
    assert result.served == "lightgbm"
    assert set(fitted) == expected

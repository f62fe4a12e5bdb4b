"""The applier's per-round helpers read only the round's deals and give what a whole-history
pass gives (serving/api/live.py, serving/events/journal.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.api.live import _only, _replaced
from serving.changes import input_hashes
from serving.events.journal import Journal, LiveScore
from tests.features.histories import random_history


def _everywhere(base: pd.DataFrame, added: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """The whole-history comparison ``_replaced`` stands for."""
    mine = pd.MultiIndex.from_frame(base[keys].astype(str))
    theirs = pd.MultiIndex.from_frame(added[keys].astype(str))
    return np.asarray(mine.isin(theirs), dtype=bool)


@pytest.mark.parametrize("seed", range(4))
def test_replaced_rows_are_those_a_whole_history_comparison_finds(seed: int) -> None:
    history = random_history(seed, n_deals=30)
    rng = np.random.default_rng(seed)
    for table, keys in (
        ("deals", ["deal_id"]),
        ("stage_history", ["deal_id", "changed_at", "stage"]),
        ("activities", ["deal_id", "occurred_at", "type"]),
    ):
        base = getattr(history, table)
        # some existing keys sent again (an upsert), some new rows of known and new deals
        again = base.iloc[rng.choice(len(base), size=min(5, len(base)), replace=False)].copy()
        fresh = base.iloc[rng.choice(len(base), size=3)].copy()
        for column in keys[1:]:
            if pd.api.types.is_datetime64_any_dtype(fresh[column]):
                fresh[column] = fresh[column] + pd.Timedelta(seconds=1)
        fresh.iloc[0, fresh.columns.get_loc("deal_id")] = "NEW"
        added = pd.concat([again, fresh], ignore_index=True)
        got = _replaced(base, added, keys)
        np.testing.assert_array_equal(got, _everywhere(base, added, keys))
        assert got.sum() >= len(again) - again.duplicated(keys).sum()
    # a key without the deal (an activity's own id) compares every row
    acts = history.activities.assign(activity_id=[f"a{i}" for i in range(len(history.activities))])
    added = acts.iloc[[0, 3]].assign(deal_id="OTHER")
    np.testing.assert_array_equal(
        _replaced(acts, added, ["activity_id"]), _everywhere(acts, added, ["activity_id"])
    )


@pytest.mark.parametrize("seed", range(4))
def test_input_hashes_of_the_rounds_deals_alone_are_the_whole_historys(seed: int) -> None:
    history = random_history(seed, n_deals=30)
    rng = np.random.default_rng(seed)
    ids = pd.Index(rng.choice(history.deals["deal_id"].astype(str), size=6, replace=False))
    as_of = history.exported_at
    pd.testing.assert_series_equal(
        input_hashes(_only(history, ids), ids, as_of, "3"), input_hashes(history, ids, as_of, "3")
    )


def test_live_scores_survive_a_reopen_and_events_stay_durably_committed(tmp_path: Path) -> None:
    """Live scores and fold marks commit without waiting for the disk; the connection is
    back to synchronous=FULL for the events themselves after each of them."""
    journal = Journal(tmp_path)
    seqs = journal.append(
        [{"event_id": "e1", "type": "activity.logged", "occurred_at": "2026-01-01", "rows": {}}],
        "canonical",
    )
    journal.put_live([LiveScore("D1", seqs[0] or 0, "e1", "2026-01-01", {"record": {"x": 1}})])
    journal.mark_folded([s for s in seqs if s])
    assert journal._con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    journal.close()
    again = Journal(tmp_path)
    assert [s.deal_id for s in again.live_scores()] == ["D1"]
    assert again.counts() == {"events": 1, "folded": 1, "live_scores": 1}
    again.close()
    with sqlite3.connect(tmp_path / "events" / "journal.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

"""The batch hashes each deal's inputs block by block of rows (``serving.changes.BLOCK_ROWS``)
so that millions of activities never become Python strings at once: the hashes are the same
whatever the block size, and change when one of the deal's rows does."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.build import open_deal_ids
from serving import changes
from tests.features.histories import START, STEP, random_history


@pytest.mark.parametrize("seed", [0, 5])
def test_hashes_do_not_depend_on_the_block_size(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    history = random_history(seed, n_deals=60)
    as_of = START + 200 * STEP
    ids = open_deal_ids(history, as_of).append(pd.Index(["not-a-deal"]))
    whole = changes.input_hashes(history, ids, as_of, "v1")
    for rows in (1, 7, 50):
        monkeypatch.setattr(changes, "BLOCK_ROWS", rows)
        pd.testing.assert_series_equal(changes.input_hashes(history, ids, as_of, "v1"), whole)
    codes = changes.input_hash_codes(history, ids, as_of, "v1")
    assert changes.hash_text(codes.to_numpy()) == whole.tolist()


def test_one_changed_activity_changes_only_its_deal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changes, "BLOCK_ROWS", 5)
    history = random_history(2, n_deals=60)
    as_of = START + 300 * STEP
    ids = open_deal_ids(history, as_of)
    before = changes.input_hashes(history, ids, as_of, "v1")
    activities = history.activities
    mine = activities.index[activities["deal_id"].isin(ids) & (activities["occurred_at"] <= as_of)]
    assert len(mine)
    row = mine[len(mine) // 2]
    moved = activities.copy()
    moved.loc[row, "type"] = "meeting" if moved.loc[row, "type"] != "meeting" else "call"
    after = changes.input_hashes(replace(history, activities=moved), ids, as_of, "v1")
    differs = before != after
    assert differs.sum() == 1 and differs[str(activities.loc[row, "deal_id"])]


def test_row_hashes_are_pandas_hashes() -> None:
    """The text columns are hashed per distinct value; every row's hash is still exactly
    ``hash_pandas_object``'s (the API recomputes the hashes a run stored by earlier code)."""
    history = random_history(4, n_deals=80)
    mixed = pd.DataFrame(
        {
            "text": pd.Series(["a", None, "", "a", "b", None], dtype="str"),
            "number": [1.0, float("nan"), -0.0, 0.0, 2.5, 1.0],
            "stamp": pd.to_datetime(["2025-01-01", None, "2025-01-02", None, "2025-01-01", None]),
            "flag": pd.Series([True, None, False, True, None, False], dtype=object),
            "all_missing": pd.Series([None] * 6, dtype="str"),
            "category": pd.Series(["x", None, "y", "x", "z", "x"], dtype="category"),
            "int_category": pd.Series([3, 1, None, 3, 2, 2], dtype="category"),
        }
    )
    frames = [history.deals, history.stage_history, history.activities, history.accounts]
    for frame in [*frames, mixed, mixed.iloc[:0]]:
        expected = pd.util.hash_pandas_object(frame, index=False).to_numpy()
        np.testing.assert_array_equal(changes._row_hashes(frame), expected)


@pytest.mark.parametrize("seed", range(4))
def test_a_few_deals_hashes_are_their_rows_of_every_deals(seed: int) -> None:
    """A few deals hash their own accounts only (the live applier's rounds): the numbers of
    the whole pass, with an account listed twice (its first row counts), a deal without an
    account and a deal whose account is not listed."""
    history = random_history(seed, n_deals=40)
    rng = np.random.default_rng(seed)
    accounts = history.accounts
    assert len(accounts) > 1
    twice = accounts.iloc[[0]].assign(**{accounts.columns[-1]: accounts.iloc[1, -1]})
    deals = history.deals.copy()
    deals["account_id"] = deals["account_id"].astype(object)
    deals.loc[deals.index[1], "account_id"] = None
    deals.loc[deals.index[2], "account_id"] = "NOT-LISTED"
    deals.loc[deals.index[3], "account_id"] = accounts["account_id"].iloc[0]
    deals["account_id"] = deals["account_id"].astype(history.deals["account_id"].dtype)
    history = replace(history, deals=deals, accounts=pd.concat([accounts, twice]))
    all_ids = pd.Index(history.deals["deal_id"].astype(str))
    assert len(all_ids) >= len(history.accounts)  # the whole pass reads every account
    every = changes.input_hashes(history, all_ids, history.exported_at, "2")
    for few in (
        all_ids[[1]],
        all_ids[[2]],
        all_ids[[3]],
        all_ids[rng.choice(40, 5, replace=False)],
    ):
        got = changes.input_hashes(history, few, history.exported_at, "2")
        pd.testing.assert_series_equal(got, every.loc[few])

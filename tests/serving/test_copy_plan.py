"""The incremental night decides what to copy from the previous run's keys in Arrow and numpy
(``serving.batch.plan_copy``: stored hash text parsed back to numbers, one flag per stored
row), then copies row groups by those flags. It must catch every change, as matching each
deal's hash text did."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from features.build import build_features
from serving import changes
from serving.batch import plan_copy, run_batch
from serving.runs import HASH_COLUMN, RunStore
from tests.serving.conftest import Workspace


def test_stored_hash_text_parses_back_to_its_numbers() -> None:
    codes = np.random.default_rng(3).integers(0, 2**63, 500, dtype=np.uint64) * np.uint64(2)
    codes[:2] = [0, np.iinfo(np.uint64).max]
    text = changes.hash_text(codes)
    odd = [None, "", "0123", "0123456789abcdeg", "0123456789ABCDEF", "0123456789abcdef0"]
    chunked = pa.chunked_array([pa.array(text[:200]), pa.array(text[200:] + odd)])
    parsed, valid = changes.parse_hash_text(chunked)
    assert valid.tolist() == [True] * len(text) + [False] * len(odd)
    assert (parsed[: len(text)] == codes).all()
    sliced, valid = changes.parse_hash_text(pa.array(text).slice(7, 30))
    assert valid.all() and (sliced == codes[7:37]).all()


def _history_with_changes(workspace: Workspace) -> tuple[object, set[str], str]:
    """The workspace's history with one open deal changed in each tracked input (an activity,
    its deal record, a stage row, its account) and one open deal closed; returns the history,
    the changed deals and the closed one."""
    history = workspace.history
    features = build_features(history, history.exported_at)
    account_counts = features["account_id"].value_counts()
    single = account_counts[account_counts == 1].index  # an account with one open deal
    by_account = features.index[features["account_id"].isin(single)]
    staged = set(history.stage_history["deal_id"].astype(str))
    ids = [d for d in features.index if d not in set(by_account) and d in staged]
    activity_deal, record_deal, stage_deal, closed_deal = ids[:4]
    account_deal = str(by_account[0])
    extra = pd.DataFrame(
        {
            "deal_id": [activity_deal],
            "occurred_at": [history.exported_at],
            "type": ["email"],
            "owner_id": [features.loc[activity_deal, "owner_id"]],
        }
    ).astype(history.activities[["deal_id", "occurred_at", "type", "owner_id"]].dtypes)
    deals = history.deals.copy()
    record = deals["deal_id"].astype(str) == record_deal
    deals.loc[record, "amount"] = deals.loc[record, "amount"].fillna(0) + 1
    closed = deals["deal_id"].astype(str) == closed_deal
    deals.loc[closed, "status"] = "lost"
    deals.loc[closed, "closed_at"] = history.exported_at - pd.Timedelta(hours=1)
    stages = history.stage_history.copy()
    row = stages.index[stages["deal_id"].astype(str) == stage_deal][-1]
    old_amount = stages.loc[row, "amount"]
    stages.loc[row, "amount"] = (0.0 if pd.isna(old_amount) else float(old_amount)) + 7
    accounts = history.accounts.copy()
    account = features.loc[account_deal, "account_id"]
    accounts.loc[accounts["account_id"] == account, "employees"] += 1
    changed = replace(
        history,
        deals=deals,
        stage_history=stages,
        activities=pd.concat([history.activities, extra], ignore_index=True),
        accounts=accounts,
    )
    return changed, {activity_deal, record_deal, stage_deal, account_deal}, closed_deal


def test_every_changed_input_is_rescored_and_the_rest_copied(
    workspace: Workspace, tmp_path: Path
) -> None:
    store = RunStore(workspace.copy_home(tmp_path / "home"))
    model, as_of = workspace.model, workspace.history.exported_at
    history, changed_deals, closed_deal = _history_with_changes(workspace)
    first = store.read(store.info("r1")).set_index("deal_id")  # type: ignore[arg-type]
    night = run_batch(history, model, as_of, store, run_id="r2", changed=True, part_rows=97)
    rows = store.read(night.run).set_index("deal_id")
    assert night.rescored == len(changed_deals) and night.copied == len(first) - 5
    assert closed_deal not in rows.index and rows.index.is_unique
    rescored = {d for d in rows.index if rows.loc[d, HASH_COLUMN] != first.loc[d, HASH_COLUMN]}
    assert rescored == changed_deals
    # The changed deals' rows are a full run's; every other row is the first run's, as it was
    # (an owner's pipeline moved with the changes: such rows are refreshed by age, not here).
    everything = store.read(run_batch(history, model, as_of, store, run_id="r3").run)
    mine = sorted(changed_deals)
    pd.testing.assert_frame_equal(everything.set_index("deal_id").loc[mine], rows.loc[mine])
    others = rows.index.difference(mine)
    pd.testing.assert_frame_equal(rows.loc[others], first.loc[others])
    # A copied run (parts of 97 rows, the scored ones first) plans the same as deal matching:
    # every stored row whose hash text is the deal's current one.
    again = run_batch(history, model, as_of, store, run_id="r4", changed=True, part_rows=50)
    assert again.rescored == 0 and again.copied == len(rows)
    current = changes.input_hashes(history, rows.index, as_of, model.version)
    plan = plan_copy(store, night.run, current, as_of)
    stored = store.read(night.run)
    expected = stored[HASH_COLUMN].to_numpy() == current.reindex(stored["deal_id"]).to_numpy()
    assert plan.rows.tolist() == expected.tolist() and expected.all()
    missing = current.astype(object)
    missing.iloc[0] = None  # a deal without a current hash is never copied
    flags = plan_copy(store, night.run, missing, as_of).rows
    assert flags.tolist() == (stored["deal_id"] != missing.index[0]).tolist()


def test_a_damaged_stored_hash_is_rescored(workspace: Workspace, tmp_path: Path) -> None:
    """A row whose stored hash is missing or not ``hash_text`` of any number never matches."""
    import pyarrow.parquet as pq

    store = RunStore(workspace.copy_home(tmp_path / "home"))
    history, model = workspace.history, workspace.model
    run = store.info("r1")
    assert run is not None
    part = sorted((run.path / "scores").glob("part-*.parquet"))[0]
    table = pq.read_table(part)
    text = table.column(HASH_COLUMN).to_pylist()
    text[0], text[1] = None, text[1].upper()
    column = table.schema.get_field_index(HASH_COLUMN)
    pq.write_table(table.set_column(column, HASH_COLUMN, pa.array(text, pa.string())), part)
    night = run_batch(history, model, history.exported_at, store, run_id="r2", changed=True)
    assert night.rescored == 2 and night.copied == run.rows - 2

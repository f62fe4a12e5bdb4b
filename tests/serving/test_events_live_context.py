"""The applier's one-deal context gives the batch's feature rows, round after round."""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, open_deal_ids
from features.history import History
from features.spec import feature_spec
from serving.api.live_context import PROBE_ROUNDS, LiveContext
from tests.features.histories import random_history


def _round(
    rng: np.random.Generator, history: History, as_of: pd.Timestamp, ids: list[str]
) -> tuple[History, list[str], list[str]]:
    """Stage changes (known stages, amounts) and activities on a few open deals at as_of."""
    touched = sorted({str(d) for d in rng.choice(ids, size=int(rng.integers(1, 5)))})
    sh, acts, deals = history.stage_history, history.activities, history.deals.copy()
    stages = sorted(sh["stage"].dropna().unique())
    dirty = []
    new_sh, new_acts = [], []
    for deal_id in touched:
        if rng.random() < 0.6:
            dirty.append(deal_id)
            change = {
                "stage": str(rng.choice(stages)),
                "amount": float(rng.integers(1, 10_000)) / 7,
                "expected_close_date": as_of + pd.Timedelta(days=int(rng.integers(1, 90))),
            }
            new_sh.append({"deal_id": deal_id, "changed_at": as_of, **change})
            # the event's deal row moves too (serving.events.resolve merges it)
            mine = deals.index[deals["deal_id"].astype(str) == deal_id]
            for column, value in change.items():
                if column in deals.columns:
                    deals.loc[mine, column] = value
        else:
            row = acts.iloc[[0]].copy()
            row["deal_id"], row["occurred_at"] = deal_id, as_of
            new_acts.append(row)
    if new_sh:
        added = pd.DataFrame(new_sh, columns=sh.columns).astype(sh.dtypes.to_dict())
        sh = pd.concat([sh, added], ignore_index=True)
    if new_acts:
        acts = pd.concat([acts, *new_acts], ignore_index=True)
    changed = replace(history, deals=deals, stage_history=sh, activities=acts)
    return changed, touched, dirty


def _assert_rows_as_built(
    live: LiveContext,
    history: History,
    as_of: pd.Timestamp,
    touched: list[str],
    dirty: list[str],
    spec: Any,
) -> None:
    """The context's rows of the touched deals equal a fresh ``build_features`` of them."""
    got = live.rows(history, as_of, touched, dirty)
    expected = build_features(history, as_of, deal_ids=touched, features=spec)
    expected.index = expected.index.astype(str)
    pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=False)


@pytest.mark.parametrize("seed", range(6))
def test_live_rows_equal_a_fresh_build_after_each_round(seed: int) -> None:
    history = random_history(seed, n_deals=40)
    rng = np.random.default_rng(seed)
    as_of = history.exported_at
    spec = feature_spec(history)
    live = LiveContext(spec)
    live.rebuild(history, as_of)
    ids = list(open_deal_ids(history, as_of))
    for _ in range(8):
        as_of = as_of + pd.Timedelta(seconds=int(rng.integers(0, 5)))
        history, touched, dirty = _round(rng, history, as_of, ids)
        _assert_rows_as_built(live, history, as_of, touched, dirty, spec)
        live.refresh(history, as_of)
    # The context was kept, not rebuilt (the point of it): these rounds are all expressible.
    assert live.patches > 0
    assert (live.rebuilds, live.fallbacks) == (1, {})


def _forced(live: LiveContext, path: str) -> None:
    """Make the chooser take one path: one-deal rows or one ``build_features`` per round."""
    if path == "one_by_one":
        live._costs = {"deal": [1e-9], "batch": [1e9]}
    elif path == "batch":
        live._costs = {"deal": [1e9], "batch": [1e-9]}


def _lifecycle(
    rng: np.random.Generator, history: History, as_of: pd.Timestamp, ids: list[str], n: int
) -> tuple[History, list[str], list[str]]:
    """A deal created at as_of (with its first stage row), or one of ``ids`` won at as_of:
    rounds the context cannot patch (the applier then scores with build_features and
    rebuilds it)."""
    deals, sh = history.deals, history.stage_history
    if rng.random() < 0.5:
        new_id = f"N{n:03d}"
        row = deals.iloc[[int(rng.integers(0, len(deals)))]].copy()
        row["deal_id"], row["created_at"] = new_id, as_of
        row["status"], row["closed_at"] = "open", pd.NaT
        stage = {"deal_id": new_id, "changed_at": as_of, "stage": str(sh["stage"].dropna().iloc[0])}
        added = pd.DataFrame([stage], columns=sh.columns).astype(sh.dtypes.to_dict())
        history = replace(
            history,
            deals=pd.concat([deals, row.astype(deals.dtypes.to_dict())], ignore_index=True),
            stage_history=pd.concat([sh, added], ignore_index=True),
        )
        ids.append(new_id)
        return history, [new_id], [new_id]
    closing = str(rng.choice(ids))
    deals = deals.copy()
    mine = deals.index[deals["deal_id"].astype(str) == closing]
    deals.loc[mine, "status"] = "won"
    deals.loc[mine, "closed_at"] = as_of
    ids.remove(closing)
    return replace(history, deals=deals), [closing], []


@pytest.mark.parametrize("path", ["one_by_one", "batch"])
@pytest.mark.parametrize("seed", range(3))
def test_live_rows_equal_a_fresh_build_on_either_path_and_across_new_and_closed_deals(
    seed: int, path: str
) -> None:
    """Random rounds of stage changes and activities, with now and then a new deal or a won
    one: the rows are the batch's whichever way they are computed, and a round the context
    cannot express is scored by build_features and the context rebuilt, exactly."""
    history = random_history(100 + seed, n_deals=40)
    rng = np.random.default_rng(100 + seed)
    as_of = history.exported_at
    spec = feature_spec(history)
    live = LiveContext(spec)
    live.rebuild(history, as_of)
    ids = list(open_deal_ids(history, as_of))
    lifecycle = 0
    for n in range(10):
        _forced(live, path)
        as_of = as_of + pd.Timedelta(seconds=int(rng.integers(1, 5)))
        if (n in (3, 7) or rng.random() < 0.2) and len(ids) > 2:
            history, touched, dirty = _lifecycle(rng, history, as_of, ids, n)
            lifecycle += 1
        else:
            history, touched, dirty = _round(rng, history, as_of, ids)
        _assert_rows_as_built(live, history, as_of, touched, dirty, spec)
        live.refresh(history, as_of)
    assert lifecycle >= 2
    assert live.rebuilds > 1 and sum(live.fallbacks.values()) >= 1


def test_the_chooser_measures_both_paths_again_now_and_then() -> None:
    """Only the path taken is measured: a round that costs about as much one deal at a time
    as in one batch takes the other path every PROBE_ROUNDS rounds, so a stale cost (say
    measured while the machine was busier) cannot keep the applier on the wrong path."""
    history = random_history(3, n_deals=20)
    live = LiveContext(feature_spec(history))
    assert live._one_by_one(50)  # nothing measured: one-deal rows
    live.rebuild(history, history.exported_at)
    assert len(live._costs["batch"]) == 1  # the rebuild's cost stands in for the batch's
    live._costs = {"deal": [0.01], "batch": [0.1]}
    live._since_batch = 0
    assert not live._one_by_one(20)  # 0.2 s one by one > 0.1 s in one batch
    assert all(live._one_by_one(2) for _ in range(3 * PROBE_ROUNDS))  # far cheaper: never
    live._since_batch = 0
    choices = [live._one_by_one(6) for _ in range(PROBE_ROUNDS)]
    assert choices == [True] * (PROBE_ROUNDS - 1) + [False]
    live._build(history, history.exported_at, [])
    assert live._since_batch == 0 and len(live._costs["batch"]) == 2
    # and the other way: a stale one-deal cost is measured again, when within a factor of two
    live._costs = {"deal": [0.01], "batch": [0.1]}
    live._since_deal = 0
    assert not any(live._one_by_one(30) for _ in range(3 * PROBE_ROUNDS))  # 0.3 s: never
    live._since_deal = 0
    choices = [live._one_by_one(15) for _ in range(PROBE_ROUNDS)]
    assert choices == [False] * (PROBE_ROUNDS - 1) + [True]


@pytest.mark.parametrize("path", ["one_by_one", "batch"])
@pytest.mark.parametrize("seed", range(4))
def test_a_rebuild_off_the_round_path_adopts_the_rounds_scored_meanwhile(
    seed: int, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applier rebuilds the context on a builder thread; the rounds scored meanwhile
    (by build_features) are the tail the new context must take in when it is done. The
    builder is held until the test lets it go, so the tail is never empty by luck of
    timing: the rows stay the batch's round after round, and a tail the new context
    cannot express (a new or won deal in it) starts another build."""
    history = random_history(200 + seed, n_deals=40)
    rng = np.random.default_rng(200 + seed)
    as_of = history.exported_at
    spec = feature_spec(history)
    live = LiveContext(spec)
    gate = threading.Event()
    make = live._make

    def held(history: History, as_of: pd.Timestamp) -> Any:
        assert gate.wait(60)
        return make(history, as_of)

    monkeypatch.setattr(live, "_make", held)
    live.start_rebuild(history, as_of)
    ids = list(open_deal_ids(history, as_of))
    for n in range(14):
        _forced(live, path)
        as_of = as_of + pd.Timedelta(seconds=int(rng.integers(1, 5)))
        if n in (6, 10) and len(ids) > 2:
            history, touched, dirty = _lifecycle(rng, history, as_of, ids, n)
        else:
            history, touched, dirty = _round(rng, history, as_of, ids)
        if n % 3 == 2:  # the build in flight finishes before this round
            gate.set()
            assert live.join(60)
            gate.clear()
        _assert_rows_as_built(live, history, as_of, touched, dirty, spec)
        live.refresh(history, as_of, wait=False)
    gate.set()
    assert live.join(60)
    assert live.adopted >= 2
    assert live.fallbacks.get("rebuilding", 0) >= 2  # rounds scored while it was building

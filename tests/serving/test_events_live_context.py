"""The applier's one-deal context gives the batch's feature rows, round after round."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, open_deal_ids
from features.history import History
from features.spec import feature_spec
from serving.api.live_context import LiveContext
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
        got = live.rows(history, as_of, touched, dirty)
        expected = build_features(history, as_of, deal_ids=touched, features=spec)
        expected.index = expected.index.astype(str)
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=False)
        live.refresh(history, as_of)
    # The context was kept, not rebuilt (the point of it): these rounds are all expressible.
    assert live.patches > 0
    assert (live.rebuilds, live.fallbacks) == (1, {})

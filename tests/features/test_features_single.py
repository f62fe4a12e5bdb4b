"""The one-deal path (features.single) equals build_features on the changed history."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, open_deal_ids
from features.single import deal_context, deal_features
from tests.features.histories import random_history


@pytest.mark.parametrize("seed", range(12))
def test_each_open_deal_with_its_rows_replaced(seed: int) -> None:
    """Replace an open deal's rows (stage history cut short or extended, another owner and
    product) and compare with the full build on the history changed the same way."""
    history = random_history(seed)
    rng = np.random.default_rng(seed)
    as_of = history.exported_at - pd.Timedelta(days=int(rng.integers(0, 30)))
    context = deal_context(history, as_of)
    ids = list(open_deal_ids(history, as_of))
    owners = [*history.deals["owner_id"].dropna().unique().tolist(), "nobody"]
    products = [*history.deals["product"].dropna().unique().tolist(), "new-product"]
    for deal_id in ids:
        deals = history.deals.copy()
        row = deals.index[deals["deal_id"] == deal_id][0]
        deals.loc[row, "owner_id"] = str(rng.choice(owners))
        deals.loc[row, "product"] = str(rng.choice(products))
        sh = history.stage_history
        mine = sh[sh["deal_id"] == deal_id]
        mine = mine.iloc[: int(rng.integers(0, len(mine) + 1))]
        if rng.random() < 0.5 and len(mine):
            extra = mine.iloc[[-1]].copy()
            extra["changed_at"] = as_of
            extra["stage"] = str(rng.choice(sh["stage"].dropna().unique()))
            extra["amount"] = float(rng.integers(1, 10_000))
            mine = pd.concat([mine, extra], ignore_index=True)
        changed = replace(
            history,
            deals=deals,
            stage_history=pd.concat([sh[sh["deal_id"] != deal_id], mine], ignore_index=True),
        )
        expected = build_features(changed, as_of, deal_ids=[deal_id], features=context.spec)
        acts = history.activities[history.activities["deal_id"] == deal_id]
        got = deal_features(context, deals.loc[[row]], mine, acts)
        assert got is not None
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=False)

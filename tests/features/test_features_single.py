"""The one-deal path (features.single) equals build_features on the changed history."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, open_deal_ids
from features.single import deal_context, deal_features
from tests.features.histories import STAGES, random_history


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


def _stage_rows(
    rng: np.random.Generator, deal_id: str, created: pd.Timestamp, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Random stage rows of a new deal: known and unheard-of stages, ties, rows after as_of,
    close dates pushed by fractions of a day (a push-day total that rounds)."""
    names = [*STAGES, "Brand New Stage"]
    n = int(rng.integers(0, 6))
    span = max(int((as_of - created) / pd.Timedelta(hours=1)), 1)
    times = sorted(created + pd.Timedelta(hours=int(rng.integers(0, span + 48))) for _ in range(n))
    return pd.DataFrame(
        {
            "deal_id": [deal_id] * n,
            "stage": [str(rng.choice(names)) for _ in range(n)],
            "changed_at": times,
            "amount": [float(rng.integers(1, 10_000)) / 7 for _ in range(n)],
            "expected_close_date": [
                as_of + pd.Timedelta(minutes=int(rng.integers(0, 90 * 24 * 60))) for _ in range(n)
            ],
        }
    )


@pytest.mark.parametrize("seed", range(10))
def test_new_deals_read_the_snapshot_state_exactly(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New deals (ids sorting anywhere among the open deals, owners, accounts and products
    known or not, stage rows with new stages and fractional pushes) on larger histories: the
    per-snapshot state path gives build_features' row bit for bit, and is the path taken."""
    from features import single

    history = random_history(100 + seed, n_deals=60)
    rng = np.random.default_rng(seed)
    as_of = history.exported_at - pd.Timedelta(days=int(rng.integers(0, 5)))
    context = deal_context(history, as_of)
    assert context.state is not None
    taken: list[bool] = []
    from_state = single._from_state

    def counted(*args: object, **kwargs: object) -> object:
        out = from_state(*args, **kwargs)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    monkeypatch.setattr(single, "_from_state", counted)
    pick = {
        "owner_id": ["R1", "R2", "R9", "R-new", None],
        "account_id": ["A1", "A3", "A-new", None],
        "product": ["Basic", "Pro", "Ghost", "Gizmo", None],
        "team": ["East", "West", None],
    }
    for n in range(6):
        deal_id = f"D{int(rng.integers(0, 70)):03d}n{n}"  # sorts among the existing ids
        created = as_of - pd.Timedelta(hours=int(rng.integers(0, 24 * 60)))
        row = history.deals.iloc[[0]].copy()
        row["deal_id"] = deal_id
        row["created_at"] = created
        row["status"] = "open"
        row["closed_at"] = pd.NaT
        for column, values in pick.items():
            row[column] = values[int(rng.integers(0, len(values)))]
        row["amount"] = float(rng.integers(1, 5000)) / 3
        row = row.astype(history.deals.dtypes.to_dict())
        stage_rows = _stage_rows(rng, deal_id, created, as_of).astype(
            history.stage_history.dtypes.to_dict()
        )
        changed = replace(
            history,
            deals=pd.concat([history.deals, row], ignore_index=True),
            stage_history=pd.concat([history.stage_history, stage_rows], ignore_index=True),
        )
        expected = build_features(changed, as_of, deal_ids=[deal_id], features=context.spec)
        got = deal_features(context, row, stage_rows, history.activities.iloc[:0])
        assert got is not None
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=False)
    assert taken and all(taken)

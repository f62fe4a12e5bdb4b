"""The API's feature rows equal the full path: build_features on the history with the deal
changed or added."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd

from features.build import build_features
from features.history import make_history
from serving.api.schemas import DealOverrides, NewDeal
from serving.api.whatif import Change, build_index, plain_rows, whatif_rows
from tests.serving.conftest import Workspace


def test_plain_whatif_and_new_rows_equal_the_full_path(workspace: Workspace) -> None:
    history = workspace.history
    index = build_index(history)
    as_of = index.as_of
    open_ids = list(index.features.index[:3])
    full = build_features(history, as_of, deal_ids=open_ids, features=index.spec)
    pd.testing.assert_frame_equal(plain_rows(index, open_ids), full, check_index_type=False)

    deal = open_ids[0]
    overrides = DealOverrides(amount=12345.0, stage="Negotiation", product="Business")
    rows = whatif_rows(index, [Change(deal, deal, "x", overrides=overrides)])
    deals = history.deals.copy()
    deals.loc[deals["deal_id"] == deal, "product"] = "Business"
    stage_row = pd.DataFrame(
        {
            "deal_id": [deal],
            "stage": ["Negotiation"],
            "changed_at": [as_of],
            "amount": [12345.0],
            "expected_close_date": [pd.NaT],
        }
    )
    last = (
        history.stage_history[history.stage_history["deal_id"] == deal]
        .sort_values(["changed_at", "stage"])
        .iloc[-1]
    )
    stage_row["expected_close_date"] = [last["expected_close_date"]]
    changed = replace(
        history,
        deals=deals,
        stage_history=pd.concat(
            [history.stage_history, stage_row.astype(history.stage_history.dtypes.to_dict())],
            ignore_index=True,
        ),
    )
    expected = build_features(changed, as_of, deal_ids=[deal], features=index.spec)
    pd.testing.assert_frame_equal(rows, expected, check_index_type=False)
    assert rows.loc[deal, "amount"] == 12345.0
    assert rows.loc[deal, "amount"] != index.features.loc[deal, "amount"]

    new = NewDeal(
        created_at=as_of - pd.Timedelta(days=10),
        owner_id="R001",
        stage="Discovery",
        amount=5000.0,
        team="SMB",
        product="Business",
    )
    got = whatif_rows(index, [Change("\x00new-0", "n", "x", new=new)])
    reps = history.reps
    region = reps.loc[reps["owner_id"] == "R001", "region"].iloc[0]
    added = make_history(
        pd.DataFrame(
            {
                "deal_id": ["\x00new-0"],
                "created_at": [new.created_at],
                "status": ["open"],
                "owner_id": ["R001"],
                "team": ["SMB"],
                "region": [region],  # the owner's region (the canonical default)
                "product": ["Business"],
                "amount": [5000.0],
                "stage": ["Discovery"],
            }
        ),
        stage_history=pd.DataFrame(
            {
                "deal_id": ["\x00new-0"],
                "stage": ["Discovery"],
                "changed_at": [new.created_at],
                "amount": [5000.0],
            }
        ),
        attributes=history.attributes,
    )
    both = replace(
        history,
        deals=pd.concat(
            [history.deals, added.deals.astype(history.deals.dtypes.to_dict())], ignore_index=True
        ),
        stage_history=pd.concat([history.stage_history, added.stage_history], ignore_index=True),
    )
    reference = build_features(both, as_of, deal_ids=["\x00new-0"], features=index.spec)
    pd.testing.assert_frame_equal(got, reference, check_index_type=False)
    assert got.loc["\x00new-0", "rep_open_deals"] >= 1

"""The API's feature rows equal the full path: build_features on the history with the deal
changed or added."""

from __future__ import annotations

import copy
import random
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.history import History, make_history
from salesml.scoring import score_features
from serving.api.problems import ProblemError
from serving.api.schemas import DealOverrides, NewDeal
from serving.api.whatif import (
    Change,
    DataIndex,
    _rows_on_changed_history,
    build_index,
    plain_rows,
    whatif_rows,
)
from tests.features.histories import random_history
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


def _random_change(rng: random.Random, index: DataIndex, history: History) -> Change:
    """A what-if of a random open deal, or a new deal, with random overrides."""
    stages = [*sorted(history.stage_history["stage"].dropna().unique()), "Brand New Stage"]
    owners = [*history.reps["owner_id"].unique(), "R999"]
    products = [*history.deals["product"].dropna().unique(), "Gizmo"]
    teams = list(history.deals["team"].dropna().unique())
    accounts = [*history.deals["account_id"].dropna().unique()[:50], "A-new"]
    dates = [(index.as_of + pd.Timedelta(days=d)).date() for d in (-3, 30)]
    options: dict[str, list[Any]] = {
        "stage": stages,
        "amount": [0.0, 1234.5, 99999.0],
        "owner_id": owners,
        "product": products,
        "team": teams,
        "account_id": accounts,
        "expected_close_date": dates,
    }
    fields = {k: rng.choice(v) for k, v in options.items() if rng.random() < 0.35}
    if rng.random() < 0.3:
        fields.pop("account_id", None)
        fields.setdefault("owner_id", rng.choice(owners))
        if "amount" in fields or "expected_close_date" in fields:
            fields.setdefault("stage", rng.choice(stages))
        created = index.as_of - pd.Timedelta(days=rng.randint(0, 400))
        return Change("\x00new-0", "n", "x", new=NewDeal(created_at=created, **fields))
    deal = rng.choice(list(index.features.index))
    return Change(deal, deal, "x", overrides=DealOverrides(**fields))


def _assert_one_deal_rows(index: DataIndex, change: Change) -> None:
    """``whatif_rows`` of one change equals the rows of the changed history, or refuses it
    with the same problem."""
    try:
        expected = _rows_on_changed_history(index, [change])
    except ProblemError as error:
        with pytest.raises(ProblemError) as raised:
            whatif_rows(index, [change])
        assert raised.value.args == error.args
        return
    pd.testing.assert_frame_equal(whatif_rows(index, [change]), expected, check_exact=True)


def test_one_deal_rows_equal_the_changed_history_rows(workspace: Workspace) -> None:
    """The one-deal path (features.single) gives exactly the rows of build_features on the
    whole history with the change applied, for what-ifs and new deals of every kind."""
    history = workspace.history
    index = build_index(history)
    rng = random.Random(7)
    for _ in range(60):
        _assert_one_deal_rows(index, _random_change(rng, index, history))


@pytest.mark.parametrize("seed", range(6))
def test_one_deal_rows_equal_the_changed_history_rows_on_random_histories(seed: int) -> None:
    """The same on small random histories (ties at as_of, stage rows without names, pushes,
    deals without stage history or activities): random what-ifs and new deals per seed."""
    history = random_history(200 + seed, n_deals=40)
    as_of = history.exported_at - pd.Timedelta(hours=6 * (seed % 3))
    index = build_index(history, as_of)
    if not len(index.features):
        pytest.skip("no deal open at as_of")
    rng = random.Random(seed)
    for _ in range(25):
        _assert_one_deal_rows(index, _random_change(rng, index, history))


def test_score_rows_equal_the_frame_path(workspace: Workspace) -> None:
    """Scoring from a float matrix (one LightGBM thread on a few rows, what-if actions
    written into the matrix) gives the rows of the pandas-frame path, bit for bit."""
    model = workspace.model
    index = build_index(workspace.history)
    features = index.features
    assert model.bundle.codes_match_booster
    frame_model = copy.deepcopy(model)
    frame_model.bundle.__dict__["codes_match_booster"] = False  # the LightGBM-pandas path
    expected = score_features(features, frame_model, index.as_of)
    pd.testing.assert_frame_equal(
        score_features(features, model, index.as_of), expected, check_exact=True
    )
    for i in range(0, len(features), 9):
        got = score_features(features.iloc[[i]], model, index.as_of)
        want = expected.iloc[[i]].reset_index(drop=True)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    raw = model.bundle.raw_score(features)
    matrix = model.bundle.matrix(features)
    assert model.bundle.booster is not None
    via_frame = model.bundle.booster.predict(matrix, raw_score=True)
    np.testing.assert_array_equal(raw, via_frame)


def test_an_export_without_stage_history_knows_its_deals_stages(
    maven_dir: Any, tmp_path: Any
) -> None:
    """Maven has no stage history; its deals table has Engaging and Prospecting: a what-if
    may move a deal to either (it was 422 "known: none")."""
    from features.history import load_history
    from salesml.importers import read_export, run_import
    from salesml.warehouse import connect
    from serving.api.whatif import build_index

    run_import(read_export(maven_dir, "maven"), tmp_path / "w.duckdb", tmp_path / "rejects")
    con = connect(tmp_path / "w.duckdb", read_only=True)
    try:
        history = load_history(con)
    finally:
        con.close()
    assert len(history.stage_history) == 0
    assert {"Engaging", "Prospecting"} <= set(build_index(history).stages)


@pytest.mark.parametrize("seed", range(4))
def test_one_stage_row_frame_equals_the_general_construction(seed: int) -> None:
    """A what-if's one stage row (built column by column) is the frame the general path
    builds from the same row: dtypes, UTC conversion of zone-aware times, dates, missing
    values."""
    from serving.api.whatif import _stage_frame

    history = random_history(300 + seed, n_deals=10)
    sh = history.stage_history
    rng = np.random.default_rng(seed)
    moments: list[Any] = [
        pd.Timestamp("2024-03-01 12:34:56.789123"),
        pd.Timestamp("2024-03-01 23:30", tz="America/New_York"),
        pd.Timestamp("2024-05-02").date(),
        pd.NaT,
        None,
    ]
    for _ in range(10):
        row = {
            "deal_id": f"D{int(rng.integers(0, 99))}",
            "stage": [None, "Demo", "Brand New Stage"][int(rng.integers(0, 3))],
            "changed_at": moments[int(rng.integers(0, 3))],
            "amount": [np.nan, 1234.5, 0.0][int(rng.integers(0, 3))],
            "expected_close_date": moments[int(rng.integers(0, len(moments)))],
        }
        general = _stage_frame(sh, [row, row]).iloc[:1]
        pd.testing.assert_frame_equal(_stage_frame(sh, [row]), general, check_exact=True)

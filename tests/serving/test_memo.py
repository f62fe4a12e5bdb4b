"""The server's memoised answers equal fresh ones: a known deal scored without overrides gives
exactly what ``score_features`` gives for its feature row now (whether the row came from the
latest score run or was scored on the first request), and a deal's GET answer is the same
document every time."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pandas as pd
from fastapi.testclient import TestClient

from salesml.scoring import score_features
from serving.api.schemas import DealResponse, ScoreRow
from serving.api.state import ScoreMemo, ServingState, records
from tests.serving.conftest import Workspace, headers


def _fresh(state: ServingState, deal_id: str) -> dict[str, Any]:
    snap = state.snapshot()
    assert snap.data is not None
    rows = score_features(snap.data.features.loc[[deal_id]], snap.models, snap.data.as_of)
    return ScoreRow(**records(rows)[0]).model_dump(mode="json")


def _post(client: TestClient, workspace: Workspace, deal_id: str) -> dict[str, Any]:
    response = client.post(
        "/v1/deals/score",
        json={"deals": [{"deal_id": deal_id}]},
        headers=headers(workspace, "writer"),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body: dict[str, Any] = response.json()
    return body


def test_known_deals_from_the_memo_equal_fresh_scores(
    workspace: Workspace, client: TestClient
) -> None:
    state: ServingState = client.app.state.serving  # type: ignore[attr-defined]
    snap = state.snapshot()
    assert snap.data is not None and snap.memo is not None
    assert snap.memo.fits(snap.models, snap.data)
    ids = list(snap.data.features.index[:6])
    # The run was scored from this very data and model: its rows seed the memo.
    assert set(ids) <= snap.memo.from_run
    for deal_id in ids:
        first = _post(client, workspace, deal_id)
        again = _post(client, workspace, deal_id)
        assert first == again
        assert first["model_version"] == snap.model_version
        assert first["as_of"] == snap.data.as_of.isoformat()
        assert first["scores"] == [_fresh(state, deal_id)]
    # Rows not in the run are scored on the first request, then served from the memo.
    memo = ScoreMemo(snap.models, snap.data, None)
    assert not memo.from_run
    state._swap(replace(snap, memo=memo))
    try:
        for deal_id in ids[:3]:
            assert memo.get(deal_id) is None
            assert _post(client, workspace, deal_id)["scores"] == [_fresh(state, deal_id)]
            cached = memo.get(deal_id)
            assert cached is not None and json.loads(cached) == _fresh(state, deal_id)
    finally:
        state._swap(snap)


def test_memo_refuses_a_run_of_another_model_or_date(
    workspace: Workspace, client: TestClient
) -> None:
    state: ServingState = client.app.state.serving  # type: ignore[attr-defined]
    snap = state.snapshot()
    assert snap.data is not None and snap.run is not None
    other = snap.run.rows.copy()
    other["model_version"] = "not-this-one"
    moved = type(snap.run)(snap.run.info, other, snap.run.positions, snap.run.past)
    assert not ScoreMemo(snap.models, snap.data, moved).from_run
    later = snap.run.rows.copy()
    later["as_of"] = later["as_of"] + pd.Timedelta(days=1)
    moved = type(snap.run)(snap.run.info, later, snap.run.positions, snap.run.past)
    assert not ScoreMemo(snap.models, snap.data, moved).from_run
    assert not snap.run.rows.empty
    # another models object (a hot swap): the snapshot's memo no longer fits
    assert snap.memo is not None and not snap.memo.fits(object(), snap.data)


def test_get_deal_answers_are_stable_and_valid(workspace: Workspace, client: TestClient) -> None:
    state: ServingState = client.app.state.serving  # type: ignore[attr-defined]
    snap = state.snapshot()
    assert snap.run is not None
    deal_id = str(snap.run.rows["deal_id"].iloc[0])
    first = client.get(f"/v1/deals/{deal_id}", headers=headers(workspace, "reader"))
    second = client.get(f"/v1/deals/{deal_id}", headers=headers(workspace, "reader"))
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.content == second.content
    body = first.json()
    assert DealResponse(**body).model_dump(mode="json") == body
    assert body["score"]["deal_id"] == deal_id
    assert deal_id in snap.run.answers


def test_concurrent_first_requests_fill_the_memo_with_fresh_scores(
    workspace: Workspace, client: TestClient
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    state: ServingState = client.app.state.serving  # type: ignore[attr-defined]
    snap = state.snapshot()
    assert snap.data is not None
    ids = list(snap.data.features.index[:24])
    memo = ScoreMemo(snap.models, snap.data, None)  # nothing from the run: all scored now
    state._swap(replace(snap, memo=memo))
    try:
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda d: _post(client, workspace, d), ids * 2))
    finally:
        state._swap(snap)
    for deal_id, answer in zip(ids * 2, answers, strict=True):
        assert answer["scores"] == [_fresh(state, deal_id)]
    assert set(memo.rows) == set(ids)

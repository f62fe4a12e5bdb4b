"""What a plugin developer relies on (issue 15): a team key learns nothing about other teams'
reps, what-ifs are validated, duplicates in a batch are answered in order, drivers and actions
are JSON arrays, every answer is typed in the OpenAPI schema."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from tests.serving.conftest import Workspace, headers, make_app_settings


def _open(ws: Workspace, team: str | None = None) -> pd.DataFrame:
    deals = ws.history.deals
    open_deals = deals[deals["status"] == "open"]
    return open_deals if team is None else open_deals[open_deals["team"] == team]


def _rep(ws: Workspace, team: str) -> str:
    reps = ws.history.reps
    return str(reps[reps["team"] == team]["owner_id"].iloc[0])


def _score(client: TestClient, ws: Workspace, role: str, *items: object) -> object:
    return client.post("/v1/deals/score", json={"deals": list(items)}, headers=headers(ws, role))


@pytest.fixture(scope="module", params=[True, False], ids=["hot", "fastapi"])
def both(request: pytest.FixtureRequest, workspace: Workspace) -> Iterator[TestClient]:
    """The app with the hot path on and off: every rule holds on both."""
    app = create_app(make_app_settings(workspace.home, hot_path=request.param))
    with TestClient(app) as c:
        yield c


def test_a_team_key_cannot_score_with_another_teams_rep(
    workspace: Workspace, both: TestClient
) -> None:
    mine = _open(workspace, workspace.team_a)["deal_id"].iloc[0]
    their_rep = _rep(workspace, workspace.team_b)
    answers = []
    for owner in (their_rep, "NOBODY-42"):
        for item in (
            {"deal_id": mine, "overrides": {"owner_id": owner}},
            {"deal": {"created_at": "2026-03-01T00:00:00Z", "owner_id": owner}},
            {
                "deal": {
                    "created_at": "2026-03-01T00:00:00Z",
                    "owner_id": owner,
                    "team": workspace.team_a,
                }
            },
        ):
            response = _score(both, workspace, "team_a", item)
            assert response.status_code == 403, response.text  # type: ignore[attr-defined]
            body = response.json()  # type: ignore[attr-defined]
            answers.append((body["detail"], body["errors"][0]["field"].split(".")[-1]))
    # existing and unknown reps are indistinguishable
    assert len(set(answers)) == 1
    my_rep = _rep(workspace, workspace.team_a)
    ok = _score(both, workspace, "team_a", {"deal_id": mine, "overrides": {"owner_id": my_rep}})
    assert ok.status_code == 200, ok.text  # type: ignore[attr-defined]


def test_whatifs_are_validated(workspace: Workspace, both: TestClient) -> None:
    deal = _open(workspace)["deal_id"].iloc[0]
    bad_stage = _score(both, workspace, "admin", {"deal_id": deal, "overrides": {"stage": "Blah"}})
    assert bad_stage.status_code == 422  # type: ignore[attr-defined]
    problem = bad_stage.json()  # type: ignore[attr-defined]
    assert problem["errors"][0]["field"] == "body.deals[0].overrides.stage"
    for stage in set(workspace.history.stage_history["stage"]):
        assert stage in problem["detail"]
    new_bad = _score(
        both, workspace, "admin", {"deal": {"created_at": "2026-03-01T00:00:00Z", "stage": "Blah"}}
    )
    assert new_bad.status_code == 422  # type: ignore[attr-defined]
    assert new_bad.json()["errors"][0]["field"] == "body.deals[0].deal.stage"  # type: ignore[attr-defined]
    reused = _score(
        both, workspace, "admin", {"deal": {"deal_id": deal, "created_at": "2026-03-01T00:00:00Z"}}
    )
    assert reused.status_code == 409  # type: ignore[attr-defined]
    assert reused.json()["errors"][0]["field"] == "body.deals[0].deal.deal_id"  # type: ignore[attr-defined]
    # a team-bound key learns nothing of other teams: their ids are unused ids to it
    theirs = _open(workspace, workspace.team_b)["deal_id"].iloc[0]
    mine = _open(workspace, workspace.team_a)["deal_id"].iloc[0]
    new = {"created_at": "2026-03-01T00:00:00Z", "owner_id": _rep(workspace, workspace.team_a)}
    other = _score(both, workspace, "team_a", {"deal": {**new, "deal_id": theirs}})
    unused = _score(both, workspace, "team_a", {"deal": {**new, "deal_id": "NEVER-USED-1"}})
    assert other.status_code == unused.status_code == 200, other.text  # type: ignore[attr-defined]
    assert other.json()["scores"][0]["deal_id"] == theirs  # type: ignore[attr-defined]
    own = _score(both, workspace, "team_a", {"deal": {**new, "deal_id": mine}})
    assert own.status_code == 409  # type: ignore[attr-defined]
    for item in (
        {"deal_id": deal, "overrides": {"owner_id": "NOBODY-42"}},
        {"deal": {"created_at": "2026-03-01T00:00:00Z", "owner_id": "NOBODY-42"}},
    ):
        unknown = _score(both, workspace, "admin", item)
        assert unknown.status_code == 422  # type: ignore[attr-defined]
        assert unknown.json()["errors"][0]["field"].endswith(".owner_id")  # type: ignore[attr-defined]


def test_the_same_deal_twice_in_a_batch_is_answered_in_order(
    workspace: Workspace, both: TestClient
) -> None:
    deal = _open(workspace)["deal_id"].iloc[1]
    alone = _score(both, workspace, "admin", {"deal_id": deal}).json()["scores"][0]  # type: ignore[attr-defined]
    whatif = {"deal_id": deal, "overrides": {"amount": 1.0}}
    other = {"deal_id": deal, "overrides": {"amount": 5e6}}
    single = _score(both, workspace, "admin", whatif).json()["scores"][0]  # type: ignore[attr-defined]
    response = _score(both, workspace, "admin", {"deal_id": deal}, whatif, other, {"deal_id": deal})
    assert response.status_code == 200, response.text  # type: ignore[attr-defined]
    scores = response.json()["scores"]  # type: ignore[attr-defined]
    assert [s["deal_id"] for s in scores] == [deal] * 4
    assert scores[0] == alone == scores[3]
    assert scores[1]["win_probability"] == pytest.approx(single["win_probability"], abs=1e-12)


def test_drivers_and_actions_are_arrays_of_objects(workspace: Workspace, both: TestClient) -> None:
    deal = _open(workspace)["deal_id"].iloc[2]
    scored = _score(
        both,
        workspace,
        "admin",
        {"deal_id": deal},
        {"deal_id": deal, "overrides": {"amount": 10.0}},
    )
    got = both.get(f"/v1/deals/{deal}", headers=headers(workspace, "admin")).json()
    for row in [*scored.json()["scores"], got["score"]]:  # type: ignore[attr-defined]
        assert isinstance(row["drivers"], list) and row["drivers"]
        assert {"concept", "feature", "contribution", "text"} <= set(row["drivers"][0])
        assert isinstance(row["actions"], list)
        assert all(isinstance(a["action"], str) and len(a["action"]) > 1 for a in row["actions"])


def test_a_reps_coaching_is_one_entry_per_action(workspace: Workspace, client: TestClient) -> None:
    rep = _open(workspace)["owner_id"].value_counts().index[0]
    body = client.get(f"/v1/reps/{rep}", headers=headers(workspace, "reader")).json()
    assert body["at_risk"]
    actions = [(d["deal_id"], a) for d in body["at_risk"] for a in d["actions"]]
    assert [(c["deal_id"], c["action"]) for c in body["coaching"]] == actions
    assert all(len(c["action"]["action"]) > 1 for c in body["coaching"])
    assert isinstance(body["at_risk"][0]["drivers"], list)


def test_every_answer_is_typed_in_the_openapi_schema(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    row = schemas["ScoreRow"]["properties"]
    assert row["drivers"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/Driver"}
    assert row["actions"]["anyOf"][0]["items"] == {"$ref": "#/components/schemas/Action"}
    assert {"concept", "contribution", "text"} <= set(schemas["Driver"]["properties"])
    basis = row["score_basis"]["anyOf"][0]
    assert basis["enum"] == ["model", "base_rate", "beyond_observed_ages", "unseen_input"]
    assert row["score_warning"]["anyOf"][0] == {"type": "string"}
    kpis = schemas["KpiResponse"]["properties"]
    assert kpis["groups"]["items"] == {"$ref": "#/components/schemas/KpiBlock"}
    assert {"revenue", "win_rate", "funnel", "periods"} <= set(schemas["KpiBlock"]["properties"])
    rep = schemas["RepResponse"]["properties"]
    assert rep["coaching"]["items"] == {"$ref": "#/components/schemas/Coaching"}
    change = schemas["ScoreChange"]["properties"]["drivers"]
    assert change["anyOf"][0]["items"] == {"$ref": "#/components/schemas/ChangeDriver"}


def test_the_docs_page_works_offline(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert not re.search(r"https?://", page.text)
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert len(assets) >= 2
    for asset in assets:
        assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").status_code == 200


@pytest.mark.parametrize(
    ("deal", "field"),
    [
        ({"created_at": "1066-03-02T00:00:00Z"}, "created_at"),
        (
            {"created_at": "2026-03-01T00:00:00Z", "expected_close_date": "9999-12-31"},
            "expected_close_date",
        ),
        (
            {"created_at": "2026-03-01T00:00:00Z", "expected_close_date": "0001-01-01"},
            "expected_close_date",
        ),
        ({"created_at": "2026-03-01T00:00:00Z", "amount": True}, "amount"),
        ({"created_at": "2026-03-01T00:00:00Z", "amount": 5e13}, "amount"),
        ({"created_at": "2026-03-01T00:00:00Z", "deal_id": "CRM\u202e-1"}, "deal_id"),
    ],
)
def test_values_the_importer_would_reject_are_refused(
    workspace: Workspace, both: TestClient, deal: dict[str, object], field: str
) -> None:
    """The API keeps the importer's bounds: no year 1066 or 9999, no `true` for an amount,
    nothing above the amount ceiling, no bidi controls in an id — 422 naming the field."""
    answer = _score(both, workspace, "admin", {"deal": deal})
    assert answer.status_code == 422, answer.text  # type: ignore[attr-defined]
    fields = [e["field"] for e in answer.json()["errors"]]  # type: ignore[attr-defined]
    assert any(f.endswith(f".{field}") for f in fields), fields

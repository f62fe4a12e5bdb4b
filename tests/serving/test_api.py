"""Every endpoint: happy paths, problem+json errors, keys, scopes, team scope and limits."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.api.deps import forecaster
from tests.serving.conftest import Workspace, headers, make_app_settings


def _open(ws: Workspace, team: str | None = None) -> pd.DataFrame:
    deals = ws.history.deals
    open_deals = deals[deals["status"] == "open"]
    return open_deals if team is None else open_deals[open_deals["team"] == team]


def _problem(response: object, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert body["status"] == status
    assert "Traceback" not in json.dumps(body)
    return body


def test_health_ready_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["run_id"] == "r1" and ready.json()["model_version"] == "1"
    text = client.get("/metrics").text
    assert 'salesml_api_model_version{version="1"} 1.0' in text
    assert "salesml_api_score_run_age_seconds" in text
    assert "salesml_api_request_seconds_bucket" in text


def test_get_deal_returns_the_latest_run_row_and_history(
    workspace: Workspace, client: TestClient
) -> None:
    deal = _open(workspace)["deal_id"].iloc[0]
    response = client.get(f"/v1/deals/{deal}", headers=headers(workspace, "reader"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["run_id"] == "r1"
    assert body["score"]["deal_id"] == deal
    assert 1 <= body["score"]["score"] <= 99
    assert [p["run_id"] for p in body["history"]] == ["r1"]
    assert body["change"] is None
    assert response.headers["x-request-id"]


def test_score_known_whatif_and_new_deals(workspace: Workspace, client: TestClient) -> None:
    deals = _open(workspace)["deal_id"].tolist()[:2]
    stored = client.get(f"/v1/deals/{deals[0]}", headers=headers(workspace, "reader")).json()
    body = {
        "deals": [
            {"deal_id": deals[0]},
            {"deal_id": deals[1], "overrides": {"amount": 1.0, "stage": "Negotiation"}},
            {
                "deal": {
                    "deal_id": "CRM-1",
                    "created_at": "2026-03-01T00:00:00Z",
                    "stage": "Discovery",
                    "amount": 5000,
                    "team": workspace.team_a,
                }
            },
        ]
    }
    response = client.post("/v1/deals/score", json=body, headers=headers(workspace, "writer"))
    assert response.status_code == 200, response.text
    scores = response.json()["scores"]
    assert [s["deal_id"] for s in scores] == [deals[0], deals[1], "CRM-1"]
    # A known deal without overrides scores exactly as in the batch run of the same data.
    assert scores[0]["win_probability"] == pytest.approx(stored["score"]["win_probability"], 1e-12)
    assert all(s["model_version"] == "1" for s in scores)
    assert scores[2]["team"] == workspace.team_a


def test_whatif_changes_the_score(workspace: Workspace, client: TestClient) -> None:
    deal = _open(workspace)["deal_id"].iloc[3]
    h = headers(workspace, "writer")
    stages = sorted(set(workspace.history.stage_history["stage"]))
    what_ifs = [
        {},
        {"expected_close_date": "2030-01-01"},
        {"amount": 5e6},
        *({"stage": s} for s in stages),
    ]
    body = {"deals": [{"deal_id": deal, "overrides": o} for o in what_ifs[:1]]}
    probabilities = set()
    for overrides in what_ifs:
        body = {"deals": [{"deal_id": deal, "overrides": overrides}]}
        response = client.post("/v1/deals/score", json=body, headers=h)
        assert response.status_code == 200, response.text
        probabilities.add(response.json()["scores"][0]["win_probability"])
    assert len(probabilities) > 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"deals": []}, "body.deals"),
        ({"deals": [{"deal_id": "D1", "extra": 1}]}, "body.deals[0].extra"),
        (
            {"deals": [{"deal_id": "D1", "overrides": {"amount": -5}}]},
            "body.deals[0].overrides.amount",
        ),
        (
            {"deals": [{"deal_id": "D1", "overrides": {"colour": "red"}}]},
            "body.deals[0].overrides.colour",
        ),
        ({"deals": [{"deal": {"amount": 3}}]}, "body.deals[0].deal.created_at"),
        ({"deals": [{}]}, "body.deals[0]"),
        ({"deals": [{"deal_id": "D1", "deal": {"created_at": "2026-01-01"}}]}, "body.deals[0]"),
        ({"nope": []}, "body.deals"),
    ],
)
def test_invalid_bodies_name_the_field(
    workspace: Workspace, client: TestClient, body: object, field: str
) -> None:
    response = client.post("/v1/deals/score", json=body, headers=headers(workspace, "writer"))
    problem = _problem(response, 422)
    fields = [e["field"] for e in problem["errors"]]  # type: ignore[union-attr, index]
    assert any(f.startswith(field) for f in fields), fields


def test_semantic_errors(workspace: Workspace, client: TestClient) -> None:
    h = headers(workspace, "writer")
    closed = workspace.history.deals[workspace.history.deals["status"] == "won"]["deal_id"].iloc[0]
    problem = _problem(
        client.post("/v1/deals/score", json={"deals": [{"deal_id": closed}]}, headers=h), 422
    )
    assert "only open deals" in str(problem["detail"])
    future = {"deals": [{"deal": {"created_at": "2030-01-01T00:00:00Z"}}]}
    problem = _problem(client.post("/v1/deals/score", json=future, headers=h), 422)
    assert problem["errors"][0]["field"] == "body.deals[0].deal.created_at"  # type: ignore[index]
    unknown_attr = {
        "deals": [
            {
                "deal_id": _open(workspace)["deal_id"].iloc[0],
                "overrides": {"attributes": {"nope": 1}},
            }
        ]
    }
    problem = _problem(client.post("/v1/deals/score", json=unknown_attr, headers=h), 422)
    assert problem["errors"][0]["field"].endswith("attributes.nope")  # type: ignore[index]
    problem = _problem(
        client.post(
            "/v1/deals/score",
            content=b"{not json",
            headers={**h, "content-type": "application/json"},
        ),
        422,
    )
    problem = _problem(client.get("/v1/kpis?by=planet", headers=headers(workspace, "reader")), 422)
    assert problem["errors"][0]["field"] == "query.by"  # type: ignore[index]
    problem = _problem(client.get("/v1/kpis?colour=1", headers=headers(workspace, "reader")), 422)
    assert problem["errors"][0]["field"] == "query.colour"  # type: ignore[index]


def test_every_bad_deal_of_a_batch_is_named_in_one_answer(
    workspace: Workspace, client: TestClient
) -> None:
    """A batch answers every bad deal and field at once (index, field, reason), not the first
    one only; the good deals of it are not scored. Problems of one status keep it (two unknown
    deals: 404); of several statuses the answer is 422."""
    h = headers(workspace, "writer")
    good, other = _open(workspace)["deal_id"].iloc[:2]
    closed = workspace.history.deals.query("status != 'open'")["deal_id"].iloc[0]
    body = {
        "deals": [
            {"deal_id": good},
            {"deal_id": "NOPE-1"},
            {"deal_id": other, "overrides": {"stage": "Nowhere", "attributes": {"nope": 1}}},
            {"deal_id": closed},
            {"deal": {"created_at": "2030-01-01T00:00:00Z", "amount": 5.0, "owner_id": "ghost"}},
        ]
    }
    problem = _problem(client.post("/v1/deals/score", json=body, headers=h), 422)
    fields = [e["field"] for e in problem["errors"]]  # type: ignore[attr-defined]
    assert fields == [
        "body.deals[1].deal_id",
        "body.deals[2].overrides.stage",
        "body.deals[2].overrides.attributes.nope",
        "body.deals[3].deal_id",
        "body.deals[4].deal.owner_id",
        "body.deals[4].deal.created_at",
        "body.deals[4].deal.stage",
    ]
    messages = [e["message"] for e in problem["errors"]]  # type: ignore[attr-defined]
    assert "no deal 'NOPE-1'" in messages[0] and "only open deals" in messages[3]
    assert str(problem["detail"]).startswith("7 problems with the deals asked: body.deals[1]")
    two = {"deals": [{"deal_id": "NOPE-1"}, {"deal_id": good}, {"deal_id": "NOPE-2"}]}
    problem = _problem(client.post("/v1/deals/score", json=two, headers=h), 404)
    assert [e["field"] for e in problem["errors"]] == [  # type: ignore[attr-defined]
        "body.deals[0].deal_id",
        "body.deals[2].deal_id",
    ]


def test_unknown_deal_and_route_are_404(workspace: Workspace, client: TestClient) -> None:
    problem = _problem(client.get("/v1/deals/NOPE", headers=headers(workspace, "reader")), 404)
    assert problem["errors"][0]["field"] == "path.deal_id"  # type: ignore[index]
    _problem(
        client.post(
            "/v1/deals/score",
            json={"deals": [{"deal_id": "NOPE"}]},
            headers=headers(workspace, "writer"),
        ),
        404,
    )
    _problem(client.get("/v1/nothing", headers=headers(workspace, "reader")), 404)
    _problem(client.get("/v1/reps/NOBODY", headers=headers(workspace, "reader")), 404)
    # Ids as long as the importer and the events accept (256) are looked up, not refused.
    long_id = "L" * 256
    _problem(client.get(f"/v1/deals/{long_id}", headers=headers(workspace, "reader")), 404)
    _problem(
        client.post(
            "/v1/deals/score",
            json={"deals": [{"deal_id": long_id}]},
            headers=headers(workspace, "writer"),
        ),
        404,
    )
    too_long = _problem(
        client.get(f"/v1/deals/{long_id}L", headers=headers(workspace, "reader")), 422
    )
    assert too_long["errors"][0]["field"] == "path.deal_id"  # type: ignore[index]


def test_authentication_and_scopes(workspace: Workspace, client: TestClient) -> None:
    deal = _open(workspace)["deal_id"].iloc[0]
    no_key = _problem(client.get(f"/v1/deals/{deal}"), 401)
    assert "X-API-Key" in str(no_key["detail"])
    _problem(
        client.get(f"/v1/deals/{deal}", headers={"X-API-Key": "sml_000000000000_" + "x" * 43}), 401
    )
    _problem(client.get(f"/v1/deals/{deal}", headers={"X-API-Key": "garbage"}), 401)
    body = {"deals": [{"deal_id": deal}]}
    _problem(client.post("/v1/deals/score", json=body, headers=headers(workspace, "reader")), 403)
    _problem(client.get(f"/v1/deals/{deal}", headers=headers(workspace, "forecast")), 403)
    _problem(client.get("/v1/forecast", headers=headers(workspace, "reader")), 403)
    ok = client.post("/v1/deals/score", json=body, headers=headers(workspace, "admin"))
    assert ok.status_code == 200


def test_team_scope_hides_other_teams_everywhere(workspace: Workspace, client: TestClient) -> None:
    h = headers(workspace, "team_a")
    mine = _open(workspace, workspace.team_a)["deal_id"].iloc[0]
    theirs = _open(workspace, workspace.team_b)["deal_id"].iloc[0]
    assert client.get(f"/v1/deals/{mine}", headers=h).status_code == 200
    hidden = _problem(client.get(f"/v1/deals/{theirs}", headers=h), 404)
    missing = _problem(client.get("/v1/deals/NOPE", headers=h), 404)
    assert hidden["detail"] == f"no deal {theirs!r}" and missing["detail"] == "no deal 'NOPE'"
    # batches: one foreign deal hides the whole answer
    _problem(
        client.post(
            "/v1/deals/score", json={"deals": [{"deal_id": mine}, {"deal_id": theirs}]}, headers=h
        ),
        404,
    )
    _problem(
        client.post(
            "/v1/deals/score",
            json={"deals": [{"deal_id": theirs, "overrides": {"team": workspace.team_a}}]},
            headers=h,
        ),
        404,
    )
    _problem(
        client.post(
            "/v1/deals/score",
            json={"deals": [{"deal_id": mine, "overrides": {"team": workspace.team_b}}]},
            headers=h,
        ),
        403,
    )
    _problem(
        client.post(
            "/v1/deals/score",
            json={
                "deals": [{"deal": {"created_at": "2026-03-01T00:00:00", "team": workspace.team_b}}]
            },
            headers=h,
        ),
        403,
    )
    new = client.post(
        "/v1/deals/score",
        json={"deals": [{"deal": {"created_at": "2026-03-01T00:00:00"}}]},
        headers=h,
    )
    assert new.status_code == 200 and new.json()["scores"][0]["team"] == workspace.team_a
    # reps
    reps = workspace.history.reps
    my_rep = reps[reps["team"] == workspace.team_a]["owner_id"].iloc[0]
    their_rep = reps[reps["team"] == workspace.team_b]["owner_id"].iloc[0]
    assert client.get(f"/v1/reps/{my_rep}", headers=h).status_code == 200
    _problem(client.get(f"/v1/reps/{their_rep}", headers=h), 404)
    # KPIs: only the key's team, overall and in lists
    kpis = client.get("/v1/kpis?by=team", headers=h).json()
    assert [g["group"] for g in kpis["groups"]] == [workspace.team_a]
    assert kpis["overall"]["group"] == workspace.team_a
    by_rep = client.get("/v1/kpis?by=rep", headers=h).json()
    team_of = dict(zip(reps["owner_id"], reps["team"], strict=True))
    assert by_rep["groups"] and {team_of[g["group"]] for g in by_rep["groups"]} == {
        workspace.team_a
    }
    _problem(client.get("/v1/kpis?by=region", headers=h), 403)


def test_rep_and_kpis_and_models(workspace: Workspace, client: TestClient) -> None:
    h = headers(workspace, "reader")
    owner = _open(workspace)["owner_id"].iloc[0]
    rep = client.get(f"/v1/reps/{owner}", headers=h).json()
    assert rep["owner_id"] == owner and rep["open_deals"] > 0 and rep["kpis"]["group"] == owner
    assert len(rep["at_risk"]) <= 5
    kpis = client.get("/v1/kpis", headers=h).json()
    assert kpis["overall"]["win_rate"] is not None
    models = client.get("/v1/models", headers=h).json()
    assert models["serving_version"] == "1"
    versions = {v["version"]: v for v in models["versions"]}
    assert versions["1"]["aliases"] == ["champion"] and versions["2"]["aliases"] == ["challenger"]
    assert set(versions["1"]["holdout"]) >= {"auc", "brier", "log_loss"}
    assert versions["1"]["model_card"]


def test_forecast_serves_the_forecast_functions_rows_scoped_to_the_team(
    workspace: Workspace, client: TestClient
) -> None:
    def forecast(**given: object) -> list[dict[str, object]]:
        return [
            {"period": "2026-04", "team": t, "revenue": 1.0}
            for t in (workspace.team_a, workspace.team_b)
        ]

    app = client.app
    app.dependency_overrides[forecaster] = lambda: forecast  # type: ignore[attr-defined]
    try:
        full = client.get("/v1/forecast?by=team", headers=headers(workspace, "forecast"))
        mine = client.get("/v1/forecast?by=team", headers=headers(workspace, "team_a")).json()
    finally:
        app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert full.status_code == 200 and len(full.json()["rows"]) == 2
    assert [r["team"] for r in mine["rows"]] == [workspace.team_a]


def test_limits_413_422_and_429(workspace: Workspace) -> None:
    app = create_app(
        make_app_settings(
            workspace.home, max_body_bytes=2048, max_batch=3, rate_per_second=1, rate_burst=3
        )
    )
    deals = _open(workspace)["deal_id"].tolist()
    with TestClient(app) as c:
        h = headers(workspace, "admin")
        big = {"deals": [{"deal_id": "x" * 100}] * 30}
        _problem(c.post("/v1/deals/score", json=big, headers=h), 413)
        many = {"deals": [{"deal_id": d} for d in deals[:4]]}
        problem = _problem(c.post("/v1/deals/score", json=many, headers=h), 422)
        assert problem["errors"][0]["field"] == "body.deals"  # type: ignore[index]
        answers = [c.get(f"/v1/deals/{deals[0]}", headers=h) for _ in range(6)]
        codes = [a.status_code for a in answers]
        assert 200 in codes and 429 in codes, codes
        limited = answers[codes.index(429)]
        _problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1
        # another key has its own bucket
        assert (
            c.get(f"/v1/deals/{deals[0]}", headers=headers(workspace, "reader")).status_code == 200
        )


def test_revoked_key_is_refused_without_restart(workspace: Workspace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from serving.keys import KeyStore

    home = workspace.copy_home(tmp_path / "home")
    store = KeyStore.for_home(home)
    key, secret = store.add("temp", ["scores:read"])
    app = create_app(make_app_settings(home))
    deal = _open(workspace)["deal_id"].iloc[0]
    with TestClient(app) as c:
        assert c.get(f"/v1/deals/{deal}", headers={"X-API-Key": secret}).status_code == 200
        store.revoke(key.key_id)
        _problem(c.get(f"/v1/deals/{deal}", headers={"X-API-Key": secret}), 401)


def test_errors_and_logs_leak_no_secrets_or_traces(
    workspace: Workspace,
    client: TestClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from serving.api import state as state_module

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret-db-password=hunter2")

    monkeypatch.setattr(state_module, "score_columns", boom)
    # the deal's row is memoised from the score run: make the request score it now
    monkeypatch.setattr(state_module.ScoreMemo, "get", lambda self, deal_id: None)
    deal = _open(workspace)["deal_id"].iloc[0]
    key = workspace.keys["writer"]
    logger = logging.getLogger("salesml")
    logger.addHandler(caplog.handler)
    try:
        response = client.post(
            "/v1/deals/score",
            json={"deals": [{"deal_id": deal}]},
            headers={"X-API-Key": key, "X-Request-ID": "req-123"},
        )
    finally:
        logger.removeHandler(caplog.handler)
    problem = _problem(response, 500)
    assert problem["request_id"] == "req-123"
    assert "hunter2" not in response.text
    logs = "\n".join(r.getMessage() + json.dumps(getattr(r, "fields", {})) for r in caplog.records)
    assert "req-123" in logs and "RuntimeError" in logs
    assert "hunter2" not in logs and key not in logs and "Traceback" not in logs


def test_not_ready_until_loaded(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(make_app_settings(tmp_path / "empty"))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["ready"] is False


def _same_answer(fast: object, slow: object) -> None:
    assert fast.status_code == slow.status_code, (fast.text, slow.text)  # type: ignore[attr-defined]
    assert fast.headers["content-type"] == slow.headers["content-type"]  # type: ignore[attr-defined]
    for name in ("retry-after", "www-authenticate"):
        assert fast.headers.get(name) == slow.headers.get(name)  # type: ignore[attr-defined]
    if fast.status_code == 200:  # type: ignore[attr-defined]
        assert fast.content == slow.content  # type: ignore[attr-defined]
    else:
        a, b = fast.json(), slow.json()  # type: ignore[attr-defined]
        a.pop("request_id"), b.pop("request_id")
        assert a == b


def test_hot_path_answers_like_the_fastapi_routes(workspace: Workspace) -> None:
    """The edge's hot path (serving.api.hot) and the FastAPI routes give the same answers,
    errors included; only well-formed requests are answered at the edge."""
    deals = _open(workspace, workspace.team_a)["deal_id"].tolist()[:3]
    other = _open(workspace, workspace.team_b)["deal_id"].iloc[0]
    closed = workspace.history.deals.query("status != 'open'")["deal_id"].iloc[0]
    admin, team, reader = (headers(workspace, r) for r in ("admin", "team_a", "reader"))
    calls: list[tuple[str, str, dict[str, str], object]] = [
        *[("GET", f"/v1/deals/{d}", h, None) for d in [*deals, other] for h in (admin, team)],
        ("GET", "/v1/deals/NOPE", admin, None),
        ("GET", f"/v1/deals/{deals[0]}", {}, None),
        ("GET", f"/v1/deals/{deals[0]}", {"X-API-Key": "garbage"}, None),
        ("GET", f"/v1/deals/{deals[0]}", headers(workspace, "forecast"), None),
        ("GET", f"/v1/deals/{deals[0]}?x=1", admin, None),
        ("GET", "/v1/deals/score", admin, None),
        *[
            ("POST", "/v1/deals/score", h, {"deals": [{"deal_id": d} for d in deals]})
            for h in (admin, team, reader)
        ],
        ("POST", "/v1/deals/score", team, {"deals": [{"deal_id": other}]}),
        ("POST", "/v1/deals/score", admin, {"deals": [{"deal_id": closed}]}),
        (
            "POST",
            "/v1/deals/score",
            team,
            {"deals": [{"deal_id": other}, {"deal_id": closed}, {"deal_id": "NOPE"}]},
        ),
        ("POST", "/v1/deals/score", admin, {"deals": [{"deal_id": deals[0]}] * 2}),
        ("POST", "/v1/deals/score", admin, {"deals": [{"deal_id": d} for d in deals * 40]}),
        ("POST", "/v1/deals/score", admin, {"deals": [{"deal_id": deals[0], "colour": 1}]}),
        ("POST", "/v1/deals/score", admin, {"deals": []}),
        ("POST", "/v1/deals/score", admin, "not json"),
        (
            "POST",
            "/v1/deals/score",
            team,
            {"deals": [{"deal_id": deals[0], "overrides": {"team": workspace.team_b}}]},
        ),
        (
            "POST",
            "/v1/deals/score",
            admin,
            {"deals": [{"deal_id": deals[1], "overrides": {"amount": 12345.0}}]},
        ),
    ]
    fast_app = create_app(make_app_settings(workspace.home, hot_path=True))
    slow_app = create_app(make_app_settings(workspace.home, hot_path=False))
    with TestClient(fast_app) as fast, TestClient(slow_app) as slow:
        for method, path, h, body in calls:
            kwargs: dict[str, object] = {"headers": h}
            if isinstance(body, str):
                kwargs["content"] = body
                kwargs["headers"] = {**h, "Content-Type": "application/json"}
            elif body is not None:
                kwargs["json"] = body
            _same_answer(fast.request(method, path, **kwargs), slow.request(method, path, **kwargs))  # type: ignore[arg-type]
        # both count the request under its route template
        for c in (fast, slow):
            text = c.get("/metrics").text
            assert 'route="/v1/deals/{deal_id}"' in text and 'route="/v1/deals/score"' in text


def test_hot_path_rate_limit_and_logs(
    workspace: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(make_app_settings(workspace.home, rate_per_second=1, rate_burst=2))
    deal = _open(workspace)["deal_id"].iloc[0]
    logger = logging.getLogger("salesml")
    logger.addHandler(caplog.handler)
    try:
        with TestClient(app) as c:
            h = {**headers(workspace, "writer"), "X-Request-ID": "hot-1"}
            body = {"deals": [{"deal_id": deal}]}
            codes = [c.post("/v1/deals/score", json=body, headers=h).status_code for _ in range(3)]
            limited = c.get(f"/v1/deals/{deal}", headers=h)
    finally:
        logger.removeHandler(caplog.handler)
    assert codes == [200, 200, 429]
    _problem(limited, 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.headers["x-request-id"] == "hot-1"
    fields = [getattr(r, "fields", {}) for r in caplog.records if r.name == "salesml.api.access"]
    assert [f["status"] for f in fields] == [200, 200, 429, 429]
    assert {f["route"] for f in fields} == {"/v1/deals/score", "/v1/deals/{deal_id}"}
    assert all(f["request_id"] == "hot-1" and f["key_id"] for f in fields)
    assert workspace.keys["writer"] not in json.dumps(fields)


def test_served_over_http_one_write_per_answer(workspace: Workspace) -> None:
    """``salesml serve``'s protocol (serving.api.server): keep-alive answers, whole and in
    order; a refused body closes the connection after its 413."""
    import socket
    import threading
    import time

    import httpx
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(make_app_settings(workspace.home, max_body_bytes=2048))
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        http="serving.api.server:HttpProtocol",
        log_level="warning",
        access_log=False,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        deals = _open(workspace)["deal_id"].tolist()[:5]
        h = headers(workspace, "admin")
        reference_app = create_app(make_app_settings(workspace.home))
        with (
            TestClient(reference_app) as reference,
            httpx.Client(base_url=f"http://127.0.0.1:{port}") as c,
        ):
            for deal in deals:
                got = c.get(f"/v1/deals/{deal}", headers=h)
                assert got.status_code == 200
                assert got.content == reference.get(f"/v1/deals/{deal}", headers=h).content
                scored = c.post("/v1/deals/score", json={"deals": [{"deal_id": deal}]}, headers=h)
                assert scored.status_code == 200 and scored.json()["scores"][0]["deal_id"] == deal
            big = c.post(
                "/v1/deals/score", json={"deals": [{"deal_id": "x" * 100}] * 30}, headers=h
            )
            _problem(big, 413)
            assert c.get("/healthz").json() == {"status": "ok"}  # a new connection
    finally:
        server.should_exit = True
        thread.join(30)

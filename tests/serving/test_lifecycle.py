"""Model lifecycle and concurrency: hot swap, rollback, registry outage, many threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from salesml.models.registry import WIN_MODEL_NAME, configure
from serving.api import models as registry
from serving.api.app import create_app
from serving.batch import run_batch
from serving.runs import RunStore
from tests.serving.conftest import Workspace, headers, make_app_settings


def _deals(ws: Workspace, n: int) -> list[str]:
    deals = ws.history.deals
    return deals[deals["status"] == "open"]["deal_id"].tolist()[:n]


def test_hot_swap_rollback_and_registry_outage(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = workspace.copy_home(tmp_path / "home")
    app = create_app(make_app_settings(home))
    state = app.state.serving
    client = configure()
    deal = _deals(workspace, 1)[0]
    body = {"deals": [{"deal_id": deal}]}
    h = headers(workspace, "writer")
    try:
        with TestClient(app) as c:
            assert c.post("/v1/deals/score", json=body, headers=h).json()["model_version"] == "1"
            held = state.snapshot()  # a request in flight holds this snapshot
            client.set_registered_model_alias(WIN_MODEL_NAME, "champion", "2")
            state.poll_once()
            assert c.post("/v1/deals/score", json=body, headers=h).json()["model_version"] == "2"
            assert held.model_version == "1" and held.models is not None  # untouched
            client.set_registered_model_alias(WIN_MODEL_NAME, "champion", "1")  # rollback
            state.poll_once()
            assert c.post("/v1/deals/score", json=body, headers=h).json()["model_version"] == "1"

            def unreachable(alias: str) -> str:
                raise ConnectionError("registry down")

            monkeypatch.setattr(registry, "registry_version", unreachable)
            state.poll_once()
            answer = c.post("/v1/deals/score", json=body, headers=h)
            assert answer.status_code == 200 and answer.json()["model_version"] == "1"
            assert c.get("/readyz").status_code == 200
            assert "salesml_api_registry_errors 1.0" in c.get("/metrics").text
            # A new score run is picked up too, and "why did my score change" compares runs.
            run_batch(
                workspace.history,
                workspace.model,
                workspace.history.exported_at,
                RunStore(home),
                run_id="r2",
            )
            state.poll_once()
            got = c.get(f"/v1/deals/{deal}", headers=h).json()
            assert got["run_id"] == "r2" and [p["run_id"] for p in got["history"]] == ["r1", "r2"]
            assert got["change"]["previous_run_id"] == "r1"
            assert got["change"]["win_probability_change"] == pytest.approx(0.0)
            assert "unchanged" in got["change"]["summary"]
    finally:
        client.set_registered_model_alias(WIN_MODEL_NAME, "champion", "1")


def test_many_threads_scoring_at_once_get_the_sequential_answers(
    workspace: Workspace, client: TestClient
) -> None:
    deals = _deals(workspace, 40)
    h = headers(workspace, "writer")

    def score(i: int) -> tuple[str, float]:
        deal = deals[i % len(deals)]
        overrides = {"amount": 1000.0 * (i % 3 + 1)} if i % 4 == 0 else None
        item = {"deal_id": deal, **({"overrides": overrides} if overrides else {})}
        response = client.post("/v1/deals/score", json={"deals": [item]}, headers=h)
        assert response.status_code == 200, response.text
        return f"{deal}/{overrides}", response.json()["scores"][0]["win_probability"]

    sequential = dict(score(i) for i in range(80))
    with ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(score, range(80)))
    for key, probability in concurrent:
        assert probability == sequential[key]

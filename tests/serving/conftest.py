"""One small workspace per test session: 3000 synthetic deals, a trained and registered model
(version 1 champion, version 2 challenger), a first score run and API keys of every kind."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from features.history import History
from salesml.scoring import Scorer, load_scorer
from salesml.warehouse import connect
from serving.api.app import create_app
from serving.api.live import LiveEvents
from serving.api.settings import ApiSettings
from serving.batch import run_batch
from serving.keys import KeyStore
from serving.runs import RunStore
from tests.helpers.history import synthetic_workspace


@dataclass(frozen=True)
class Workspace:
    root: Path
    home: Path
    tracking_uri: str
    history: History
    model: Scorer
    keys: dict[str, str]  # role -> full key
    team_a: str
    team_b: str

    def copy_home(self, dest: Path) -> Path:
        """A private copy of the workspace (warehouse, runs, keys) a test may change."""
        shutil.copytree(self.home, dest)
        return dest


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    from training.win.fit import train_win_model
    from training.win.register import log_and_register

    synthetic = synthetic_workspace(
        tmp_path_factory, deals=3000, seed=5, end_date=date(2026, 3, 31)
    )
    root = tmp_path_factory.mktemp("serving")
    home = synthetic.copy_home(root / "home")
    history = synthetic.history
    uri = f"sqlite:///{root / 'mlflow.db'}"
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "SALESML_HOME")}
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.environ["SALESML_HOME"] = str(home)
    cwd = Path.cwd()
    os.chdir(root)  # the default artifact root is ./mlruns
    try:
        result = train_win_model(history)
        first = log_and_register(result, None)
        second = log_and_register(result, None)
    finally:
        os.chdir(cwd)
    assert (first.alias, second.alias) == ("champion", "challenger")
    model = load_scorer("champion")
    run_batch(history, model, history.exported_at, RunStore(home), run_id="r1")
    open_deals = history.deals[history.deals["status"] == "open"]
    teams = open_deals["team"].value_counts().index.tolist()
    store = KeyStore.for_home(home)
    keys = {
        "admin": store.add("admin", ["admin"])[1],
        "reader": store.add("reader", ["scores:read"])[1],
        "writer": store.add("writer", ["scores:read", "scores:write"])[1],
        "forecast": store.add("forecast", ["forecast:read"])[1],
        "team_a": store.add(
            "team-a", ["scores:read", "scores:write", "forecast:read"], team=teams[0]
        )[1],
    }
    yield Workspace(root, home, uri, history, model, keys, teams[0], teams[1])
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def make_app_settings(home: Path, **overrides: object) -> ApiSettings:
    values: dict[str, object] = {
        "home": home,
        "poll_seconds": 0,
        "load_in_background": False,
        "rate_per_second": 10_000,
        "rate_burst": 10_000,
    }
    values.update(overrides)
    return ApiSettings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def client(workspace: Workspace) -> Iterator[TestClient]:
    app = create_app(make_app_settings(workspace.home))
    with TestClient(app) as test_client:
        yield test_client


def headers(workspace: Workspace, role: str) -> dict[str, str]:
    return {"X-API-Key": workspace.keys[role]}


@pytest.fixture(autouse=True)
def _workspace_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MLflow and salesml at this package's workspace for each test that uses it.

    Session workspaces of other test packages (the report's) set the same variables when they
    are built; a worker running tests of both must not leave these tests on the other store.
    """
    if "workspace" in request.fixturenames:
        ws: Workspace = request.getfixturevalue("workspace")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", ws.tracking_uri)
        monkeypatch.setenv("SALESML_HOME", str(ws.home))


@dataclass
class Served:
    """A served copy of the workspace with a key holding events:write and scores:read (the
    events tests' client)."""

    client: TestClient
    app: FastAPI
    home: Path
    headers: dict[str, str]
    deals: list[str]  # open deals of the first run, for tests to take apart

    @property
    def live(self) -> LiveEvents:
        live: LiveEvents = self.app.state.events
        return live

    def post(self, body: Any, **kwargs: Any) -> Any:
        return self.client.post("/v1/events", headers=self.headers, json=body, **kwargs)

    def settle(self, response: Any) -> None:
        """Wait until every accepted event of ``response`` is scored, published and its live
        score written to the journal (the applier writes it after publishing)."""
        seqs = [r["seq"] for r in response.json()["results"] if r.get("seq")]
        if seqs:
            assert self.live.wait_scored(max(seqs), timeout=60, saved=True)

    def deal(self, deal_id: str) -> dict[str, Any]:
        found = self.client.get(f"/v1/deals/{deal_id}", headers=self.headers)
        assert found.status_code == 200, found.text
        out: dict[str, Any] = found.json()
        return out

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        con = connect(self.home / "warehouse.duckdb", read_only=True)
        try:
            rows: list[tuple[Any, ...]] = con.execute(sql).fetchall()
            return rows
        finally:
            con.close()


def serve_events(
    workspace: Workspace, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[Served]:
    """A module fixture's body: the workspace copied under ``name``, served, with its key."""
    home = workspace.copy_home(tmp_path_factory.mktemp(name) / "home")
    key = KeyStore.for_home(home).add("crm", ["events:write", "scores:read"])[1]
    app = create_app(make_app_settings(home))
    with TestClient(app) as client:
        snap = app.state.serving.snapshot()
        yield Served(client, app, home, {"X-API-Key": key}, sorted(snap.data.features.index))

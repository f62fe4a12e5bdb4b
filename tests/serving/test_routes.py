"""The routers' wiring: the hot path checks what the hot routes declare, salesml's errors are
answered as problems from one table, and the served alias reaches the forecast and the CLI's
options reach the app through its settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from fastapi import APIRouter, FastAPI, Header
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from salesml.errors import SalesmlError
from salesml.models.evaluation import MetricsInputError
from salesml.models.registry import NoModelError
from salesml.models.revenue.bundle import MissingFrequencyError
from serving import api_cli
from serving import forecast as forecast_module
from serving.api import hot
from serving.api.app import create_app
from serving.api.deps import DealId, ScoresReadKey, SnapshotDep, StateDep, forecaster, strict_query
from serving.api.factory import AppFactory
from serving.api.hot import HotRoute
from serving.api.problems import SALESML_ERRORS, salesml_problem
from serving.api.routes import deals
from serving.api.security import API_KEY_HEADER, ScopeGuard
from tests.serving.conftest import Workspace, headers, make_app_settings


# -- the hot path follows the hot routes -------------------------------------------------------
def _route(app: FastAPI, method: str, path: str) -> APIRoute:
    """The route FastAPI runs for ``method path`` (included routers' routes as they run)."""
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.path == path and method in route.methods:
            return route
    raise AssertionError(f"no route {method} {path}")


def _declared(app: FastAPI, method: str, path: str) -> dict[str, Any]:
    """What a FastAPI route takes: every dependency (flattened), its parameters and body."""
    route = _route(app, method, path)
    calls: set[Callable[..., Any]] = set()
    params: dict[str, set[str]] = {"query": set(), "header": set(), "cookie": set()}
    bodies: list[Any] = []
    stack: list[Dependant] = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant is not route.dependant:
            assert dependant.call is not None
            calls.add(dependant.call)
        stack += dependant.dependencies
        bodies += [field.field_info.annotation for field in dependant.body_params]
        params["query"] |= {p.alias for p in dependant.query_params}
        params["header"] |= {p.alias for p in dependant.header_params}
        params["cookie"] |= {p.alias for p in dependant.cookie_params}
    operation = app.openapi()["paths"][path][method.lower()]
    path_params = {
        p["name"]: {k: v for k, v in p["schema"].items() if k not in ("type", "title")}
        for p in operation.get("parameters", [])
        if p["in"] == "path"
    }
    return {
        "calls": calls,
        "query": params["query"],
        "header": params["header"] | params["cookie"],
        "body": bodies[0] if bodies else None,
        "path": path_params,
    }


def _implemented(contract: HotRoute) -> dict[str, Any]:
    """The same, as ``serving.api.hot`` declares it checks."""
    guard = ScopeGuard(contract.scope)
    return {
        "calls": {guard, API_KEY_HEADER, strict_query(*contract.query).dependency, *contract.does},
        "query": set(contract.query),
        "header": set(),
        "body": contract.body,
        "path": {
            name: {
                {"min_length": "minLength", "max_length": "maxLength"}.get(k, k): v
                for k, v in constraints.items()
            }
            for name, constraints in contract.path_params.items()
        },
    }


@pytest.mark.parametrize("contract", [hot.DEAL, hot.SCORE], ids=["GET deal", "POST score"])
def test_the_hot_path_checks_exactly_what_the_hot_route_declares(
    contract: HotRoute, tmp_path: Path
) -> None:
    app = create_app(make_app_settings(tmp_path))
    assert _declared(app, contract.method, contract.path) == _implemented(contract)


def test_a_dependency_added_to_a_hot_route_breaks_the_contract(tmp_path: Path) -> None:
    router = APIRouter()

    @router.get("/v1/deals/{deal_id}", dependencies=[strict_query()])
    async def get_deal(
        deal_id: DealId,
        principal: ScoresReadKey,
        snap: SnapshotDep,
        state: StateDep,
        crm_tenant: Annotated[str, Header()],
    ) -> None:
        """A new header the hot path would not check."""

    app = FastAPI()
    app.include_router(router)
    declared = _declared(app, "GET", "/v1/deals/{deal_id}")
    assert declared != _implemented(hot.DEAL)
    assert declared["header"] == {"crm-tenant"}


# -- salesml errors as problems -----------------------------------------------------------------
def test_every_salesml_error_has_a_status_and_a_clear_detail() -> None:
    assert SALESML_ERRORS[SalesmlError][0] == 503
    frequency = salesml_problem(MissingFrequencyError("no weekly model; use month"), "forecast")
    assert (frequency.status, frequency.detail) == (422, "no weekly model; use month")
    assert frequency.errors is not None and frequency.errors[0].field == "query.freq"
    missing = salesml_problem(NoModelError("no salesml-forecast@champion"), "forecast")
    assert (missing.status, missing.detail) == (
        503,
        "forecast unavailable: no salesml-forecast@champion",
    )
    assert salesml_problem(MetricsInputError("x"), "kpis").detail == "KPIs unavailable: x"


def _forecast_raising(error: SalesmlError) -> Callable[..., Any]:
    def forecast(**given: object) -> Any:
        raise error

    return forecast


@pytest.mark.parametrize(
    ("error", "status", "detail"),
    [
        (MissingFrequencyError("no 'week' model; use month"), 422, "no 'week' model; use month"),
        (NoModelError("no salesml-forecast@champion"), 503, "forecast unavailable: no salesml-"),
    ],
)
def test_a_salesml_error_in_a_route_is_answered_as_a_problem(
    workspace: Workspace, client: TestClient, error: SalesmlError, status: int, detail: str
) -> None:
    app = client.app
    app.dependency_overrides[forecaster] = lambda: _forecast_raising(error)  # type: ignore[attr-defined]
    try:
        response = client.get("/v1/forecast", headers=headers(workspace, "forecast"))
    finally:
        app.dependency_overrides.clear()  # type: ignore[attr-defined]
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["detail"].startswith(detail) and "Traceback" not in response.text
    assert problem["instance"] == "/v1/forecast" and problem["request_id"]


def test_the_hot_path_and_the_route_answer_a_salesml_error_alike(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing(*args: object) -> bytes:
        raise MetricsInputError("inputs must have the same length")

    monkeypatch.setattr(hot, "score_answer", failing)
    monkeypatch.setattr(deals, "score_answer", failing)
    deal = workspace.history.deals.query("status == 'open'")["deal_id"].iloc[0]
    answers = []
    for fast in (True, False):
        with TestClient(create_app(make_app_settings(workspace.home, hot_path=fast))) as c:
            response = c.post(
                "/v1/deals/score",
                json={"deals": [{"deal_id": deal}]},
                headers=headers(workspace, "writer"),
            )
        assert response.status_code == 503, response.text
        answers.append({k: v for k, v in response.json().items() if k != "request_id"})
    assert answers[0] == answers[1]
    assert answers[0]["detail"] == "scoring unavailable: inputs must have the same length"


# -- the serving alias and the CLI's options ----------------------------------------------------
def test_the_forecast_is_read_under_the_served_alias(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []

    def current_forecast(alias: str = "champion") -> Any:
        asked.append(alias)
        raise NoModelError(f"no salesml-forecast@{alias}")

    monkeypatch.setattr(forecast_module, "current_forecast", current_forecast)
    settings = make_app_settings(workspace.home, alias="challenger")
    with TestClient(create_app(settings)) as c:
        response = c.get("/v1/forecast", headers=headers(workspace, "forecast"))
    assert asked == ["challenger"]
    assert response.status_code == 503
    assert response.json()["detail"] == "forecast unavailable: no salesml-forecast@challenger"


def test_serve_hands_alias_and_poll_seconds_to_the_app_through_its_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[Any] = []
    monkeypatch.setattr(api_cli, "run_server", served.append)
    monkeypatch.setenv("SALESML_HOME", str(tmp_path))
    cli = typer.Typer()
    api_cli.register(cli)
    result = CliRunner().invoke(
        cli, ["serve", "--alias", "challenger", "--poll-seconds", "7", "--port", "8123"]
    )
    assert result.exit_code == 0, result.output
    (config,) = served
    assert isinstance(config.app, AppFactory) and config.factory
    assert (config.port, config.workers) == (8123, 1)
    app = config.app()
    assert (app.state.settings.alias, app.state.settings.poll_seconds) == ("challenger", 7.0)
    assert app.state.serving.alias == "challenger"
    assert "SALESML_API_ALIAS" not in os.environ and "SALESML_API_POLL_SECONDS" not in os.environ

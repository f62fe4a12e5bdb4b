"""The routes' dependencies, named as types: who is calling (``ScoresReadKey``, …), the serving
state and settings, the ready snapshot (``SnapshotDep``: 503 while loading), the forecast
function, and the strict query check."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Protocol

import pandas as pd
from fastapi import Depends, Request
from fastapi import Path as PathParam

from features.history import History
from salesml.scoring import Scorer
from serving.api.observability import Metrics
from serving.api.problems import ProblemError
from serving.api.security import Principal, require
from serving.api.settings import ApiSettings
from serving.api.state import ServingState, Snapshot
from serving.forecast import forecast_for_api

DEAL_ID_MAX_LENGTH = 256  # the importer's and the events' ceiling (Limits.max_id_chars)
DEAL_ID_CHARACTER = r"[^\x00-\x1f]"
DEAL_ID_PATTERN = rf"^{DEAL_ID_CHARACTER}+$"
DealId = Annotated[
    str, PathParam(min_length=1, max_length=DEAL_ID_MAX_LENGTH, pattern=DEAL_ID_PATTERN)
]
"""A deal or rep id in a path: 1 to 256 characters, no control characters."""

# -- who is calling ----------------------------------------------------------------------------
ScoresReadKey = Annotated[Principal, Depends(require("scores:read"))]
ScoresWriteKey = Annotated[Principal, Depends(require("scores:write"))]
ForecastReadKey = Annotated[Principal, Depends(require("forecast:read"))]


# -- what the app holds ------------------------------------------------------------------------
async def serving_state(request: Request) -> ServingState:
    """The app's serving state (models, data, score runs, caches)."""
    state: ServingState = request.app.state.serving
    return state


async def api_settings(request: Request) -> ApiSettings:
    """The settings the app was created with."""
    settings: ApiSettings = request.app.state.settings
    return settings


async def metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    found: Metrics = request.app.state.metrics
    return found


StateDep = Annotated[ServingState, Depends(serving_state)]
SettingsDep = Annotated[ApiSettings, Depends(api_settings)]
MetricsDep = Annotated[Metrics, Depends(metrics)]


async def ready_snapshot(state: StateDep) -> Snapshot:
    """The current snapshot once models, data and the score run are loaded; 503 before."""
    snap = state.snapshot()
    if not snap.ready:
        raise ProblemError(
            503,
            "the server is still loading its models and score run",
            headers={"Retry-After": "5"},
        )
    return snap


SnapshotDep = Annotated[Snapshot, Depends(ready_snapshot)]


# -- the forecast ------------------------------------------------------------------------------
class Forecaster(Protocol):
    """``serving.forecast.forecast_for_api``'s signature."""

    def __call__(
        self,
        history: History,
        win: Scorer | None,
        freq: str,
        horizon: int,
        as_of: pd.Timestamp,
        by: str | None = None,
        team: str | None = None,
        alias: str = "champion",
    ) -> pd.DataFrame: ...


async def forecaster() -> Forecaster:
    """The forecast rows function (a dependency, so a test can put another in its place)."""
    return forecast_for_api


ForecasterDep = Annotated[Forecaster, Depends(forecaster)]


# -- the query string --------------------------------------------------------------------------
@dataclass(frozen=True)
class StrictQuery:
    """A dependency rejecting query parameters the route does not take."""

    allowed: frozenset[str]

    async def __call__(self, request: Request) -> None:
        for name in request.query_params:
            if name not in self.allowed:
                raise ProblemError(422, "unknown query parameter", field=f"query.{name}")


def strict_query(*allowed: str) -> Any:
    """``dependencies=[strict_query("by")]``: 422 on any other query parameter."""
    return Depends(StrictQuery(frozenset(allowed)))

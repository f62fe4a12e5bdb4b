"""``GET /v1/forecast``: the registered forecast under the served alias plus the live pipeline
(``serving.forecast.forecast_for_api``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from serving.api.deps import ForecasterDep, ForecastReadKey, SettingsDep, SnapshotDep, strict_query
from serving.api.problems import ProblemError
from serving.api.schemas import ForecastResponse
from serving.api.state import jsonable, records

router = APIRouter(tags=["forecast"])


@router.get(
    "/v1/forecast",
    response_model=ForecastResponse,
    summary="Revenue forecast by period (optionally by team, region, product or segment)",
    dependencies=[strict_query("freq", "horizon", "by")],
)
async def get_forecast(
    principal: ForecastReadKey,
    snap: SnapshotDep,
    settings: SettingsDep,
    forecast: ForecasterDep,
    freq: Annotated[Literal["week", "month", "quarter"], Query()] = "month",
    horizon: Annotated[int, Query(ge=1, le=24)] = 3,
    by: Annotated[Literal["team", "region", "product"] | None, Query()] = None,
) -> ForecastResponse:
    """Forecast rows by period; a team-scoped key reads its own team's rows only."""
    assert snap.data is not None
    raw = await run_in_threadpool(
        forecast,
        history=snap.data.history,
        win=snap.models,
        freq=freq,
        horizon=horizon,
        as_of=snap.data.as_of,
        by=by,
        team=principal.team,
        alias=settings.alias,
    )
    rows = records(raw) if isinstance(raw, pd.DataFrame) else [jsonable(r) for r in raw]
    rows = _team_rows(rows, principal.team)
    return ForecastResponse(freq=freq, horizon=horizon, by=by, rows=rows)


def _team_rows(rows: list[dict[str, Any]], team: str | None) -> list[dict[str, Any]]:
    """All rows for a key of every team; a team-scoped key's own team's rows (403 when the
    rows are not broken down by team)."""
    if team is None:
        return rows
    if rows and not all("team" in r for r in rows):
        raise ProblemError(
            403,
            "this forecast is not broken down by team; a team-scoped key cannot read it",
            field="query.by",
        )
    return [r for r in rows if r.get("team") == team]

"""``GET /v1/kpis``: the KPI document of docs/kpis.md, overall or grouped, cached per snapshot."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.concurrency import run_in_threadpool

from salesml.kpis import compute_kpis
from salesml.warehouse import connect
from serving.api.answers import not_found
from serving.api.deps import ScoresReadKey, SnapshotDep, StateDep, strict_query
from serving.api.problems import ProblemError
from serving.api.schemas import KpiResponse
from serving.api.state import ServingState, jsonable

router = APIRouter(tags=["kpis"])

Period = Literal["month", "quarter", "year"]


async def kpis_for(state: ServingState, by: str | None, period: str) -> dict[str, Any]:
    """The KPI document grouped ``by`` over ``period``, computed once per warehouse snapshot."""
    key = (by, period)
    with state.kpi_lock:
        hit = state.kpi_cache.get(key)
    if hit is not None:
        return hit

    def compute() -> dict[str, Any]:
        con = connect(state.warehouse, read_only=True)
        try:
            return compute_kpis(con, by=by, period=period)  # type: ignore[arg-type]
        finally:
            con.close()

    result = jsonable(await run_in_threadpool(compute))
    with state.kpi_lock:
        state.kpi_cache[key] = result
    return dict(result)


@router.get(
    "/v1/kpis",
    response_model=KpiResponse,
    response_model_exclude_unset=True,
    summary="Sales KPIs (docs/kpis.md), overall or grouped",
    dependencies=[strict_query("by", "period")],
)
async def get_kpis(
    principal: ScoresReadKey,
    snap: SnapshotDep,
    state: StateDep,
    by: Annotated[Literal["rep", "team", "region", "product", "segment"] | None, Query()] = None,
    period: Annotated[Period, Query()] = "quarter",
) -> KpiResponse:
    """KPIs overall or grouped; a team-scoped key reads its team's, overall or by rep."""
    if principal.team is None:
        return KpiResponse(**await kpis_for(state, by, period))
    if by not in (None, "team", "rep"):
        raise ProblemError(
            403, "a team-scoped key reads KPIs overall, by team or by rep", field="query.by"
        )
    teams = await kpis_for(state, "team", period)
    mine = [g for g in teams.get("groups", []) if g.get("group") == principal.team]
    if not mine:
        raise not_found("team", principal.team, "query.by")
    result = {**teams, "by": by, "overall": mine[0], "groups": mine if by == "team" else []}
    if by == "rep":
        assert snap.data is not None
        owner_team = snap.data.owner_team
        reps = await kpis_for(state, "rep", period)
        result["groups"] = [
            g
            for g in reps.get("groups", [])
            if owner_team.get(str(g.get("group"))) == principal.team
        ]
    return KpiResponse(**result)

"""``GET /v1/reps/{owner_id}``: a rep's KPIs, open deals at risk and coaching actions."""

from __future__ import annotations

import json
from typing import Annotated

import pandas as pd
from fastapi import APIRouter, Query

from serving.api.answers import not_found
from serving.api.deps import DealId, ScoresReadKey, SnapshotDep, StateDep, strict_query
from serving.api.routes.kpis import Period, kpis_for
from serving.api.schemas import Coaching, KpiBlock, RepDeal, RepResponse
from serving.api.state import RunView, records

router = APIRouter(tags=["kpis"])


@router.get(
    "/v1/reps/{owner_id}",
    response_model=RepResponse,
    summary="A rep's KPIs, open deals at risk and coaching actions",
    dependencies=[strict_query("period")],
)
async def get_rep(
    owner_id: DealId,
    principal: ScoresReadKey,
    snap: SnapshotDep,
    state: StateDep,
    period: Annotated[Period, Query()] = "quarter",
) -> RepResponse:
    """The rep's KPI block, open deals in the latest run, the 5 at most risk and their actions."""
    assert snap.data is not None and snap.run is not None
    team = snap.data.owner_team.get(owner_id)
    rows = snap.run.rows
    mine = rows[rows["owner_id"].astype(str) == owner_id] if "owner_id" in rows else rows[:0]
    if team is None and len(mine) and "team" in mine:
        team = str(mine["team"].iloc[0])
    if (team is None and not len(mine)) or not principal.sees_team(team):
        raise not_found("rep", owner_id, "path.owner_id")
    kpis = await kpis_for(state, "rep", period)
    block = next((g for g in kpis.get("groups", []) if str(g.get("group")) == owner_id), None)
    scored = bool(len(mine)) and "win_probability" in mine
    at_risk = _at_risk(mine, snap.run) if scored else []
    return RepResponse(
        owner_id=owner_id,
        team=team,
        kpis=KpiBlock(**block) if block is not None else None,
        open_deals=len(mine),
        mean_win_probability=float(mine["win_probability"].mean()) if scored else None,
        at_risk=at_risk,
        coaching=[
            Coaching(deal_id=deal.deal_id, action=action)
            for deal in at_risk
            for action in deal.actions or []
        ],
    )


def _at_risk(mine: pd.DataFrame, run: RunView, top: int = 5) -> list[RepDeal]:
    """The ``top`` deals of ``mine`` least likely to be won, as answer rows (drivers and
    actions decoded from the run's JSON text by ``ScoreRow``)."""
    out = []
    for record in records(mine.nsmallest(top, "win_probability")):
        record.pop("input_hash", None)
        for column in run.info.json_columns:
            if isinstance(record.get(column), str):
                record[column] = json.loads(record[column])
        out.append(RepDeal(**record))
    return out

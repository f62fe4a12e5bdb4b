"""Scores: ``POST /v1/deals/score`` and ``GET /v1/deals/{deal_id}``.

Well-formed requests to both are answered at the edge (``serving.api.hot``) with the same answer
code (``serving.api.answers``); these routes are the contract and answer everything else.
tests/serving/test_routes.py keeps their dependencies and the hot path's checks equal.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from serving.api.answers import deal_document, not_found, score_answer
from serving.api.deps import (
    DealId,
    ScoresReadKey,
    ScoresWriteKey,
    SettingsDep,
    SnapshotDep,
    StateDep,
    strict_query,
)
from serving.api.problems import PROBLEM_RESPONSES, TITLES
from serving.api.schemas import DealResponse, ScoreRequest, ScoreResponse

router = APIRouter(tags=["scores"])


@router.post(
    "/v1/deals/score",
    response_model=ScoreResponse,
    summary="Score deals now: known deals, what-ifs on known deals, or new deals",
    dependencies=[strict_query()],
    responses={409: PROBLEM_RESPONSES[422] | {"description": TITLES[409]}},
)
async def score_deals(
    body: ScoreRequest,
    principal: ScoresWriteKey,
    snap: SnapshotDep,
    state: StateDep,
    settings: SettingsDep,
) -> Response:
    """Scores of known deals, what-ifs on them and new deals, in the order asked."""
    content = await score_answer(body, principal, snap, state, settings.max_batch)
    return Response(content, media_type="application/json")


@router.get(
    "/v1/deals/{deal_id}",
    response_model=DealResponse,
    summary="A deal's score from the latest run, its history across runs, and what changed; "
    "a won or lost deal's status and closed_at (closed deals are not scored)",
    dependencies=[strict_query()],
)
async def get_deal(
    deal_id: DealId, principal: ScoresReadKey, snap: SnapshotDep, request: Request
) -> Response:
    """The deal's row in the latest score run, its history and what changed since the last.
    A won or lost deal (closed by an event or in the data) answers its status and closed_at,
    with no score (``win_probability`` null, ``note`` "closed deals are not scored")."""
    assert snap.run is not None
    live = getattr(request.app.state, "events", None)
    hit = deal_document(snap.run, deal_id, snap.data, live.pending_row if live else None)
    if hit is None or not principal.sees_team(hit[0]):
        raise not_found("deal", deal_id, "path.deal_id")
    # The answer is computed once per score run and kept encoded (the run is immutable).
    return Response(hit[1], media_type="application/json")

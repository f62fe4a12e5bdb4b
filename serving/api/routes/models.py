"""``GET /v1/models``: registered model versions, their holdout metrics and model cards."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool

from serving.api import models as registry
from serving.api.deps import ScoresReadKey, StateDep, strict_query
from serving.api.schemas import ModelsResponse, ModelVersion

log = logging.getLogger("salesml.api")
router = APIRouter(tags=["models"])


@router.get(
    "/v1/models",
    response_model=ModelsResponse,
    summary="Registered model versions, their holdout metrics and model cards",
    dependencies=[strict_query()],
)
async def get_models(principal: ScoresReadKey, state: StateDep) -> ModelsResponse:
    """The registered versions (listed once, then kept) and the version being served."""
    snap = state.snapshot()
    if not state.versions:
        try:
            state.versions = await run_in_threadpool(registry.list_versions)
        except Exception:
            log.warning("registry unreachable while listing models")
    return ModelsResponse(
        name=registry.MODEL_NAME,
        serving_alias=state.alias,
        serving_version=snap.model_version,
        versions=[ModelVersion(**v) for v in state.versions],
    )

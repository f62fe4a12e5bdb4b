"""Operations: ``/healthz`` (alive), ``/readyz`` (loaded, events applied at speed) and
``/metrics`` (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.api.deps import MetricsDep, StateDep
from serving.api.schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Alive")
async def healthz() -> Health:
    """Alive: the process answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Ready: models and the latest score run are loaded, events applied at speed "
    "(503 until then)",
    responses={503: {"model": Readiness, "description": "Still loading"}},
)
async def readyz(state: StateDep, request: Request) -> JSONResponse:
    """200 once the model, the history and the latest score run are loaded and the events'
    live feature context is built (bounded: docs/events.md); 503 until then."""
    snap = state.snapshot()
    parts = (("model", snap.models), ("data", snap.data), ("score run", snap.run))
    missing = [name for name, value in parts if value is None]
    detail = f"not loaded yet: {', '.join(missing)}" if missing else None
    if detail is None and request.app.state.events.warming:
        detail = "not loaded yet: the live feature context for events"
    body = Readiness(
        ready=detail is None,
        model_version=snap.model_version,
        run_id=snap.run.info.run_id if snap.run else None,
        detail=detail,
    )
    return JSONResponse(body.model_dump(), status_code=200 if detail is None else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus(state: StateDep, metrics: MetricsDep) -> Response:
    """The API's Prometheus metrics (requests, latency, model version, run age, readiness)."""
    metrics.update(state)
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

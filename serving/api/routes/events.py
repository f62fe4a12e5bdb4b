"""CRM events: ``POST /v1/events`` (and ``GET /v1/events/{event_id}``), docs/events.md.

The answer comes after the accepted events are in the journal on disk; their deals are
rescored on the applier thread right after (``serving.api.live``).
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from serving.api.deps import DealId, SnapshotDep, strict_query
from serving.api.live import EventResult, LiveEvents
from serving.api.problems import PROBLEM_RESPONSES, FieldError, ProblemError, problem_response
from serving.api.routes.events_outbound import outbound_answer
from serving.api.security import Principal, require
from serving.events.shapes import (
    BodyError,
    Reading,
    future_events,
    known_owners,
    known_stages,
    read_json,
    read_salesforce_outbound,
    unknown_owners,
    unknown_stages,
    workspace_mapping,
)

log = logging.getLogger("salesml.events")
router = APIRouter(tags=["events"])
EventsWriteKey = Annotated[Principal, Depends(require("events:write"))]
Source = Literal["canonical", "hubspot", "salesforce-cdc", "salesforce-outbound"]
XML_TYPES = ("text/xml", "application/xml", "application/soap+xml")


class EventOutcome(BaseModel):
    """What became of one event."""

    index: int = Field(description="Position of the event (or notification) in the body.")
    event_id: str | None = Field(description="The event's id (as derived for CRM payloads).")
    status: Literal["accepted", "duplicate", "conflict", "rejected", "ignored"] = Field(
        description="duplicate: this id was stored with the same body (a retry); conflict: "
        "this id was stored with another body, this one was not stored (field and reason say "
        "what differs)."
    )
    seq: int | None = Field(default=None, description="Journal position of an accepted event.")
    field: str | None = Field(default=None, description="The offending field of a rejection.")
    reason: str | None = None
    deal_id: str | None = Field(default=None, description="The deal whose score it moves.")
    warning: str | None = Field(
        default=None,
        description="Stored, but to check: a stage the model never saw (its score cannot "
        "read it), or a time ahead of the server's clock.",
    )


class EventsResponse(BaseModel):
    """Per-event outcomes: 202 when none was rejected or in conflict, 207 when some were."""

    source: Source
    accepted: int
    duplicate: int
    conflict: int
    rejected: int
    ignored: int
    results: list[EventOutcome]


class EventStatus(BaseModel):
    """A journaled event and how far it has got."""

    event_id: str
    seq: int
    type: str
    source: str
    occurred_at: str
    scored: bool = Field(description="Its deal's new score is served.")
    folded: bool = Field(description="Its rows are in the warehouse.")


async def live_events(request: Request) -> LiveEvents:
    events: LiveEvents = request.app.state.events
    return events


LiveDep = Annotated[LiveEvents, Depends(live_events)]


def _reading(body: bytes, content_type: str, source: str | None, home: Path) -> Reading:
    media = content_type.split(";", maxsplit=1)[0].strip().lower()
    if media in XML_TYPES or source == "salesforce-outbound":
        return read_salesforce_outbound(body)
    if media not in ("application/json", "") and not media.endswith("+json"):
        raise ProblemError(
            415,
            f"send JSON (application/json) or a Salesforce outbound message (text/xml), "
            f"not {media}",
            field="header.content-type",
        )
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "infinity" not in str(exc):
            raise ProblemError(422, f"the body is not JSON: {exc}", field="body") from None
        parsed = _with_overflowing_numbers(body)
    return read_json(parsed, source, workspace_mapping(home))


def _finite_or_text(text: str) -> float | str:
    number = float(text)
    return number if math.isfinite(number) else text


def _with_overflowing_numbers(body: bytes) -> Any:
    """A JSON body holding a number too large for a double (``1e400``): read with each such
    number kept as its text, so the event's own check rejects it on its field (``deal.amount
    1e400 is not a finite number``) instead of the whole body failing to parse."""
    try:
        return json.loads(body, parse_float=_finite_or_text, parse_constant=lambda text: text)
    except (ValueError, RecursionError) as exc:
        raise ProblemError(422, f"the body is not JSON: {exc}", field="body") from None


@router.post(
    "/v1/events",
    response_model=EventsResponse,
    status_code=202,
    summary="CRM events in: canonical, HubSpot webhooks, Salesforce change events and "
    "outbound messages; durable before the answer",
    dependencies=[strict_query("source")],
    responses={
        207: {"model": EventsResponse, "description": "Some events were rejected"},
        500: {
            "description": "A Salesforce outbound message with a rejected notification: a "
            "SOAP fault naming each one (Salesforce retries it; docs/events.md)",
            "content": {"text/xml": {}},
        },
        413: PROBLEM_RESPONSES[422],
    },
)
async def post_events(
    request: Request,
    principal: EventsWriteKey,
    live: LiveDep,
    snap: SnapshotDep,
    source: Annotated[
        Source | None, Query(description="The body's shape (default: detected).")
    ] = None,
) -> Response:
    """Check each event like an import row, journal the good ones (idempotent by event id)
    and rescore their deals; one outcome per event."""
    body = await request.body()
    try:
        reading = _reading(body, request.headers.get("content-type", ""), source, live.home)
    except BodyError as exc:
        raise ProblemError(exc.status, exc.reason, field=exc.field) from None
    results = await run_in_threadpool(live.ingest, reading, principal.team)
    history = snap.data.history if snap.data is not None else None
    now = datetime.now(UTC).replace(tzinfo=None)
    warnings: dict[int, str] = {}
    for each in (
        unknown_stages(reading, known_stages(history) if history is not None else frozenset()),
        unknown_owners(reading, known_owners(history)) if history is not None else {},
        future_events(reading, now),
    ):
        for n, text in each.items():
            warnings[n] = f"{warnings[n]}; {text}" if n in warnings else text
    if reading.source == "salesforce-outbound":
        if warnings:
            log.warning("events stored with a warning: %s", sorted(warnings.values()))
        return await outbound_answer(results, live.home)
    return _answer(request, reading.source, results, warnings)


def _answer(
    request: Request, source: str, results: list[EventResult], warnings: dict[int, str]
) -> Response:
    counts = {
        s: sum(r.status == s for r in results)
        for s in ("accepted", "duplicate", "conflict", "rejected", "ignored")
    }
    rejected = [r for r in results if r.status == "rejected"]
    if rejected and len(rejected) == len(results):
        errors = [
            FieldError(
                field=f"events[{r.index}].{r.field or 'event'}", message=r.reason or "rejected"
            )
            for r in rejected
        ]
        return problem_response(
            request,
            422,
            f"all {len(rejected)} events were rejected; nothing was stored",
            errors=errors,
        )
    unstored = rejected or counts["conflict"]
    payload: dict[str, Any] = {
        "source": source,
        **counts,
        "results": [
            r.to_json()
            | ({"warning": warnings[n]} if n in warnings and r.status == "accepted" else {})
            for n, r in enumerate(results)
        ],
    }
    if warnings:
        log.warning("events stored with a warning: %s", sorted(warnings.values()))
    return JSONResponse(
        EventsResponse(**payload).model_dump(mode="json", exclude_none=True),
        status_code=207 if unstored else 202,
    )


@router.get(
    "/v1/events/{event_id}",
    response_model=EventStatus,
    summary="A journaled event: scored yet, in the warehouse yet",
    dependencies=[strict_query()],
)
async def get_event(event_id: DealId, principal: EventsWriteKey, live: LiveDep) -> EventStatus:
    """Where an accepted event has got to."""
    del principal
    entry = await run_in_threadpool(live.journal.entry, event_id)
    if entry is None:
        raise ProblemError(404, f"no event {event_id!r}", field="path.event_id")
    return EventStatus(
        event_id=entry.event_id,
        seq=entry.seq,
        type=entry.type,
        source=entry.source,
        occurred_at=entry.occurred_at,
        scored=live.is_scored(entry.seq),
        folded=entry.folded,
    )

"""The FastAPI app: routes under /v1, health, readiness and metrics, and the edge middleware
(request id, body limit, JSON access log, Prometheus counters, no stack trace ever out)."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import pandas as pd
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from salesml.errors import SalesmlError
from salesml.settings import Settings
from serving.api import problems
from serving.api.problems import PROBLEM_RESPONSES, ProblemError
from serving.api.schemas import (
    DealResponse,
    ForecastResponse,
    Health,
    KnownDeal,
    KpiResponse,
    ModelsResponse,
    ModelVersion,
    Readiness,
    RepDeal,
    RepResponse,
    RunPoint,
    ScoreChange,
    ScoreRequest,
    ScoreResponse,
    ScoreRow,
)
from serving.api.security import Principal, RateLimiter, require
from serving.api.settings import ApiSettings
from serving.api.state import (
    MEMO_MAX_ROWS,
    ServingState,
    Snapshot,
    dumps,
    encode_score_row,
    jsonable,
    records,
)
from serving.api.whatif import NEW_PREFIX, Change, effective_team, plain_rows, whatif_rows
from serving.keys import KeyStore

log = logging.getLogger("salesml.api")
access = logging.getLogger("salesml.api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DealId = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]


# -- logging ---------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line; exceptions as their type only (no stack traces)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = record.exc_info[0].__name__
        return json.dumps(doc, default=str)


def configure_logging() -> None:
    root = logging.getLogger("salesml")
    if any(getattr(h, "_salesml_json", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._salesml_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    root.propagate = False


# -- metrics ---------------------------------------------------------------------------------
class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "salesml_api_requests",
            "Requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "salesml_api_request_seconds",
            "Request latency by route.",
            ["route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.model = Gauge(
            "salesml_api_model_version",
            "1 for the model version being served.",
            ["version"],
            registry=self.registry,
        )
        self.run_age = Gauge(
            "salesml_api_score_run_age_seconds",
            "Age of the served score run.",
            registry=self.registry,
        )
        self.ready = Gauge("salesml_api_ready", "1 when ready.", registry=self.registry)
        self.registry_errors = Gauge(
            "salesml_api_registry_errors",
            "Failed registry checks since start.",
            registry=self.registry,
        )

    def update(self, state: ServingState) -> None:
        snap = state.snapshot()
        self.model.clear()
        if snap.model_version is not None:
            self.model.labels(version=snap.model_version).set(1)
        if snap.run is not None:
            created = pd.Timestamp(snap.run.info.created_at)
            self.run_age.set((pd.Timestamp.now(tz="UTC") - created).total_seconds())
        self.ready.set(1 if snap.ready else 0)
        self.registry_errors.set(state.registry_errors)


# -- the edge --------------------------------------------------------------------------------
class _TooLargeError(Exception):
    pass


class Edge:
    """Request id, body size limit, access log and metrics; turns any crash into a 500 problem."""

    def __init__(self, app: ASGIApp, settings: ApiSettings, metrics: Metrics) -> None:
        self.app, self.settings, self.metrics = app, settings, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = (
            incoming
            if self.settings.trust_request_id and _REQUEST_ID.match(incoming)
            else uuid.uuid4().hex[:16]
        )
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = {"code": 500, "started": False}
        limit = self.settings.max_body_bytes

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLargeError
            return message

        error: str | None = None
        try:
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                raise _TooLargeError
            await self.app(scope, counted, send_with_id)
        except _TooLargeError:
            if not status["started"]:
                await self._problem(
                    scope, send_with_id, 413, f"request body over {limit} bytes", rid
                )
        except Exception as exc:
            error = type(exc).__name__
            if not status["started"]:
                await self._problem(
                    scope,
                    send_with_id,
                    500,
                    "internal error; quote the request id to support",
                    rid,
                )
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            code = int(status["code"])
            self.metrics.requests.labels(template, scope.get("method", ""), str(code)).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            fields = {
                "event": "request",
                "request_id": rid,
                "method": scope.get("method"),
                "route": template,
                "path": scope.get("path"),
                "status": code,
                "duration_ms": round(elapsed * 1000, 2),
                "key_id": state.get("key_id"),
            }
            if error is not None:
                fields["error"] = error
            access.info("request", extra={"fields": fields})

    @staticmethod
    async def _problem(scope: Scope, send: Send, code: int, detail: str, rid: str) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": problems.TITLES[code],
                "status": code,
                "detail": detail,
                "instance": scope.get("path"),
                "request_id": rid,
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": code,
                "headers": [
                    (b"content-type", problems.PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


# -- helpers ---------------------------------------------------------------------------------
def strict_query(*allowed: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency rejecting query parameters the route does not take."""

    async def check(request: Request) -> None:
        for name in request.query_params:
            if name not in allowed:
                raise ProblemError(422, "unknown query parameter", field=f"query.{name}")

    return check


def _ready(request: Request) -> Snapshot:
    state: ServingState = request.app.state.serving
    snap = state.snapshot()
    if not snap.ready:
        raise ProblemError(
            503,
            "the server is still loading its models and score run",
            headers={"Retry-After": "5"},
        )
    return snap


def _not_found(what: str, value: str, where: str) -> ProblemError:
    return ProblemError(404, f"no {what} {value!r}", field=where)


@functools.cache
def _driver_attribution() -> Callable[..., Any] | None:
    """HOOK (salesml.explain): a driver-level "why did my score change" attribution.

    When ``salesml.explain`` provides ``score_change(previous_row, current_row)`` returning a
    list of ``{"feature", "concept", "contribution", ...}`` dicts, it is called here and its
    answer fills ``change.drivers``; until then ``drivers`` is null and the summary is the
    probability diff between runs.
    """
    try:
        module = importlib.import_module("salesml.explain")
    except ImportError:
        return None
    fn = getattr(module, "score_change", None)
    return fn if callable(fn) else None


def score_change(points: list[dict[str, Any]], deal_id: str) -> ScoreChange | None:
    """What changed between the last two runs that scored the deal."""
    if len(points) < 2:
        return None
    prev, cur = points[-2], points[-1]
    p0, p1 = prev.get("win_probability"), cur.get("win_probability")
    s0, s1 = prev.get("score"), cur.get("score")
    dp = None if p0 is None or p1 is None else float(p1) - float(p0)
    ds = None if s0 is None or s1 is None else int(s1) - int(s0)
    model_changed = prev.get("model_version") != cur.get("model_version")
    as_of_changed = prev.get("as_of") != cur.get("as_of")
    if dp is None:
        summary = "no comparable win probability"
    elif abs(dp) < 5e-4:
        summary = f"win probability unchanged ({100 * float(p1):.0f}%)"  # type: ignore[arg-type]
    else:
        direction = "up" if dp > 0 else "down"
        summary = (
            f"win probability {direction} {100 * abs(dp):.1f} points "
            f"({100 * float(p0):.0f}% to {100 * float(p1):.0f}%)"  # type: ignore[arg-type]
        )
    if model_changed:
        summary += f"; model version {prev.get('model_version')} to {cur.get('model_version')}"
    if as_of_changed:
        summary += "; new data since the previous run"
    drivers = None
    hook = _driver_attribution()
    if hook is not None:
        try:
            drivers = hook(prev, cur)
        except Exception:  # an attribution failure must not fail the read
            log.warning("driver attribution failed for a deal")
    return ScoreChange(
        previous_run_id=str(prev["run_id"]),
        current_run_id=str(cur["run_id"]),
        win_probability_change=dp,
        score_change=ds,
        model_changed=bool(model_changed),
        as_of_changed=bool(as_of_changed),
        summary=summary,
        drivers=drivers,
    )


def _forecast_function() -> Callable[..., Any] | None:
    """``serving.forecast.forecast_for_api`` (imported lazily: Prophet loads on first use)."""
    try:
        module = importlib.import_module("serving.forecast")
    except ImportError:
        return None
    fn = getattr(module, "forecast_for_api", None)
    return fn if callable(fn) else None


# -- the app ---------------------------------------------------------------------------------
def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The scoring API for the workspace in ``settings.home`` (default: SALESML_HOME)."""
    settings = settings or ApiSettings()
    home = settings.home or Settings().home
    configure_logging()
    metrics = Metrics()
    state = ServingState(home, settings.alias, settings.history_runs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.load_in_background:
            state.start(settings.poll_seconds, load_now=False)
        else:
            await run_in_threadpool(state.start, settings.poll_seconds, True)
        try:
            yield
        finally:
            await run_in_threadpool(state.stop)

    app = FastAPI(
        title="salesml scoring API",
        version="1",
        description="Win scores, drivers and actions for CRM deals; forecasts and KPIs. "
        "Authenticate with an `X-API-Key` header (see docs/api.md). Errors are RFC 9457 "
        "problem+json.",
        lifespan=lifespan,
        responses=PROBLEM_RESPONSES,
    )
    app.state.serving = state
    app.state.settings = settings
    app.state.keys = KeyStore.for_home(home)
    app.state.limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
    app.state.metrics = metrics
    problems.install(app)
    app.add_middleware(Edge, settings=settings, metrics=metrics)

    # -- scores ------------------------------------------------------------------------------
    @app.post(
        "/v1/deals/score",
        response_model=ScoreResponse,
        tags=["scores"],
        summary="Score deals now: known deals, what-ifs on known deals, or new deals",
        dependencies=[Depends(strict_query())],
    )
    async def score_deals(
        body: ScoreRequest,
        request: Request,
        principal: Annotated[Principal, Depends(require("scores:write"))],
    ) -> Response:
        snap = _ready(request)
        assert snap.data is not None
        data = snap.data
        if len(body.deals) > settings.max_batch:
            raise ProblemError(
                422, f"at most {settings.max_batch} deals per request", field="body.deals"
            )
        plain: list[str] = []
        changes: list[Change] = []
        order: list[tuple[str, int]] = []
        seen: set[str] = set()
        for i, item in enumerate(body.deals):
            where = f"body.deals[{i}]"
            if isinstance(item, KnownDeal):
                deal_id = item.deal_id
                if not data.knows(deal_id) or not principal.sees_team(data.team_of(deal_id)):
                    raise _not_found("deal", deal_id, f"{where}.deal_id")
                if deal_id in seen:
                    raise ProblemError(422, "the same deal twice", field=f"{where}.deal_id")
                seen.add(deal_id)
                if deal_id not in data.features.index:
                    raise ProblemError(
                        422,
                        f"deal {deal_id!r} is {data.status_of(deal_id)}; only open deals are "
                        "scored",
                        field=f"{where}.deal_id",
                    )
                overrides = item.overrides
                if overrides is not None and any(
                    v not in (None, {}) for v in overrides.model_dump().values()
                ):
                    change = Change(deal_id, deal_id, where, overrides=overrides)
                    team = effective_team(data, change)
                    if not principal.sees_team(team):
                        raise ProblemError(
                            403,
                            "this key cannot move a deal to another team",
                            field=f"{where}.overrides.team",
                        )
                    order.append(("whatif", len(changes)))
                    changes.append(change)
                else:
                    order.append(("plain", len(plain)))
                    plain.append(deal_id)
            else:
                deal = item.deal
                client_id = deal.deal_id or f"new-{i + 1}"
                change = Change(f"{NEW_PREFIX}{i}", client_id, where, new=deal)
                team = effective_team(data, change)
                if principal.team is not None:
                    if team is None:
                        deal = deal.model_copy(update={"team": principal.team})
                        change = Change(change.key, client_id, where, new=deal)
                    elif team != principal.team:
                        raise ProblemError(
                            403,
                            "this key scores deals of its own team only",
                            field=f"{where}.deal.team",
                        )
                order.append(("whatif", len(changes)))
                changes.append(change)
        models = snap.models
        memo = snap.memo if snap.memo is not None and snap.memo.fits(models, data) else None
        plain_out: dict[str, bytes] = {}
        if memo is not None:
            for deal_id in plain:
                hit = memo.get(deal_id)
                if hit is not None:
                    plain_out[deal_id] = hit
        misses = [d for d in plain if d not in plain_out]
        futures = []
        if misses:
            futures.append(
                state.scorer.submit(plain_rows(data, misses), models, data.as_of, batchable=True)
            )
        if changes:
            rows = await run_in_threadpool(whatif_rows, data, changes)
            futures.append(state.scorer.submit(rows, models, data.as_of, batchable=False))
        results = await asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        for deal_id, record in zip(misses, records(results[0]) if misses else [], strict=True):
            encoded = encode_score_row(record)
            plain_out[deal_id] = encoded
            if memo is not None:
                memo.put(deal_id, encoded)
        whatif_out = records(results[-1]) if changes else []
        scores = []
        for kind, n in order:
            if kind == "plain":
                scores.append(plain_out[plain[n]])
            else:
                row = dict(whatif_out[n])
                row["deal_id"] = changes[n].client_id
                scores.append(encode_score_row(row))
        # Pre-encoded JSON (rows validated by ScoreRow on encoding): exactly what
        # ScoreResponse would render, without validating and encoding the rows again.
        content = b"".join(
            (
                b'{"model_version":',
                dumps(str(snap.model_version)).encode(),
                b',"as_of":',
                dumps(data.as_of.isoformat()).encode(),
                b',"scores":[',
                b",".join(scores),
                b"]}",
            )
        )
        return Response(content, media_type="application/json")

    @app.get(
        "/v1/deals/{deal_id}",
        response_model=DealResponse,
        tags=["scores"],
        summary="A deal's score from the latest run, its history across runs, and what changed",
        dependencies=[Depends(strict_query())],
    )
    async def get_deal(
        deal_id: DealId,
        request: Request,
        principal: Annotated[Principal, Depends(require("scores:read"))],
    ) -> Response:
        snap = _ready(request)
        run = snap.run
        assert run is not None
        hit = run.answers.get(deal_id)
        if hit is None:
            row = run.row(deal_id)
            if row is None:
                raise _not_found("deal", deal_id, "path.deal_id")
            points = run.history(deal_id)
            answer = DealResponse(
                run_id=run.info.run_id,
                score=ScoreRow(**row),
                history=[RunPoint(**p) for p in points],
                change=score_change(points, deal_id),
            )
            hit = (row.get("team"), dumps(answer.model_dump(mode="json")).encode())
            if len(run.answers) < MEMO_MAX_ROWS:
                run.answers[deal_id] = hit
        team, encoded = hit
        if not principal.sees_team(team):
            raise _not_found("deal", deal_id, "path.deal_id")
        # The answer is computed once per score run and kept encoded (the run is immutable).
        return Response(encoded, media_type="application/json")

    # -- forecast and KPIs -------------------------------------------------------------------
    @app.get(
        "/v1/forecast",
        response_model=ForecastResponse,
        tags=["forecast"],
        summary="Revenue forecast by period (optionally by team, region, product or segment)",
        dependencies=[Depends(strict_query("freq", "horizon", "by"))],
    )
    async def get_forecast(
        request: Request,
        principal: Annotated[Principal, Depends(require("forecast:read"))],
        freq: Annotated[Literal["week", "month", "quarter"], Query()] = "month",
        horizon: Annotated[int, Query(ge=1, le=24)] = 3,
        by: Annotated[Literal["team", "region", "product"] | None, Query()] = None,
    ) -> ForecastResponse:
        fn = _forecast_function()
        if fn is None:
            raise ProblemError(503, "no forecast model yet", headers={"Retry-After": "3600"})
        snap = _ready(request)
        assert snap.data is not None
        known: dict[str, Any] = {
            "freq": freq,
            "horizon": horizon,
            "by": by,
            "history": snap.data.history,
            "as_of": snap.data.as_of,
            "win": snap.models,
            "models": snap.models,
            "home": home,
            "team": principal.team,
        }
        params = inspect.signature(fn).parameters
        kwargs = {name: known[name] for name in params if name in known}
        lacking = [
            name
            for name, p in params.items()
            if name not in known
            and p.default is inspect.Parameter.empty
            and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if lacking:
            # ADAPTER: wire the forecast bundle here once it is loadable from the registry.
            raise ProblemError(
                503,
                f"no forecast model yet (the server cannot supply {', '.join(lacking)})",
                headers={"Retry-After": "3600"},
            )
        try:
            raw = await run_in_threadpool(fn, **kwargs)
        except SalesmlError as exc:
            raise ProblemError(503, f"forecast unavailable: {exc}") from None
        rows = records(raw) if isinstance(raw, pd.DataFrame) else [jsonable(r) for r in raw]
        if principal.team is not None:
            if rows and not all("team" in r for r in rows):
                raise ProblemError(
                    403,
                    "this forecast is not broken down by team; a team-scoped key cannot read it",
                    field="query.by",
                )
            rows = [r for r in rows if r.get("team") == principal.team]
        return ForecastResponse(freq=freq, horizon=horizon, by=by, rows=rows)

    async def kpis_for(by: str | None, period: str) -> dict[str, Any]:
        key = (by, period)
        with state.kpi_lock:
            hit = state.kpi_cache.get(key)
        if hit is not None:
            return hit

        def compute() -> dict[str, Any]:
            from salesml.kpis import compute_kpis
            from salesml.warehouse import connect

            con = connect(state.warehouse, read_only=True)
            try:
                return compute_kpis(con, by=by, period=period)  # type: ignore[arg-type]
            finally:
                con.close()

        try:
            result = jsonable(await run_in_threadpool(compute))
        except SalesmlError as exc:
            raise ProblemError(503, f"KPIs unavailable: {exc}") from None
        with state.kpi_lock:
            state.kpi_cache[key] = result
        return dict(result)

    @app.get(
        "/v1/kpis",
        response_model=KpiResponse,
        tags=["kpis"],
        summary="Sales KPIs (docs/kpis.md), overall or grouped",
        dependencies=[Depends(strict_query("by", "period"))],
    )
    async def get_kpis(
        request: Request,
        principal: Annotated[Principal, Depends(require("scores:read"))],
        by: Annotated[
            Literal["rep", "team", "region", "product", "segment"] | None, Query()
        ] = None,
        period: Annotated[Literal["month", "quarter", "year"], Query()] = "quarter",
    ) -> KpiResponse:
        snap = _ready(request)
        if principal.team is None:
            return KpiResponse(**await kpis_for(by, period))
        if by not in (None, "team", "rep"):
            raise ProblemError(
                403, "a team-scoped key reads KPIs overall, by team or by rep", field="query.by"
            )
        teams = await kpis_for("team", period)
        mine = [g for g in teams.get("groups", []) if g.get("group") == principal.team]
        if not mine:
            raise _not_found("team", principal.team, "query.by")
        result = {**teams, "by": by, "overall": mine[0], "groups": mine if by == "team" else []}
        if by == "rep":
            assert snap.data is not None
            reps = await kpis_for("rep", period)
            owner_team = snap.data.owner_team
            result["groups"] = [
                g
                for g in reps.get("groups", [])
                if owner_team.get(str(g.get("group"))) == principal.team
            ]
        return KpiResponse(**result)

    @app.get(
        "/v1/reps/{owner_id}",
        response_model=RepResponse,
        tags=["kpis"],
        summary="A rep's KPIs, open deals at risk and coaching actions",
        dependencies=[Depends(strict_query("period"))],
    )
    async def get_rep(
        owner_id: DealId,
        request: Request,
        principal: Annotated[Principal, Depends(require("scores:read"))],
        period: Annotated[Literal["month", "quarter", "year"], Query()] = "quarter",
    ) -> RepResponse:
        snap = _ready(request)
        assert snap.data is not None and snap.run is not None
        team = snap.data.owner_team.get(owner_id)
        rows = snap.run.rows
        mine = rows[rows["owner_id"].astype(str) == owner_id] if "owner_id" in rows else rows[:0]
        if team is None and len(mine) and "team" in mine:
            team = str(mine["team"].iloc[0])
        if (team is None and not len(mine)) or not principal.sees_team(team):
            raise _not_found("rep", owner_id, "path.owner_id")
        kpis = await kpis_for("rep", period)
        block = next((g for g in kpis.get("groups", []) if str(g.get("group")) == owner_id), None)
        at_risk: list[dict[str, Any]] = []
        mean = None
        coaching: list[dict[str, Any]] = []
        if len(mine) and "win_probability" in mine:
            mean = float(mine["win_probability"].mean())
            risky = mine.nsmallest(5, "win_probability")
            for record in records(risky):
                record.pop("input_hash", None)
                for column in snap.run.info.json_columns:
                    if isinstance(record.get(column), str):
                        record[column] = json.loads(record[column])
                at_risk.append(record)
                for action in record.get("actions") or []:
                    coaching.append({"deal_id": record["deal_id"], "action": action})
        return RepResponse(
            owner_id=owner_id,
            team=team,
            kpis=block,
            open_deals=len(mine),
            mean_win_probability=mean,
            at_risk=[RepDeal(**r) for r in at_risk],
            coaching=coaching,
        )

    @app.get(
        "/v1/models",
        response_model=ModelsResponse,
        tags=["models"],
        summary="Registered model versions, their holdout metrics and model cards",
        dependencies=[Depends(strict_query())],
    )
    async def get_models(
        request: Request, principal: Annotated[Principal, Depends(require("scores:read"))]
    ) -> ModelsResponse:
        from serving.api import models as registry

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

    # -- operations --------------------------------------------------------------------------
    @app.get("/healthz", response_model=Health, tags=["operations"], summary="Alive")
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz",
        response_model=Readiness,
        tags=["operations"],
        summary="Ready: models and the latest score run are loaded (503 until then)",
        responses={503: {"model": Readiness, "description": "Still loading"}},
    )
    async def readyz() -> JSONResponse:
        snap = state.snapshot()
        parts = (("model", snap.models), ("data", snap.data), ("score run", snap.run))
        missing = [name for name, value in parts if value is None]
        body = Readiness(
            ready=snap.ready,
            model_version=snap.model_version,
            run_id=snap.run.info.run_id if snap.run else None,
            detail=None if snap.ready else f"not loaded yet: {', '.join(missing)}",
        )
        return JSONResponse(body.model_dump(), status_code=200 if snap.ready else 503)

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        metrics.update(state)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def app_factory() -> FastAPI:
    """For ``uvicorn --factory serving.api.app:app_factory`` (settings from the environment)."""
    return create_app()

"""The FastAPI app: routes under /v1, health, readiness and metrics, and the edge middleware
(request id, body limit, JSON access log, Prometheus counters, no stack trace ever out)."""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import orjson
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
from salesml.models.revenue.bundle import MissingFrequencyError
from salesml.settings import Settings
from serving.api import problems
from serving.api.answers import deal_answer, not_found, score_answer, score_change, warm
from serving.api.hot import HotPath, route_of
from serving.api.problems import PROBLEM_RESPONSES, ProblemError
from serving.api.schemas import (
    DealResponse,
    ForecastResponse,
    Health,
    KpiResponse,
    ModelsResponse,
    ModelVersion,
    Readiness,
    RepDeal,
    RepResponse,
    ScoreRequest,
    ScoreResponse,
)
from serving.api.security import Principal, RateLimiter, require
from serving.api.settings import ApiSettings
from serving.api.state import ServingState, Snapshot, jsonable, records
from serving.keys import KeyStore

__all__ = ["app_factory", "create_app", "score_change"]

log = logging.getLogger("salesml.api")
access = logging.getLogger("salesml.api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DealId = Annotated[str, PathParam(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f]+$")]


# -- logging ---------------------------------------------------------------------------------
class JsonFormatter(logging.Formatter):
    """One JSON object per line; exceptions as their type only (no stack traces)."""

    _second: int = -1
    _stamp: str = ""

    def _ts(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # one strftime per second, not per line
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": self._ts(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            doc.update(extra)
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = record.exc_info[0].__name__
        try:
            return orjson.dumps(doc, default=str).decode()
        except TypeError:  # keys that are not strings, integers beyond 64 bits
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
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
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

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count a request (the label children are looked up once per combination)."""
        key = (route, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(route, method, str(status)),
                self.latency.labels(route),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

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
    """Request id, body size limit, access log and metrics; turns any crash into a 500 problem.

    A pure ASGI middleware (no BaseHTTPMiddleware task and stream per request). The two hot
    routes are answered here by ``hot`` (serving.api.hot) when the request is well formed;
    everything else goes on to the FastAPI app.
    """

    def __init__(
        self, app: ASGIApp, settings: ApiSettings, metrics: Metrics, hot: HotPath | None = None
    ) -> None:
        self.app, self.settings, self.metrics, self.hot = app, settings, metrics, hot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming: bytes | None = None
        length: bytes | None = None
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                incoming = value
            elif name == b"content-length":
                length = value
        text = incoming.decode("latin-1") if incoming is not None else ""
        rid = (
            text
            if self.settings.trust_request_id and _REQUEST_ID.match(text)
            else os.urandom(8).hex()
        )
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        status = {"code": 500, "started": False}
        limit = self.settings.max_body_bytes
        rid_header = (b"x-request-id", rid.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = True
                message["headers"] = [*message.get("headers", ()), rid_header]
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
        hot = route_of(scope) if self.hot is not None else None
        try:
            if length is not None and length.isdigit() and int(length) > limit:
                raise _TooLargeError
            onward: Receive | None = counted
            if hot is not None:
                assert self.hot is not None
                onward = await self.hot(hot, scope, counted, send_with_id)
                if onward is not None:
                    hot = None
            if onward is not None:
                await self.app(scope, onward, send_with_id)
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
            template = hot or getattr(scope.get("route"), "path", None) or "unmatched"
            elapsed = time.perf_counter() - start
            code = int(status["code"])
            method = scope.get("method", "")
            self.metrics.observe(template, method, code, elapsed)
            if access.isEnabledFor(logging.INFO):
                fields = {
                    "event": "request",
                    "request_id": rid,
                    "method": method,
                    "route": template,
                    "path": scope.get("path"),
                    "status": code,
                    "duration_ms": round(elapsed * 1000, 2),
                    "key_id": state.get("key_id"),
                }
                if error is not None:
                    fields["error"] = error
                # makeRecord + handle: Logger.info without its stack walk (findCaller)
                access.handle(
                    access.makeRecord(
                        access.name,
                        logging.INFO,
                        "",
                        0,
                        "request",
                        (),
                        None,
                        extra={"fields": fields},
                    )
                )

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


class _Api(FastAPI):
    """FastAPI with ``Edge`` in front of everything (FastAPI's and Starlette's own layers
    included): the hot routes answered at the edge cost none of them. A crash in a FastAPI
    route is answered by the problem handler (``problems.install``) and re-raised by
    Starlette's error middleware; ``Edge`` logs its type."""

    edge: Edge | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.edge is not None and scope["type"] == "http":
            await self.edge(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)

    async def inner(self, scope: Scope, receive: Receive, send: Send) -> None:
        await super().__call__(scope, receive, send)


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

    app = _Api(
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
    hot = HotPath(state, settings, app.state.keys, app.state.limiter) if settings.hot_path else None
    app.edge = Edge(app.inner, settings=settings, metrics=metrics, hot=hot)
    state.warmer = warm if settings.warm else None

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
        content = await score_answer(body, principal, snap, state, settings.max_batch)
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
        hit = deal_answer(run, deal_id)
        if hit is None:
            raise not_found("deal", deal_id, "path.deal_id")
        team, encoded = hit
        if not principal.sees_team(team):
            raise not_found("deal", deal_id, "path.deal_id")
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
        except MissingFrequencyError as exc:
            raise ProblemError(422, str(exc), field="query.freq") from None
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
            raise not_found("team", principal.team, "query.by")
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
            raise not_found("rep", owner_id, "path.owner_id")
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

"""The FastAPI app: ``create_app`` puts together the settings, the serving state, the edge
middleware (``serving.api.edge``), the routers (``serving.api.routes``) and the problem
handlers (``serving.api.problems``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from salesml.importers.validate import Limits
from salesml.settings import Settings
from serving.api import problems
from serving.api.answers import score_change, warm
from serving.api.docs import install_docs
from serving.api.edge import Edge, EdgeApp
from serving.api.hot import HotPath
from serving.api.live import LiveEvents
from serving.api.observability import Metrics, configure_logging
from serving.api.routes import ROUTERS
from serving.api.security import RateLimiter
from serving.api.settings import ApiSettings
from serving.api.state import ServingState
from serving.keys import KeyStore

__all__ = ["app_factory", "create_app", "score_change"]

DESCRIPTION = (
    "Win scores, drivers and actions for CRM deals; forecasts and KPIs. "
    "Authenticate with an `X-API-Key` header (see docs/api.md). Errors are RFC 9457 "
    "problem+json."
)


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The scoring API for the workspace in ``settings.home`` (default: SALESML_HOME)."""
    settings = settings or ApiSettings()
    home = settings.home or Settings().home
    configure_logging()
    state = ServingState(home, settings.alias, settings.history_runs)
    state.warmer = warm if settings.warm else None
    app = EdgeApp(
        title="salesml scoring API",
        version="1",
        description=DESCRIPTION,
        lifespan=_lifespan(state, settings),
        responses=problems.PROBLEM_RESPONSES,
        docs_url=None,  # serving.api.docs: Swagger UI from local files
        redoc_url=None,  # ReDoc loads from a CDN only
    )
    app.state.serving = state
    app.state.settings = settings
    app.state.keys = KeyStore.for_home(home)
    app.state.limiter = RateLimiter(settings.rate_per_second, settings.rate_burst)
    app.state.metrics = Metrics()
    app.state.events = LiveEvents(state, home, _limits(Settings()))
    hot = (
        HotPath(state, settings, app.state.keys, app.state.limiter, app.state.events)
        if settings.hot_path
        else None
    )
    app.edge = Edge(app.inner, settings=settings, metrics=app.state.metrics, hot=hot)
    for router in ROUTERS:
        app.include_router(router)
    install_docs(app)
    problems.install(app)
    return app


def _limits(settings: Settings) -> Callable[[], Limits]:
    """The import rules' bounds, as of each call (events are checked like import rows)."""

    def limits() -> Limits:
        return Limits(
            now=datetime.now(UTC),
            max_future_days=settings.import_max_future_days,
            min_year=settings.import_min_year,
            max_amount=settings.import_max_amount,
            max_text_chars=settings.import_max_text_chars,
        )

    return limits


def _lifespan(
    state: ServingState, settings: ApiSettings
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Load (now or in the background) and poll for new models and runs while serving; the
    CRM events' applier runs alongside (``serving.api.live``)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.load_in_background:
            state.start(settings.poll_seconds, load_now=False)
        else:
            await run_in_threadpool(state.start, settings.poll_seconds, True)
            # loaded before serving: the events' feature context too (readiness, docs/events.md)
            await run_in_threadpool(app.state.events.prepare)
        app.state.events.start()
        try:
            yield
        finally:
            await run_in_threadpool(app.state.events.stop)
            await run_in_threadpool(state.stop)

    return lifespan


def app_factory() -> FastAPI:
    """For ``uvicorn --factory serving.api.app:app_factory`` (settings from the environment)."""
    return create_app()

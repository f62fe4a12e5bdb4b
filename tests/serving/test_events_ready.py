"""Readiness means events are applied at speed: ``/readyz`` waits (bounded) for the applier's
live feature context, so the first events after start-up are not scored by ``build_features``
while it is being built (docs/events.md, "Readiness")."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from serving.api import live
from serving.api.app import create_app
from serving.api.live_context import LiveContext
from tests.serving.conftest import Workspace, make_app_settings


def _until(client: TestClient, wanted: Any, timeout: float = 120) -> dict[str, Any]:
    """Poll ``/readyz`` until ``wanted(status, body)``; the last body."""
    end = time.monotonic() + timeout
    while True:
        answer = client.get("/readyz")
        body: dict[str, Any] = answer.json()
        if wanted(answer.status_code, body):
            return body
        assert time.monotonic() < end, (answer.status_code, body)
        time.sleep(0.05)


def _held(monkeypatch: pytest.MonkeyPatch, fail: bool = False) -> threading.Event:
    """Hold every context build until the returned gate is set (or make it fail)."""
    gate = threading.Event()
    make = LiveContext._make

    def held(self: LiveContext, *args: Any) -> Any:
        if fail:
            raise RuntimeError("no context today")
        assert gate.wait(120)
        return make(self, *args)

    monkeypatch.setattr(LiveContext, "_make", held)
    return gate


def _building(status: int, body: dict[str, Any]) -> bool:
    return status == 503 and "live feature context" in str(body["detail"])


def test_readyz_waits_for_the_live_context_while_healthz_stays_alive(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = _held(monkeypatch)
    app = create_app(make_app_settings(workspace.home, load_in_background=True))
    try:
        with TestClient(app) as c:
            body = _until(c, _building)  # data loaded, the context held back
            assert body["ready"] is False and body["run_id"] == "r1"
            assert c.get("/healthz").status_code == 200
            time.sleep(0.3)
            again = c.get("/readyz")
            assert _building(again.status_code, again.json())
            gate.set()
            body = _until(c, lambda status, _: status == 200)
            assert body["ready"] is True and body["detail"] is None
            assert app.state.events._context.usable
    finally:
        gate.set()


def test_readyz_does_not_wait_for_a_failed_build_or_past_its_bound(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    _held(monkeypatch, fail=True)
    app = create_app(make_app_settings(workspace.home, load_in_background=True))
    with TestClient(app) as c:
        _until(c, lambda status, _: status == 200, timeout=60)
    gate = _held(monkeypatch)
    monkeypatch.setattr(live, "WARM_SECONDS", 1.0)
    app = create_app(make_app_settings(workspace.home, load_in_background=True))
    try:
        with TestClient(app) as c:
            _until(c, _building)
            _until(c, lambda status, _: status == 200, timeout=30)
            assert not app.state.events._context.usable  # the bound ended the wait, not a build
    finally:
        gate.set()


def test_a_server_loaded_before_serving_has_its_context_built_too(workspace: Workspace) -> None:
    """Loading in the foreground (the test client's settings) builds the context before the
    first request: ``/readyz`` is 200 at once, and the first round needs no build."""
    app = create_app(make_app_settings(workspace.home))
    with TestClient(app) as c:
        context = app.state.events._context
        assert context is not None and context.usable and not context.building
        assert c.get("/readyz").status_code == 200

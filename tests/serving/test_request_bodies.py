"""Request bodies are checked at the edge, the same with the hot path on or off: over the size
limit 413 (with or without a Content-Length), not received in time 408."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from serving.api.app import create_app
from tests.serving.conftest import make_app_settings


def _call(
    app: Any, chunks: list[bytes], stall: bool = False, path: str = "/v1/deals/score"
) -> tuple[int, dict[str, Any]]:
    """One POST ``path`` at the ASGI level, its body in ``chunks`` (no Content-Length:
    chunked), the client then silent when ``stall``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"x-api-key", b"sml_x_y")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    pending = [
        {"type": "http.request", "body": c, "more_body": stall or n < len(chunks) - 1}
        for n, c in enumerate(chunks)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)  # a client that never sends the rest
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(asyncio.wait_for(app(scope, receive, send), 30))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), json.loads(body)


@pytest.mark.parametrize("path", ["/v1/deals/score", "/v1/events"])
@pytest.mark.parametrize("hot_path", [True, False], ids=["hot", "fastapi"])
def test_a_chunked_body_over_the_limit_is_413(tmp_path: Path, hot_path: bool, path: str) -> None:
    app = create_app(make_app_settings(tmp_path, hot_path=hot_path, max_body_bytes=2048))
    status, problem = _call(app, [b'{"deals": [' + b" " * 1500, b" " * 1500 + b"]}"], path=path)
    assert status == 413 and problem["status"] == 413
    # like every 4xx, it names the field, and says the limit
    assert problem["errors"][0]["field"] == "body"
    assert "2048 bytes" in problem["errors"][0]["message"]


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot", "fastapi"])
def test_a_stalled_body_is_408(tmp_path: Path, hot_path: bool) -> None:
    settings = make_app_settings(tmp_path, hot_path=hot_path, body_timeout_seconds=0.2)
    status, problem = _call(create_app(settings), [b'{"deals": ['], stall=True)
    assert status == 408 and problem["title"] == "Request timeout"
    assert problem["errors"][0]["field"] == "body"

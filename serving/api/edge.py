"""The edge: a pure ASGI middleware in front of everything (request id, body limit, JSON access
log, Prometheus counters, no stack trace ever out), which answers the two hot routes itself
(``serving.api.hot``)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api import problems
from serving.api.hot import HotPath, route_of
from serving.api.observability import Metrics
from serving.api.settings import ApiSettings

access = logging.getLogger("salesml.api.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class _TooLargeError(Exception):
    pass


class _BodyTimeoutError(Exception):
    pass


_NO_BODY = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})


async def _buffered(receive: Receive, limit: int, timeout: float) -> Receive:
    """Read the whole request body now — at most ``limit`` bytes (else ``_TooLargeError``),
    within ``timeout`` seconds (else ``_BodyTimeoutError``) — and give a ``receive`` that hands
    it on in one message. Checked here, neither limit depends on who reads the body later
    (the hot path or FastAPI, which would answer 400 for an error raised while it parses)."""
    chunks: list[bytes] = []
    seen = 0
    ended: Message | None = None  # a disconnect while reading, handed on as it came
    try:
        async with asyncio.timeout(timeout):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    ended = message
                    break
                chunk = message.get("body", b"")
                seen += len(chunk)
                if seen > limit:
                    raise _TooLargeError
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
    except TimeoutError:
        raise _BodyTimeoutError from None
    first: Message = ended or {"type": "http.request", "body": b"".join(chunks), "more_body": False}
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay


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

        error: str | None = None
        hot = route_of(scope) if self.hot is not None else None
        try:
            if length is not None and length.isdigit() and int(length) > limit:
                raise _TooLargeError
            body: Receive = receive
            if scope.get("method") not in _NO_BODY:
                body = await _buffered(receive, limit, self.settings.body_timeout_seconds)
            onward: Receive | None = body
            if hot is not None:
                assert self.hot is not None
                onward = await self.hot(hot, scope, body, send_with_id)
                if onward is not None:
                    hot = None
            if onward is not None:
                await self.app(scope, onward, send_with_id)
        except _TooLargeError:
            if not status["started"]:
                await self._problem(
                    scope,
                    send_with_id,
                    413,
                    f"request body over the limit of {limit} bytes (SALESML_API_MAX_BODY_BYTES); "
                    "send less per request (fewer events or deals)",
                    rid,
                )
        except _BodyTimeoutError:
            if not status["started"]:
                await self._problem(
                    scope,
                    send_with_id,
                    408,
                    f"request body not received within {self.settings.body_timeout_seconds} s; "
                    "send the whole body at once",
                    rid,
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
            self.metrics.observe(template, scope.get("method", ""), code, elapsed)
            if access.isEnabledFor(logging.INFO):
                _log_request(scope, rid, template, code, elapsed, error)

    @staticmethod
    async def _problem(scope: Scope, send: Send, code: int, detail: str, rid: str) -> None:
        """A problem answered at the edge; a 4xx names its field (the body: the only thing
        the edge refuses)."""
        problem: dict[str, object] = {
            "type": "about:blank",
            "title": problems.TITLES[code],
            "status": code,
            "detail": detail,
            "instance": scope.get("path"),
            "request_id": rid,
        }
        if 400 <= code < 500:
            problem["errors"] = [{"field": "body", "message": detail}]
        body = json.dumps(problem).encode()
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


class EdgeApp(FastAPI):
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


def _log_request(
    scope: Scope, rid: str, template: str, code: int, elapsed: float, error: str | None
) -> None:
    """One access-log line (never the key: its id only)."""
    fields = {
        "event": "request",
        "request_id": rid,
        "method": scope.get("method", ""),
        "route": template,
        "path": scope.get("path"),
        "status": code,
        "duration_ms": round(elapsed * 1000, 2),
        "key_id": scope["state"].get("key_id"),
    }
    if error is not None:
        fields["error"] = error
    # makeRecord + handle: Logger.info without its stack walk (findCaller)
    access.handle(
        access.makeRecord(
            access.name, logging.INFO, "", 0, "request", (), None, extra={"fields": fields}
        )
    )

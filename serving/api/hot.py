"""The hot path: ``GET /v1/deals/{deal_id}`` and ``POST /v1/deals/score`` answered straight from
the edge middleware, without FastAPI's routing and dependency resolution (which cost more than
the answers themselves, since both are computed once and kept encoded).

The FastAPI routes stay the contract (OpenAPI, docs) and the reference: the hot path answers a
request only when it is well formed — a known key holding the scope, no query string, a valid
deal id or a body that ``ScoreRequest`` accepts, the server ready — and hands every other
request to the FastAPI app untouched, so errors (401, 403, 422, 503, …) come from one place.
It takes the rate-limit token only once it has decided to answer, and then answers 429 and the
routes' own problems (404, 403, 422 raised by the shared answer code, a ``SalesmlError`` mapped
by ``problems.salesml_problem``) itself, through the same ``problem_response``. Both paths
call the same code (``serving.api.answers``) and the same authentication
(``serving.api.security.authenticate``'s checks), so their answers are the same bytes
(tests/serving/test_api.py compares them).

``DEAL`` and ``SCORE`` declare what the hot path checks: the key scope, the query parameters
(none), the path parameter's constraints, the body model and the routes' dependencies it does
the work of. tests/serving/test_routes.py compares them with the FastAPI routes, so a
dependency added to a route without the hot path following fails there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from salesml.errors import SalesmlError
from serving.api import deps
from serving.api.answers import deal_document, not_found, score_answer
from serving.api.problems import ProblemError, problem_response, salesml_problem
from serving.api.schemas import ScoreRequest
from serving.api.security import RateLimiter, principal_of, rate_limited
from serving.api.settings import ApiSettings
from serving.api.state import ServingState
from serving.keys import ApiKey, KeyStore


@dataclass(frozen=True)
class HotRoute:
    """What the hot path checks for one route, as the FastAPI route declares it."""

    method: str
    path: str
    scope: str  # the key's scope (``deps.ScoresReadKey`` …)
    query: frozenset[str]  # query parameters taken (a request with any goes to FastAPI)
    body: type[BaseModel] | None  # the body model, validated before answering
    path_params: dict[str, dict[str, Any]]  # name -> constraints (``deps.DealId``)
    does: frozenset[Callable[..., Any]]  # the routes' dependencies whose work it does


_DEAL_ID_CONSTRAINTS = {
    "min_length": 1,
    "max_length": deps.DEAL_ID_MAX_LENGTH,
    "pattern": deps.DEAL_ID_PATTERN,
}
DEAL = HotRoute(
    method="GET",
    path="/v1/deals/{deal_id}",
    scope="scores:read",
    query=frozenset(),
    body=None,
    path_params={"deal_id": _DEAL_ID_CONSTRAINTS},
    does=frozenset({deps.ready_snapshot, deps.serving_state}),
)
SCORE = HotRoute(
    method="POST",
    path="/v1/deals/score",
    scope="scores:write",
    query=frozenset(),
    body=ScoreRequest,
    path_params={},
    does=frozenset({deps.ready_snapshot, deps.serving_state, deps.api_settings}),
)
DEAL_ROUTE = DEAL.path
SCORE_ROUTE = SCORE.path
_DEALS = "/v1/deals/"
_DEAL_ID = re.compile(rf"^{deps.DEAL_ID_CHARACTER}{{1,{deps.DEAL_ID_MAX_LENGTH}}}$")
_JSON = re.compile(rb"^application/(?:[\w.+-]+\+)?json(?:\s*;|$)", re.IGNORECASE)
_JSON_HEADERS = [(b"content-type", b"application/json")]


def route_of(scope: Scope) -> str | None:
    """The hot route this request is for, or ``None``."""
    if scope.get("query_string") or scope.get("root_path"):
        return None
    method, path = scope.get("method"), scope.get("path", "")
    if method == SCORE.method and path == SCORE_ROUTE:
        return SCORE_ROUTE
    if method == DEAL.method and path.startswith(_DEALS):
        deal_id = path[len(_DEALS) :]
        if deal_id and "/" not in deal_id and _DEAL_ID.match(deal_id):
            return DEAL_ROUTE
    return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return bytes(value)
    return None


class _Pending(Protocol):
    """What the hot path needs of ``serving.api.live.LiveEvents``."""

    def pending_row(self, deal_id: str) -> dict[str, Any] | None: ...


class HotPath:
    def __init__(
        self,
        state: ServingState,
        settings: ApiSettings,
        keys: KeyStore,
        limiter: RateLimiter,
        events: _Pending | None = None,
    ) -> None:
        self.state, self.settings, self.keys, self.limiter = state, settings, keys, limiter
        self.events = events  # a deal closed by an event answers its status

    def _key(self, scope: Scope, needs: str) -> ApiKey | None:
        raw = _header(scope, b"x-api-key")
        if not raw:
            return None
        key = self.keys.verify(raw.decode("latin-1"))
        return key if key is not None and key.allows(needs) else None

    async def __call__(
        self, route: str, scope: Scope, receive: Receive, send: Send
    ) -> Receive | None:
        """Answer the request (``None``), or give the ``receive`` the FastAPI app must use."""
        if route == DEAL_ROUTE:
            return await self._deal(scope, receive, send)
        return await self._score(scope, receive, send)

    async def _deal(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        key = self._key(scope, DEAL.scope)
        snap = self.state.snapshot()
        if key is None or not snap.ready or snap.run is None:
            return receive
        deal_id = scope["path"][len(_DEALS) :]
        scope["state"]["key_id"] = key.key_id
        try:
            wait = self.limiter.take(key.key_id)
            if wait > 0:
                raise rate_limited(wait)
            pending = self.events.pending_row if self.events is not None else None
            hit = deal_document(snap.run, deal_id, snap.data, pending)
            if hit is None or not principal_of(key).sees_team(hit[0]):
                raise not_found("deal", deal_id, "path.deal_id")
        except ProblemError as exc:
            await _problem(exc, scope, receive, send)
            return None
        except SalesmlError as exc:  # as the route's handler answers it
            await _problem(salesml_problem(exc, "scores"), scope, receive, send)
            return None
        await _json(send, hit[1])
        return None

    async def _score(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        content_type = _header(scope, b"content-type")
        key = self._key(scope, SCORE.scope)
        snap = self.state.snapshot()
        if content_type is None or not _JSON.match(content_type) or key is None or not snap.ready:
            return receive
        body = await _read(receive)
        replay = _replay(body, receive)
        try:
            request = ScoreRequest.model_validate(orjson.loads(body))
        except (orjson.JSONDecodeError, ValidationError, ValueError, TypeError):
            return replay  # the route answers 422 with its own field errors
        scope["state"]["key_id"] = key.key_id
        try:
            wait = self.limiter.take(key.key_id)
            if wait > 0:
                raise rate_limited(wait)
            content = await score_answer(
                request, principal_of(key), snap, self.state, self.settings.max_batch
            )
        except ProblemError as exc:
            await _problem(exc, scope, replay, send)
            return None
        except SalesmlError as exc:  # as the route's handler answers it
            await _problem(salesml_problem(exc, "scores"), scope, replay, send)
            return None
        await _json(send, content)
        return None


async def _read(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return again


async def _json(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode()), *_JSON_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _problem(exc: ProblemError, scope: Scope, receive: Receive, send: Send) -> None:
    response = problem_response(
        Request(scope), exc.status, exc.detail, errors=exc.errors, headers=exc.headers
    )
    await response(scope, receive, send)

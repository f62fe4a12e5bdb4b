"""``X-API-Key`` authentication, scopes, team scope and the per-key rate limit."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from serving.api.problems import ProblemError
from serving.keys import ApiKey, KeyStore

API_KEY_HEADER = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key from `salesml keys add NAME --scopes …`.",
)


@dataclass(frozen=True)
class Principal:
    key_id: str
    name: str
    scopes: tuple[str, ...]
    team: str | None

    def sees_team(self, team: str | None) -> bool:
        """Whether an object of ``team`` exists for this key (team-bound keys see their own)."""
        return self.team is None or team == self.team


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        with self._lock:
            tokens, stamp = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate


def rate_limited(wait: float) -> ProblemError:
    return ProblemError(
        429,
        f"rate limit exceeded for this key; retry in {wait:.2f} s",
        headers={"Retry-After": str(max(1, math.ceil(wait)))},
    )


def authenticate(
    store: KeyStore, limiter: RateLimiter, api_key: str | None, scope: str, state: Any
) -> Principal:
    """The caller's principal: a valid key (401), within its rate (429), holding ``scope``
    (403), in that order. Sets ``state.key_id`` for the access log."""
    if not api_key:
        raise ProblemError(401, "missing X-API-Key header", headers={"WWW-Authenticate": "ApiKey"})
    key: ApiKey | None = store.verify(api_key)
    if key is None:
        raise ProblemError(
            401, "invalid or revoked API key", headers={"WWW-Authenticate": "ApiKey"}
        )
    state.key_id = key.key_id
    wait = limiter.take(key.key_id)
    if wait > 0:
        raise rate_limited(wait)
    if not key.allows(scope):
        raise ProblemError(403, f"this key lacks the {scope!r} scope")
    return principal_of(key)


def principal_of(key: ApiKey) -> Principal:
    return Principal(key.key_id, key.name, key.scopes, key.team)


@dataclass(frozen=True)
class ScopeGuard:
    """A dependency: the caller's key must be valid, hold ``scope`` and be within its rate."""

    scope: str

    async def __call__(
        self, request: Request, api_key: str | None = Security(API_KEY_HEADER)
    ) -> Principal:
        return authenticate(
            request.app.state.keys, request.app.state.limiter, api_key, self.scope, request.state
        )


def require(scope: str) -> ScopeGuard:
    """A dependency: the caller's key must be valid, hold ``scope`` and be within its rate."""
    return ScopeGuard(scope)

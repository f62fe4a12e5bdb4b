"""What the API tells operators: one JSON object per log line, and Prometheus metrics."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

import orjson
import pandas as pd
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from serving.api.state import ServingState


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
    """JSON lines on stderr for the ``salesml`` loggers (once per process)."""
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
    """The API's Prometheus metrics, in a registry of their own."""

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
        """Set the gauges from the serving state (before a scrape)."""
        snap = state.snapshot()
        self.model.clear()
        if snap.model_version is not None:
            self.model.labels(version=snap.model_version).set(1)
        if snap.run is not None:
            created = pd.Timestamp(snap.run.info.created_at)
            self.run_age.set((pd.Timestamp.now(tz="UTC") - created).total_seconds())
        self.ready.set(1 if snap.ready else 0)
        self.registry_errors.set(state.registry_errors)

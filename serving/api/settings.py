"""API settings, from the environment (``SALESML_API_*``) or passed to ``create_app``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    """How the API serves: where the workspace is, which model, limits and reload cadence."""

    model_config = SettingsConfigDict(env_prefix="SALESML_API_", extra="ignore")

    home: Path | None = Field(
        default=None, description="Workspace folder (default: SALESML_HOME, else ./.salesml)."
    )
    alias: str = Field(default="champion", description="Registry alias to serve.")
    poll_seconds: float = Field(
        default=30.0,
        ge=0,
        description="How often to check the registry alias and the latest score run (0: never).",
    )
    load_in_background: bool = Field(
        default=True,
        description="Load models and data after start-up (readyz says 503 meanwhile); "
        "False loads them before the first request is served.",
    )
    rate_per_second: float = Field(default=50.0, gt=0, description="Requests per second per key.")
    rate_burst: int = Field(default=100, ge=1, description="Requests a key may burst.")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="Largest request body.")
    body_timeout_seconds: float = Field(
        default=10.0, gt=0, description="Longest wait for a request body (then 408)."
    )
    max_batch: int = Field(default=100, ge=1, description="Most deals per score request.")
    history_runs: int = Field(
        default=10, ge=1, description="Score runs kept in memory for a deal's history."
    )
    hot_path: bool = Field(
        default=True,
        description="Answer well-formed GET /v1/deals/{id} and POST /v1/deals/score requests "
        "in the edge middleware (same answers; False routes them through FastAPI).",
    )
    warm: bool = Field(
        default=True,
        description="After loading a score run, compute its GET answers and memoised score "
        "rows on a background thread ahead of the first requests.",
    )
    trust_request_id: bool = Field(
        default=True, description="Reuse a well-formed incoming X-Request-ID."
    )

"""Settings, read from the environment (pydantic-settings) when a command starts.

This module is the one place that touches the environment: ``Settings`` reads it, and
``Settings.export_library_defaults`` sets the variables third-party libraries read at start-up.
Everything else receives settings as arguments or constructs ``Settings()`` inside a command.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Variables set (when unset) before LightGBM and MLflow load: spinning OpenMP threads crawl on a
# busy machine (see the Makefile), and MLflow narrates every registration (INFO lines, download
# bars) where the commands print what a user needs. Set them yourself to override.
LIBRARY_DEFAULTS = {
    "OMP_WAIT_POLICY": "PASSIVE",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


class Settings(BaseSettings):
    """Where a workspace lives and how much of the machine the work uses. Read inside
    commands, never at import time."""

    model_config = SettingsConfigDict(env_prefix="SALESML_", extra="ignore")

    home: Path = Field(
        default=Path(".salesml"),
        description="Workspace folder: warehouse, rejects, score runs and reports.",
    )
    base_currency: str = Field(default="USD", description="Currency KPIs are reported in.")
    threads: int = Field(
        default=0,
        ge=0,
        description="Threads for LightGBM, the SHAP kernels and forecast fits (0: every core).",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Worker processes for batch scoring (unset: one per core).",
    )
    import_max_future_days: int = Field(
        default=366,
        ge=1,
        description="An imported event dated more than this many days after now is rejected.",
    )
    import_min_year: int = Field(
        default=1900, ge=1, le=9999, description="An imported date before this year is rejected."
    )
    import_max_amount: float = Field(
        default=1e12,
        gt=0,
        allow_inf_nan=False,
        description="An imported amount (or revenue, spend) larger than this is rejected.",
    )
    import_max_text_chars: int = Field(
        default=10_000, ge=1, description="An imported text value longer than this is rejected."
    )
    debug: bool = Field(default=False, description="Show the full traceback of an error.")
    mlflow_tracking_uri: str | None = Field(
        default=None,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI"),
        description="MLflow's own variable: the tracking store (default: $SALESML_HOME/mlflow.db).",
    )

    @field_validator("home")
    @classmethod
    def _home_is_not_a_file(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(
                f"SALESML_HOME={value} is a file; point it at a folder (it is created if missing)"
            )
        return value

    @field_validator("workers", mode="before")
    @classmethod
    def _workers_is_a_count(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            try:
                return int(value.strip())
            except ValueError:
                raise ValueError(
                    f"SALESML_WORKERS must be a whole number of processes, got {value!r}"
                ) from None
        return value

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def rejects_dir(self) -> Path:
        return self.home / "rejects"

    @staticmethod
    def export_spark_python(executable: str) -> None:
        """Have Spark's Python workers run ``executable`` unless ``PYSPARK_PYTHON`` says
        otherwise (PySpark reads these variables when it starts a worker)."""
        os.environ.setdefault("PYSPARK_PYTHON", executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", executable)

    @staticmethod
    def export_library_defaults() -> None:
        """Set ``LIBRARY_DEFAULTS`` in the environment where unset (before the libraries load)."""
        for name, value in LIBRARY_DEFAULTS.items():
            os.environ.setdefault(name, value)

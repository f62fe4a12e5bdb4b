"""Settings, read from the environment (pydantic-settings) when a command starts."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Where a workspace lives. Read inside commands, never at import time."""

    model_config = SettingsConfigDict(env_prefix="SALESML_", extra="ignore")

    home: Path = Field(
        default=Path(".salesml"),
        description="Workspace folder: warehouse, rejects, score runs and reports.",
    )
    base_currency: str = Field(default="USD", description="Currency KPIs are reported in.")

    @field_validator("home")
    @classmethod
    def _home_is_not_a_file(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(
                f"SALESML_HOME={value} is a file; point it at a folder (it is created if missing)"
            )
        return value

    @property
    def warehouse_path(self) -> Path:
        return self.home / "warehouse.duckdb"

    @property
    def rejects_dir(self) -> Path:
        return self.home / "rejects"

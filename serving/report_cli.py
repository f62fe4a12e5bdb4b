"""Placeholder: the report command is added here by the issue that builds it."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing to add yet."""
    del app

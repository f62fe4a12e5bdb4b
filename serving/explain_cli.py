"""Placeholder: commands are added here by the issue that builds them."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Nothing to add yet."""
    del app

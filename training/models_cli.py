"""``salesml models list|promote|rollback``: the registry as a user manages it.

Registered through the ``salesml.commands`` entry point. The registry lives in the workspace
(``salesml.models.registry``); promotion and rollback move the ``champion`` alias, which the API
and the nightly batch pick up without a restart.
"""

from __future__ import annotations

from dataclasses import asdict
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from salesml.cli import console, handle_errors, print_json


class ModelName(StrEnum):
    win = "win"
    forecast = "forecast"


models_app = typer.Typer(help="Registered models: list versions, promote one, roll back.")


def register(app: typer.Typer) -> None:
    """Add ``models`` to the salesml CLI."""
    app.add_typer(models_app, name="models")


@models_app.command("list")
@handle_errors
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print the versions as JSON.")] = False,
) -> None:
    """Every registered version of the win and forecast models, with its aliases."""
    from salesml.models.registry import model_versions

    versions = [v for model in ModelName for v in model_versions(model.value)]
    if as_json:
        print_json([asdict(v) for v in versions])
        return
    if not versions:
        console.print("no registered models yet; train them first: salesml train")
        return
    table = Table(title="registered models")
    for header in ("model", "version", "aliases", "registered", "why", "holdout"):
        table.add_column(header)
    for v in versions:
        table.add_row(
            v.model,
            v.version,
            ", ".join(v.aliases) or "—",
            v.created_at or "—",
            v.promotion_reason or "—",
            _holdout(v.model, v.loses_to),
        )
    console.print(table)


def _holdout(model: str, loses_to: tuple[str, ...] | None) -> str:
    """What the version's holdout says against its baselines (win model)."""
    if model != "win":
        return "—"
    if loses_to is None:
        return "unknown"
    if loses_to:
        return "[bold red]loses to " + ", ".join(loses_to) + "[/]"
    return "beats every baseline"


@models_app.command("promote")
@handle_errors
def promote(
    version: Annotated[str, typer.Argument(help="The version to make champion.")],
    model: Annotated[ModelName, typer.Option(help="Which model.")] = ModelName.win,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Make VERSION the champion (the one the API, batch and report use)."""
    from salesml.models.registry import set_champion

    previous = set_champion(model.value, version, "promoted by hand (salesml models promote)")
    out = {"model": model.value, "champion": version, "previous": previous}
    if as_json:
        print_json(out)
        return
    console.print(
        f"{model.value} model: champion is now version {version}"
        + (f" (was {previous}; salesml models rollback goes back)" if previous else "")
    )


@models_app.command("rollback")
@handle_errors
def rollback(
    model: Annotated[ModelName, typer.Option(help="Which model.")] = ModelName.win,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Move the champion back to the version that was champion before it."""
    from salesml.models.registry import rollback_champion

    current, target = rollback_champion(model.value)
    if as_json:
        print_json({"model": model.value, "champion": target, "previous": current})
        return
    console.print(f"{model.value} model: champion rolled back from version {current} to {target}")

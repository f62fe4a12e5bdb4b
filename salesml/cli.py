"""The ``salesml`` command line: one entry point, ``--help`` everywhere, ``--json`` output."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import date, datetime
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from salesml.errors import SalesmlError
from salesml.settings import Settings

app = typer.Typer(
    name="salesml",
    help="Win scores, close timing, revenue forecasts, drivers and actions from your CRM history.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
P = ParamSpec("P")
R = TypeVar("R")
err = Console(stderr=True)
out = Console()


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line reason and exit non-zero."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn errors into a one-line reason and a non-zero exit, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SalesmlError as exc:
            raise fail(str(exc)) from None
        except typer.Exit:
            raise
        except Exception as exc:
            if os.environ.get("SALESML_DEBUG"):
                raise
            raise fail(
                f"unexpected {type(exc).__name__}: {exc} (rerun with SALESML_DEBUG=1 for details)"
            ) from None

    return wrapper


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@app.callback()
def _root() -> None:
    """Win scores, close timing, revenue forecasts, drivers and actions from your CRM history.

    Settings come from the environment: SALESML_HOME (workspace folder, default ./.salesml).
    """


class ImportFormat(StrEnum):
    canonical = "canonical"
    maven = "maven"
    salesforce = "salesforce"
    hubspot = "hubspot"
    mapping = "mapping"


@app.command("import")
@handle_errors
def import_cmd(
    path: Annotated[Path, typer.Argument(help="Export folder (or file) to import.")],
    fmt: Annotated[ImportFormat, typer.Option("--format", "-f", help="Export format.")] = (
        ImportFormat.canonical
    ),
    mapping: Annotated[
        Path | None, typer.Option(help="YAML mapping file (with --format mapping).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Import a CRM export into the warehouse; bad rows go to a rejects file with reasons."""
    from salesml.importers import read_export, run_import

    settings = Settings()
    with err.status("reading export…") as status:
        batch = read_export(path, fmt.value, mapping)
        summary = run_import(
            batch,
            settings.warehouse_path,
            settings.rejects_dir,
            progress=lambda msg: status.update(msg + "…"),
        )
    if as_json:
        print_json(summary.to_json())
        return
    table = Table(title=f"import {summary.import_id} ({summary.format})")
    for col in ("table", "input", "imported", "updated", "unchanged", "rejected"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name, c in summary.tables.items():
        table.add_row(
            name, *(f"{v:,}" for v in (c.input, c.imported, c.updated, c.unchanged, c.rejected))
        )
    out.print(table)
    for warning in summary.warnings:
        out.print(f"[yellow]warning:[/] {warning}", highlight=False)
    if summary.rejects_file:
        out.print(f"rejected rows and reasons: {summary.rejects_file}")
    out.print(f"warehouse: {settings.warehouse_path}")


def main() -> None:  # pragma: no cover
    app()

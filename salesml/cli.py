"""The ``salesml`` command line: one entry point, ``--help`` everywhere, ``--json`` output."""

from __future__ import annotations

import sys
import unicodedata
from collections.abc import Callable
from datetime import UTC, date, datetime
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ParamSpec, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from salesml import jsonio
from salesml.errors import SalesmlError
from salesml.settings import Settings

if TYPE_CHECKING:
    from salesml.warehouse import DataSpan

app = typer.Typer(
    name="salesml",
    help="Win scores, close timing, revenue forecasts, drivers and actions from your CRM history.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
P = ParamSpec("P")
R = TypeVar("R")
# Never Jupyter widgets: the CLI also runs inside notebooks (through CliRunner).
err = Console(stderr=True, force_jupyter=False)
console = Console(force_jupyter=False)


def shown(text: str) -> str:
    """``text`` safe to print on a terminal: control and bidi-override characters from the
    data (an ESC sequence in a CSV line, U+202E in an id) as escapes, and no Rich markup."""
    out = "".join(
        ch
        if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf")
        else ch.encode("unicode_escape").decode("ascii")
        for ch in text
    )
    return escape(out)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line reason and exit non-zero."""
    err.print(f"[bold red]error:[/] {shown(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn errors into a one-line reason and a non-zero exit, never a traceback."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except SalesmlError as exc:
            if kwargs.get("as_json"):  # a script reading --json output gets the error there too
                print_json({"error": str(exc)})
            raise fail(str(exc)) from None
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
            )
            raise fail(f"invalid setting ({problems})") from None
        except typer.Exit:
            raise
        except Exception as exc:
            if _debugging():
                raise
            raise fail(
                f"unexpected {type(exc).__name__}: {exc} (rerun with SALESML_DEBUG=1 for details)"
            ) from None

    return wrapper


def _debugging() -> bool:
    """``SALESML_DEBUG`` is on (an unreadable setting counts as off)."""
    try:
        return Settings().debug
    except ValidationError:
        return False


def now_utc() -> datetime:
    """The clock, read at the edge (a command's start) and passed down."""
    return datetime.now(UTC)


def resolve_as_of(span: DataSpan, as_of: datetime | None) -> datetime:
    """The as-of a command works at: ``as_of`` when given — with a warning when it lies
    outside the data ``span`` — else the data's as-of (its latest event, never after now)."""
    from salesml.errors import WarehouseError

    if as_of is None:
        if span.end is None:
            raise WarehouseError(
                "the warehouse holds no events; import an export first: salesml import PATH"
            )
        return span.end
    for warning in span.warnings(as_of):
        err.print(f"[yellow]warning:[/] {shown(warning)}", highlight=False)
    return as_of


def print_json(data: Any) -> None:
    sys.stdout.write(jsonio.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


COMMAND_GROUP = "salesml.commands"


def load_plugins() -> None:
    """Add the commands other packages register (training: train; serving: score, …).

    The core never imports ``training`` or ``serving`` (DESIGN.md's import rules): they declare
    ``register(app)`` functions as entry points in the ``salesml.commands`` group instead.
    """
    from importlib.metadata import entry_points

    if getattr(app, "_salesml_plugins_loaded", False):
        return
    for entry in sorted(entry_points(group=COMMAND_GROUP), key=lambda e: e.name):
        entry.load()(app)
    app._salesml_plugins_loaded = True  # type: ignore[attr-defined]


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
    zoho = "zoho"
    pipedrive = "pipedrive"
    monday = "monday"
    ga4 = "ga4"
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
    decimal: Annotated[
        str | None,
        typer.Option(
            help="The export's decimal separator: ',' for numbers written 1.234,50 or 1234,5 "
            "(default '.'; with --format mapping, declare it in the mapping)."
        ),
    ] = None,
) -> None:
    """Import a CRM export into the warehouse; bad rows go to a rejects file with reasons."""
    from salesml.importers import read_export, run_import
    from salesml.importers.validate import Limits

    settings = Settings()
    limits = Limits(
        now=datetime.now(UTC),
        max_future_days=settings.import_max_future_days,
        min_year=settings.import_min_year,
        max_amount=settings.import_max_amount,
        max_text_chars=settings.import_max_text_chars,
    )
    with err.status("reading export…") as status:
        batch = read_export(path, fmt.value, mapping, decimal)
        summary = run_import(
            batch,
            settings.warehouse_path,
            settings.rejects_dir,
            progress=lambda msg: status.update(msg + "…"),
            limits=limits,
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
    console.print(table)
    for warning in summary.warnings:
        console.print(f"[yellow]warning:[/] {shown(warning)}", highlight=False)
    if summary.rejects_file:
        console.print(f"rejected rows and reasons: {summary.rejects_file}")
    console.print(f"warehouse: {settings.warehouse_path}")


def main() -> None:  # pragma: no cover
    Settings.export_library_defaults()  # before LightGBM and MLflow load
    load_plugins()
    app()


class SynthFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


@app.command()
@handle_errors
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the canonical tables to.")],
    deals: Annotated[int, typer.Option(min=1, help="Number of deals to generate.")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same history).")] = 7,
    end_date: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Last day of the history (default: today)."),
    ] = None,
    fmt: Annotated[SynthFormat, typer.Option("--format", help="File format.")] = (
        SynthFormat.parquet
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Generate realistic synthetic CRM history with planted, documented effects."""
    from rich.progress import Progress

    from salesml.synth import generate

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("generating", total=1.0)

        def progress(step: str, fraction: float) -> None:
            bar.update(task, completed=fraction, description=step)

        summary = generate(
            deals,
            seed,
            out,
            end_date=end_date.date() if end_date else None,
            fmt=fmt.value,
            progress=progress,
        )
    rows = {name: int(n) for name, n in summary.rows.items()}
    if as_json:
        print_json(summary.to_dict())
        return
    table = Table(title=f"synthetic history in {out}")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print(f"ground truth: {out / '_truth'} (see docs/synthetic.md)")


class GroupBy(StrEnum):
    rep = "rep"
    team = "team"
    region = "region"
    product = "product"
    segment = "segment"


class Period(StrEnum):
    month = "month"
    quarter = "quarter"
    year = "year"


@app.command()
@handle_errors
def kpis(
    by: Annotated[GroupBy | None, typer.Option(help="Group the KPIs.")] = None,
    period: Annotated[Period, typer.Option(help="Period for growth and trends.")] = (
        Period.quarter
    ),
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Compute as of this date (default: the data's latest event).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the documented JSON.")] = False,
) -> None:
    """Sales KPIs: revenue and growth, win rate, AOV, cycle length, CAC, NPS, pipeline."""
    from salesml.kpis import compute_kpis
    from salesml.warehouse import connect, data_span

    settings = Settings()
    con = connect(settings.warehouse_path, read_only=True)
    try:
        when = resolve_as_of(data_span(con, now_utc()), as_of)
        result = compute_kpis(con, by=by.value if by else None, period=period.value, as_of=when)
    finally:
        con.close()
    if as_json:
        print_json(result)
        return
    _print_kpis(result)


def _money(v: object) -> str:
    return "—" if v is None else f"{float(v):,.0f}"  # type: ignore[arg-type]


def _pct(v: object) -> str:
    return "—" if v is None else f"{100 * float(v):.1f}%"  # type: ignore[arg-type]


def _num(v: object) -> str:
    return "—" if v is None else f"{float(v):,.1f}"  # type: ignore[arg-type]


def _print_kpis(result: dict[str, Any]) -> None:
    table = Table(title=f"KPIs as of {result['as_of']} ({result.get('currency', '')})")
    columns = [
        ("revenue", "revenue", _money),
        ("growth", "revenue_growth", _pct),
        ("YoY", "revenue_growth_yoy", _pct),
        ("win rate", "win_rate", _pct),
        ("AOV", "average_order_value", _money),
        ("cycle (med)", "median_cycle_days", _num),
        ("CAC", "cac", _money),
        ("NPS", "nps", _num),
        ("open pipeline", "open_pipeline", _money),
        ("coverage", "pipeline_coverage", _num),
    ]
    table.add_column(result.get("by") or "")
    for label, _, _ in columns:
        table.add_column(label, justify="right")
    blocks = [("overall", result["overall"])]
    blocks += [(str(g["group"]), g) for g in result.get("groups", [])]
    for name, block in blocks:
        table.add_row(name, *(f(block.get(key)) for _, key, f in columns))
    # Eleven columns do not fit 80 characters; a wide table beats truncated figures.
    Console(width=max(console.width, 150)).print(table)
    _print_lead_conversion(result["overall"].get("lead_conversion"))
    _print_web_traffic(result["overall"].get("web_traffic"))
    # What the JSON says in "warnings" (several currencies summed, unknown customer figures…)
    # the table must say too.
    for warning in result.get("warnings") or []:
        err.print(f"[yellow]warning:[/] {shown(str(warning))}", highlight=False)


def _key_events(value: float | None) -> str:
    """Key events as counted: whole (39) or, attributed in parts (GA4), to 6 decimals."""
    if value is None:
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.6f}".rstrip("0").rstrip(".")


def _print_web_traffic(rows: list[dict[str, Any]] | None) -> None:
    """Web traffic by channel (only when web analytics were imported, e.g. --format ga4)."""
    if not rows:
        return
    table = Table(title="web traffic by channel (web analytics)")
    labels = ("channel", "sessions", "key events", "key event rate", "new customers")
    for label in (*labels, "session → customer", "spend", "CAC"):
        table.add_column(label, justify="left" if label == "channel" else "right")
    for row in rows:
        key_events, new = row["key_events"], row["new_customers"]
        table.add_row(
            str(row["channel"]),
            f"{row['sessions']:,}",
            _key_events(key_events),
            _pct(row["key_event_rate"]),
            "—" if new is None else f"{new:,}",
            _pct(row["session_to_customer_rate"]),
            _money(row["marketing_spend"]),
            _money(row["cac"]),
        )
    Console(width=max(console.width, 130)).print(table)


def _print_lead_conversion(rows: list[dict[str, Any]] | None) -> None:
    """Lead-to-customer conversion overall and by source (only when leads were imported)."""
    if not rows:
        return
    table = Table(title="lead-to-customer conversion by source")
    for label in ("source", "leads", "converted", "customers", "lead → customer"):
        table.add_column(label, justify="left" if label == "source" else "right")
    for row in rows:
        table.add_row(
            str(row["source"]),
            f"{row['leads']:,}",
            f"{row['converted']:,}",
            f"{row['customers']:,}",
            _pct(row["lead_to_customer_rate"]),
        )
    leads = sum(int(row["leads"]) for row in rows)
    customers = sum(int(row["customers"]) for row in rows)
    table.add_row(
        "all sources",
        f"{leads:,}",
        f"{sum(int(row['converted']) for row in rows):,}",
        f"{customers:,}",
        _pct(customers / leads if leads else None),
        style="bold",
    )
    console.print(table)

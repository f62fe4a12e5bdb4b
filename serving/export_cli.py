"""``salesml export``: registered on the CLI through the ``salesml.commands`` entry point."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import typer
from rich.table import Table

from salesml.cli import console, err, handle_errors, now_utc, print_json, resolve_as_of
from salesml.settings import Settings


class Target(StrEnum):
    kpis = "kpis"
    scores = "scores"
    forecast = "forecast"
    deals = "deals"


class FileFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


class KpiPeriod(StrEnum):
    month = "month"
    quarter = "quarter"


class ForecastFreq(StrEnum):
    week = "week"
    month = "month"
    quarter = "quarter"


def register(app: typer.Typer) -> None:
    """Add ``export`` to the salesml CLI."""
    app.command("export")(export)


@handle_errors
def export(
    targets: Annotated[
        list[Target], typer.Argument(help="What to export: kpis, scores, forecast, deals.")
    ],
    out: Annotated[Path, typer.Option(help="Folder to write the tables to.")],
    fmt: Annotated[FileFormat, typer.Option("--format", help="File format.")] = (
        FileFormat.parquet
    ),
    period: Annotated[KpiPeriod, typer.Option(help="KPI period.")] = KpiPeriod.month,
    freq: Annotated[ForecastFreq, typer.Option(help="Forecast period.")] = ForecastFreq.month,
    horizon: Annotated[int, typer.Option(min=1, max=104, help="Forecast periods.")] = 3,
    as_of: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="As-of (default: the data's latest event)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was written as JSON.")] = (
        False
    ),
) -> None:
    """Write a star schema (facts and dimensions, docs/bi.md) for Power BI or Tableau."""
    from salesml.warehouse import connect, data_span
    from serving.bi_export import write_star

    settings = Settings()
    con = connect(settings.warehouse_path, read_only=True)
    try:
        span = data_span(con, now_utc())
        when = resolve_as_of(span, as_of)
        builders = _builders(con, set(targets), when, period.value, freq.value, horizon)
        with err.status("writing the star schema…"):
            written = write_star([t.value for t in targets], builders, out, fmt.value)
    finally:
        con.close()
    files = {name: str(out / f"{name}.{fmt.value}") for name in written}
    if as_json:
        print_json({"out": str(out), "format": fmt.value, "rows": written, "files": files})
        return
    table = Table(title=f"star schema in {out} ({fmt.value})")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in written.items():
        table.add_row(name, f"{n:,}")
    console.print(table)
    console.print("schema and Power BI / Tableau steps: docs/bi.md")


def _builders(
    con: Any, targets: set[Target], when: datetime, period: str, freq: str, horizon: int
) -> dict[str, Callable[[], Any]]:
    """Table → a function building it (only the tables asked for are ever built)."""
    from serving import bi_export as bx

    builders: dict[str, Callable[[], Any]] = {
        "dim_date": lambda: bx.dim_date(*bx.span_dates(con, when)),
        "dim_rep": lambda: bx.dim_rep(con),
        "dim_team": lambda: bx.dim_team(con),
        "dim_deal": lambda: bx.dim_deal(con),
    }
    if Target.kpis in targets:
        builders["fact_kpis"] = lambda: _kpis(con, when, period)
    if Target.scores in targets:
        builders["fact_deal_scores"] = lambda: _scores(bx.deal_keys(con))
    if Target.forecast in targets:
        builders["fact_forecast"] = lambda: _forecast(con, when, freq, horizon)
    return builders


def _kpis(con: Any, when: datetime, period: str) -> Any:
    from salesml.kpis import compute_kpis
    from serving.bi_export import KPI_GROUPINGS, fact_kpis

    unit: Literal["month", "quarter"] = "month" if period == "month" else "quarter"
    results = [compute_kpis(con, by=by, period=unit, as_of=when) for by in KPI_GROUPINGS]
    # Each grouping repeats the overall block: keep it once.
    for result in results[1:]:
        result["overall"] = {"periods": []}
    return fact_kpis(results)


def _scores(keys: Any) -> Any:
    from serving.bi_export import ExportError, fact_deal_scores
    from serving.runs import RunStore

    store = RunStore(Settings().home)
    run = store.latest()
    if run is None:
        raise ExportError("no score runs yet; score the pipeline first: salesml score --all")
    return fact_deal_scores(store.read(run), run.run_id, keys)


def _forecast(con: Any, when: datetime, freq: str, horizon: int) -> Any:
    import pandas as pd

    from features.history import load_history
    from salesml.models.registry import NoModelError, load_forecast_bundle
    from salesml.scoring import load_scorer
    from salesml.warehouse import data_span
    from serving.bi_export import fact_forecast
    from serving.forecast import forecast_rows

    fc = load_forecast_bundle("champion")
    try:
        win = load_scorer("champion")
    except NoModelError:
        win = None
    history = load_history(con, data_span(con, now_utc()))
    frames = [
        fact_forecast(
            forecast_rows(history, win, fc.bundle, freq, horizon, pd.Timestamp(when), by),
            when,
            freq,
            by,
            str(fc.version),
        )
        for by in (None, "team")
    ]
    # The by-team rows repeat the total: keep it once.
    rest = frames[1][frames[1]["segment_by"] != "total"]
    return pd.concat([frames[0], rest], ignore_index=True)

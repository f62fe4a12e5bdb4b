"""``salesml forecast``: registered on the CLI through the ``salesml.commands`` entry point."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich.table import Table

from salesml.cli import console, err, handle_errors, now_utc, print_json, resolve_as_of
from salesml.settings import Settings


class Freq(StrEnum):
    week = "week"
    month = "month"
    quarter = "quarter"


class By(StrEnum):
    team = "team"
    region = "region"
    product = "product"


def register(app: typer.Typer) -> None:
    """Add ``forecast`` to the salesml CLI."""
    app.command("forecast")(forecast)


@handle_errors
def forecast(
    freq: Annotated[Freq, typer.Option(help="Period length.")] = Freq.month,
    horizon: Annotated[int, typer.Option(min=1, max=104, help="Periods to forecast.")] = 3,
    by: Annotated[
        By | None, typer.Option(help="Also forecast each segment (reconciled to the total).")
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Forecast from the period holding this date (default: the data's latest event).",
        ),
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias of the models.")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON.")] = False,
) -> None:
    """Won revenue per period with 80 % and 95 % ranges, for the company and per segment."""
    import pandas as pd

    from features.history import load_history
    from salesml.models.registry import NoModelError, load_forecast_bundle
    from salesml.scoring import load_scorer
    from salesml.warehouse import connect, data_span
    from serving.forecast import forecast_rows

    with err.status("loading models and history…"):
        fc = load_forecast_bundle(alias)
        try:
            win = load_scorer(alias)
        except NoModelError:
            win = None  # a won-only history: the series models carry the forecast
        con = connect(Settings().warehouse_path, read_only=True)
        try:
            span = data_span(con, now_utc())
            history = load_history(con, span)
            when = pd.Timestamp(resolve_as_of(span, as_of))
        finally:
            con.close()
        rows = forecast_rows(
            history, win, fc.bundle, freq.value, horizon, when, by.value if by else None
        )
    if as_json:
        records = rows.assign(period_start=rows["period_start"].dt.strftime("%Y-%m-%d"))
        print_json(records.to_dict("records"))
        return
    table = Table(title=f"won revenue by {freq.value} (forecast version {fc.version})")
    headers = ("period", "segment", "forecast", "80% low", "80% high", "95% low", "95% high")
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < 2 else "right")
    for row in rows.itertuples(index=False):
        table.add_row(
            f"{row.period_start:%Y-%m-%d}",
            str(row.segment),
            *(_money(getattr(row, c)) for c in rows.columns[2:]),
        )
    console.print(table)


def _money(value: float) -> str:
    """Compact amounts for the table (the JSON keeps cents): 950, 12.3k, 2.14M."""
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:.3g}B"
    if size >= 1e6:
        return f"{value / 1e6:.3g}M"
    if size >= 1e4:
        return f"{value / 1e3:.3g}k"
    return f"{value:,.0f}"

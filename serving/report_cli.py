"""``salesml report``: registered on the CLI through the ``salesml.commands`` entry point."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from salesml.cli import console, err, handle_errors, now_utc, print_json, resolve_as_of, shown
from salesml.settings import Settings


def register(app: typer.Typer) -> None:
    """Add ``report`` to the salesml CLI."""
    app.command("report")(report)


@handle_errors
def report(
    out: Annotated[
        Path, typer.Option(help="Where to write the HTML report (self-contained, opens offline).")
    ] = Path("report.html"),
    team: Annotated[
        str | None, typer.Option(help="Only this team's deals, forecast, KPIs and reps.")
    ] = None,
    targets: Annotated[
        Path | None,
        typer.Option(
            help="CSV of targets: columns period (2026-03 or 2026-Q1), team (empty = company), "
            "target."
        ),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Report as of this date (default: the latest data; score runs made then are "
            "used, else the deals are scored now).",
        ),
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias of the models.")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Write the manager's forecast report: headline forecast vs target, forecast vs actual,
    pipeline coverage and stages, deals at risk, what changed, KPIs and coaching, model
    health."""
    summary, ctx_teams, known = write_report(out, team, targets, as_of, alias)
    if as_json:
        print_json(summary)
        return
    if not known:
        err.print(
            "[yellow]warning:[/] "
            + shown(
                f"no deals for team {team!r} (teams: {', '.join(ctx_teams)}); "
                "the report shows empty sections"
            ),
            highlight=False,
        )
    console.print(f"report written to {out} (as of {summary['as_of'][:10]})", highlight=False)


def write_report(
    out: Path,
    team: str | None = None,
    targets: Path | None = None,
    as_of: datetime | None = None,
    alias: str = "champion",
) -> tuple[dict[str, Any], list[str], bool]:
    """Render and write the report (also called by ``salesml score --report``).

    Returns the JSON summary, the teams in the data and whether ``team`` was found."""
    import logging

    import pandas as pd

    from features.history import load_history
    from salesml.models.registry import NoModelError, load_forecast_bundle
    from salesml.scoring import load_scorer
    from salesml.warehouse import connect, data_span
    from serving.report import load_targets, read_last_headline, render_report
    from serving.report.headline import write_last_headline
    from serving.runs import RunStore

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    if out.suffix.lower() not in (".html", ".htm"):
        from salesml.errors import ConfigError

        raise ConfigError(f"--out must end in .html, got {out.name!r}")
    goals = load_targets(targets) if targets is not None else None
    settings = Settings()
    with err.status("loading models and history…") as status:
        try:
            win = load_scorer(alias)
        except NoModelError:
            win = None
        try:
            forecast = load_forecast_bundle(alias)
        except NoModelError:
            forecast = None
        con = connect(settings.warehouse_path, read_only=True)
        try:
            span = data_span(con, now_utc())
            history = load_history(con, span)
            when = pd.Timestamp(resolve_as_of(span, as_of))
            status.update("scoring, forecasting and writing the report…")
            result = render_report(
                history,
                con,
                win,
                forecast,
                team=team,
                targets=goals,
                previous=read_last_headline(out, team),
                as_of=when,
                store=RunStore(settings.home),
            )
        finally:
            con.close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(result.html, encoding="utf-8")
    tmp.replace(out)
    saved = write_last_headline(out, team, result.headline)
    ctx = result.context
    summary = {
        "out": str(out),
        "headline_file": str(saved),
        "as_of": ctx.as_of.isoformat(),
        "team": team,
        "team_known": ctx.team_known,
        "scores": ctx.scores.source,
        "previous_scores": ctx.scores.previous_source,
        "win_model": win.version if win else None,
        "forecast_model": forecast.version if forecast else None,
        "headline": result.headline,
    }
    return summary, list(ctx.teams), bool(ctx.team_known)

"""``salesml score``: registered on the CLI through the ``salesml.commands`` entry point."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from salesml.cli import console, err, fail, handle_errors, now_utc, print_json, resolve_as_of
from salesml.settings import Settings


class EngineName(StrEnum):
    local = "local"
    spark = "spark"


runs_app = typer.Typer(help="Score runs: what the nightly batch wrote, and which one is served.")


def register(app: typer.Typer) -> None:
    """Add ``score`` and ``runs`` to the salesml CLI."""
    app.command("score")(score)
    app.add_typer(runs_app, name="runs")


@runs_app.command("list")
@handle_errors
def list_runs(
    as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False,
) -> None:
    """Every complete score run, oldest first; LATEST marks the one the API serves."""
    from serving.runs import RunStore

    store = RunStore(Settings().home)
    latest = store.latest_id()
    runs = [run.to_json() | {"latest": run.run_id == latest} for run in store.list_runs()]
    if as_json:
        print_json(runs)
        return
    if not runs:
        console.print("no score runs yet; score the pipeline first: salesml score --all")
        return
    table = Table(title=f"score runs in {store.root}")
    for header in ("run", "as of", "model", "deals", "scored", "copied", "written", ""):
        table.add_column(header)
    for run in runs:
        table.add_row(
            str(run["run_id"]),
            str(run["as_of"])[:10],
            str(run["model_version"]),
            f"{run['rows']:,}",
            f"{run['rescored']:,}",
            f"{run['copied']:,}",
            str(run["created_at"])[:19],
            "LATEST" if run["latest"] else "",
        )
    console.print(table)


@handle_errors
def score(
    all_deals: Annotated[
        bool, typer.Option("--all", help="Score every open deal (the default).")
    ] = False,
    changed: Annotated[
        bool,
        typer.Option(
            "--changed",
            help="Rescore only deals whose own records (deal, stage changes, activities, "
            "account) or model changed since the latest run, or whose row there is older than "
            "--max-age days; copy the rest.",
        ),
    ] = False,
    max_age: Annotated[
        float,
        typer.Option(
            "--max-age",
            min=0,
            help="With --changed: rescore rows scored more than this many days before as-of "
            "(refreshes time windows and rep statistics).",
        ),
    ] = 7.0,
    run_id: Annotated[
        str | None,
        typer.Option(
            "--run-id",
            help="Id of the score run to write (default: the as-of time, e.g. 20260331T000000). "
            "Rerunning an id replaces only that run.",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Also export the rows to this file (.csv or .parquet)."),
    ] = None,
    engine: Annotated[
        EngineName, typer.Option(help="Where to score: this process, or Apache Spark.")
    ] = EngineName.local,
    master: Annotated[
        str | None,
        typer.Option(help="Spark master URL with --engine spark (default: local[*])."),
    ] = None,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Score the deals open at this date (default: the latest data).",
        ),
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to score with.")] = "champion",
    report: Annotated[
        Path | None,
        typer.Option(help="Also write the manager's report (HTML) from this run."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Score every deal open at a date with the champion and write an immutable score run
    (and, with --report, the manager's report from it: the nightly batch)."""
    import pandas as pd

    from features.history import load_history
    from salesml.scoring import load_scorer
    from salesml.warehouse import connect, data_span
    from serving.batch import run_batch, write_scores
    from serving.runs import RunStore, check_run_id, default_run_id

    if all_deals and changed:
        raise fail("--all and --changed exclude each other: pick one")
    if master is not None and engine != EngineName.spark:
        raise fail("--master needs --engine spark")
    if run_id is not None:
        check_run_id(run_id)
    settings = Settings()
    store = RunStore(settings.home)
    with err.status("loading model and history…") as status:
        model = load_scorer(alias)
        con = connect(settings.warehouse_path, read_only=True)
        try:
            span = data_span(con, now_utc())
            history = load_history(con, span, compact=True)  # read by the batch alone
            when = pd.Timestamp(resolve_as_of(span, as_of))
        finally:
            con.close()
        result = run_batch(
            history,
            model,
            when,
            store,
            run_id=run_id or default_run_id(when),
            changed=changed,
            max_age_days=max_age,
            engine=engine.value,
            master=master,
            progress=lambda msg: status.update(msg + "…"),
            publish=False,
        )
        path = write_scores(store, result.run, out) if out is not None else None
        # Every output is written: only now may the API serve the run.
        published = store.advance_latest(result.run.run_id)
    report_summary = None
    if report is not None:
        from serving.report_cli import write_report

        with err.status("writing the report…"):
            report_summary, _, _ = write_report(report, as_of=when.to_pydatetime(), alias=alias)
    _say_score(result, when, path, report, report_summary, published, store, as_json)


def _say_score(
    result: Any,
    when: Any,
    path: Path | None,
    report: Path | None,
    report_summary: dict[str, Any] | None,
    published: bool,
    store: Any,
    as_json: bool,
) -> None:
    """What ``salesml score`` prints: the run, where it went, and whether LATEST moved."""
    run = result.run
    summary = {
        **run.to_json(),
        "out": str(path) if path else None,
        "rows": run.rows,
        "rescored": result.rescored,
        "copied": result.copied,
        "report": report_summary["out"] if report_summary else None,
        "latest": published,
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"score run {run.run_id}: {run.rows:,} open deals as of {when:%Y-%m-%d} "
        f"({result.rescored:,} scored, {result.copied:,} unchanged and copied) with model "
        f"version {run.model_version} on {run.engine}: {run.path}"
        + (f"; exported to {path}" if path else "")
        + (f"; report {report}" if report is not None else ""),
        highlight=False,
    )
    if not published:
        latest = store.latest()
        err.print(
            f"[yellow]note:[/] LATEST stays at run {latest.run_id if latest else '?'} (as of a "
            "later date): the API keeps serving it; this run is kept beside it",
            highlight=False,
        )

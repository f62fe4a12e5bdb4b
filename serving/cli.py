"""``salesml score``: registered on the CLI through the ``salesml.commands`` entry point."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from salesml.cli import console, err, handle_errors, print_json
from salesml.settings import Settings


def register(app: typer.Typer) -> None:
    """Add ``score`` to the salesml CLI."""
    app.command("score")(score)


@handle_errors
def score(
    out: Annotated[Path, typer.Option(help="Where to write the scores (.csv or .parquet).")],
    all_deals: Annotated[
        bool, typer.Option("--all", help="Score every open deal (the default).")
    ] = True,
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Score the deals open at this date (default: the latest data).",
        ),
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias to score with.")] = "champion",
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
) -> None:
    """Score every deal open at a date with the registered champion model."""
    import pandas as pd

    from features.history import load_history
    from salesml.tracking import load_win_bundle
    from salesml.warehouse import connect
    from serving.batch import score_open_deals, write_scores

    settings = Settings()
    with err.status("loading model and history…"):
        model = load_win_bundle(alias)
        con = connect(settings.warehouse_path, read_only=True)
        try:
            history = load_history(con)
        finally:
            con.close()
        when = pd.Timestamp(as_of) if as_of is not None else history.exported_at
        rows = score_open_deals(history, model, when)
        path = write_scores(rows, out)
    summary = {
        "out": str(path),
        "rows": len(rows),
        "model_version": model.version,
        "as_of": when.isoformat(),
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"scored {len(rows):,} open deals as of {when:%Y-%m-%d} with model version "
        f"{model.version}: {path}",
        highlight=False,
    )

"""``salesml train``: registered on the CLI through the ``salesml.commands`` entry point."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from salesml.cli import console, err, handle_errors, print_json
from salesml.settings import Settings


def register(app: typer.Typer) -> None:
    """Add ``train`` to the salesml CLI."""
    app.command("train")(train)


@handle_errors
def train(
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Train on what was known at this date (default: the latest data).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed for LightGBM.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train the win-probability model, evaluate it against baselines, register it in MLflow."""
    import logging

    import pandas as pd

    from features.history import load_history
    from salesml.warehouse import connect
    from training.data import truncate_history
    from training.tracking import log_and_register
    from training.win import train_win_model

    # MLflow narrates every step on stderr; the summary below is what a user needs.
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    settings = Settings()
    with err.status("loading history…") as status:
        con = connect(settings.warehouse_path, read_only=True)
        try:
            history = load_history(con)
        finally:
            con.close()
        if as_of is not None:
            history = truncate_history(history, pd.Timestamp(as_of))
        status.update("building features and training…")
        result = train_win_model(history, seed=seed)
        status.update("logging to MLflow…")
        reg = log_and_register(result, as_of.date().isoformat() if as_of else None)
    out: dict[str, Any] = {
        "win_model": {
            "version": reg.version,
            "alias": reg.alias,
            "promotion_reason": reg.reason,
            "little_signal": result.little_signal,
            "calibrator": result.bundle.calibrator.name,
            "holdout": result.holdout_metrics,
            "baselines": result.baseline_metrics,
            "beats_baselines": result.beats_baselines,
            "data_window": result.split.window(),
            "run_id": reg.run_id,
        }
    }
    if as_json:
        print_json(out)
        return
    win = out["win_model"]
    console.print(
        f"win model version {win['version']} registered as [bold]{win['alias']}[/] "
        f"({win['promotion_reason']})",
        highlight=False,
    )
    if result.little_signal:
        console.print(
            "[yellow]little signal:[/] the model predicts the base rate; see the model card",
            highlight=False,
        )
    table = Table(title="holdout metrics (lower is better for brier, log_loss, ece)")
    columns = ("auc", "pr_auc", "brier", "log_loss", "ece")
    table.add_column("")
    for column in columns:
        table.add_column(column, justify="right")
    for name, metrics in [("model", win["holdout"]), *win["baselines"].items()]:
        table.add_row(
            name, *("—" if metrics.get(c) is None else f"{metrics[c]:.4f}" for c in columns)
        )
    console.print(table)

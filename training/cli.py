"""``salesml train``: registered on the CLI through the ``salesml.commands`` entry point."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from salesml.cli import console, err, handle_errors, now_utc, print_json, resolve_as_of
from salesml.errors import ConfigError
from salesml.settings import Settings


def register(app: typer.Typer) -> None:
    """Add ``train`` to the salesml CLI."""
    app.command("train")(train)
    app.command("backtest")(backtest)


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
    models: Annotated[
        str,
        typer.Option(help="Which models to train, comma-separated: win, timing, forecast."),
    ] = "win,timing,forecast",
    backtest_origins: Annotated[
        int,
        typer.Option(
            min=2,
            help="Backtest origins per period length for the blend (salesml backtest uses "
            "every one of the last ~16 months; more is steadier but slower).",
        ),
    ] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Train the win, close-timing and revenue-forecast models, evaluate them against
    baselines and backtests, and register them in MLflow.

    A history without a pipeline (a won-only order export) gets the forecast alone."""
    from features.build import build_snapshots, weekly_as_of_dates
    from training.data import NotEnoughDataError
    from training.revenue.fit import train_forecast
    from training.revenue.register import log_forecast
    from training.timing.fit import train_timing_model
    from training.timing.register import log_timing
    from training.win.fit import train_win_model
    from training.win.register import log_and_register, open_store_in_background

    _quiet_mlflow()
    wanted = {m.strip() for m in models.split(",") if m.strip()}
    unknown = wanted - {"win", "timing", "forecast"}
    if unknown or not wanted:
        raise ConfigError(
            f"--models takes win, timing and/or forecast (comma-separated), got {models!r}"
        )
    if "timing" in wanted and "win" not in wanted:
        raise ConfigError("--models timing needs win too: the timing model travels in its bundle")
    out: dict[str, Any] = {}
    label = as_of.date().isoformat() if as_of else None
    with err.status("loading history…") as status:
        history = _history(as_of)
        result, snapshots = None, None
        if "win" in wanted:
            store = open_store_in_background()  # MLflow's set-up runs while LightGBM trains
            status.update("training the win model…")
            # Built once per history: the win and timing models read the same snapshots.
            snapshots = build_snapshots(history, weekly_as_of_dates(history))
            try:
                result = train_win_model(history, seed=seed, snapshots=snapshots)
            except NotEnoughDataError as exc:
                out["win_model"] = {"skipped": str(exc)}
        if result is not None:
            timing = None
            if "timing" in wanted:
                status.update("training the close-timing model…")
                timing = train_timing_model(history, seed=seed, snapshots=snapshots)
            status.update("logging to MLflow…")
            reg = log_and_register(
                result, label, timing.bundle if timing is not None else None, store=store
            )
            out["win_model"] = _win_summary(result, reg)
            if timing is not None:
                log_timing(reg.run_id, timing)
                out["timing_model"] = {
                    "holdout": timing.holdout_metrics,
                    "baselines": timing.baseline_metrics,
                    "conformal": timing.bundle.metadata.get("conformal"),
                }
        if "forecast" in wanted:
            status.update("backtesting and fitting the revenue forecast…")
            forecast = train_forecast(
                history, seed=seed, snapshots=snapshots, max_origins=backtest_origins
            )
            freg = log_forecast(forecast, label)
            out["forecast_model"] = {
                "version": freg.version,
                "alias": freg.alias,
                "backtest": forecast.metrics,
                "fallbacks": len(forecast.fallbacks),
                "served": forecast.bundle.metadata.get("served", {}),
                "run_id": freg.run_id,
            }
    if as_json:
        print_json(out)
        return
    _print_summary(out, result)


def _quiet_mlflow() -> None:
    import logging
    import warnings

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    # MLflow's signature hints (integer columns in the input example) are for MLflow users.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")


@handle_errors
def backtest(
    as_of: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%d"], help="Backtest the history known at this date."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Rolling-origin backtests of the revenue forecast: WAPE, MASE and interval coverage of
    the pipeline, the time series, the blend, seasonal naive and default Prophet (logged to
    MLflow with a plot, and registered like salesml train does)."""
    import logging

    from training.revenue.fit import train_forecast
    from training.revenue.register import log_forecast

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    with err.status("backtesting (every segment, with default Prophet)…"):
        history = _history(as_of)
        forecast = train_forecast(history, seed=seed, with_default_prophet=True)
        freg = log_forecast(forecast, as_of.date().isoformat() if as_of else None)
    out = {"version": freg.version, "run_id": freg.run_id, "backtest": forecast.metrics}
    if as_json:
        print_json(out)
        return
    table = Table(title="backtests (cross-fitted; lower WAPE/MASE is better)")
    for column in ("freq", "component", "WAPE total", "WAPE segments", "MASE", "80 % cover"):
        table.add_column(column, justify="right" if column != "component" else "left")
    for freq, comps in forecast.metrics.items():
        for comp, m in comps.items():
            table.add_row(
                freq,
                comp,
                *(
                    _fmt(m.get(k))
                    for k in ("wape_total", "wape_segments", "mase_total", "coverage_80_all")
                ),
            )
    console.print(table)


def _flag_timing(model: dict[str, Any], stage_median: dict[str, Any]) -> None:
    """Warn when the close-timing model misses by more than the stage-median baseline (the
    report's model health says the same)."""
    ours, theirs = model.get("mae_days"), stage_median.get("mae_days")
    if ours is None or theirs is None or not ours > theirs:
        return
    err.print(
        "[yellow]warning:[/] the close-timing model misses by "
        f"{ours:.0f} days on average on the holdout, the stage-median baseline by {theirs:.0f}: "
        "read its close dates with care (the report's model health flags it too)",
        highlight=False,
    )


def _fmt(value: float | None) -> str:
    """A metric as printed: "—" where the data leaves it undefined (None or NaN)."""
    return "—" if value is None or math.isnan(value) else f"{value:.3f}"


def _history(as_of: datetime | None) -> Any:
    import pandas as pd

    from features.history import load_history
    from salesml.warehouse import connect, data_span
    from training.data import truncate_history

    settings = Settings()
    con = connect(settings.warehouse_path, read_only=True)
    try:
        span = data_span(con, now_utc())
        history = load_history(con, span)
        resolve_as_of(span, as_of)  # warns when as_of lies outside the data
    finally:
        con.close()
    if as_of is not None:
        history = truncate_history(history, pd.Timestamp(as_of))
    return history


def _win_summary(result: Any, reg: Any) -> dict[str, Any]:
    return {
        "version": reg.version,
        "alias": reg.alias,
        "promotion_reason": reg.reason,
        "little_signal": result.little_signal,
        "served": result.served,
        "dropped_features": result.dropped,
        "flat_columns": result.flat,
        "refit": result.refit,
        "calibrator": result.bundle.calibrator.name,
        "holdout": result.holdout_metrics,
        "baselines": result.baseline_metrics,
        "beats_baselines": result.beats_baselines,
        "data_window": result.split.window(),
        "run_id": reg.run_id,
    }


def _print_summary(out: dict[str, Any], result: Any) -> None:
    win = out.get("win_model", {"skipped": "not asked for (--models)"})
    if "skipped" in win:
        console.print(f"[yellow]win and timing models skipped:[/] {win['skipped']}")
    else:
        console.print(
            f"win model version {win['version']} registered as [bold]{win['alias']}[/] "
            f"({win['promotion_reason']})",
            highlight=False,
        )
        if result is not None and result.little_signal:
            console.print(
                "[yellow]little signal:[/] the model predicts the base rate; see the model card",
                highlight=False,
            )
        if result is not None and result.served == "plain_lightgbm":
            console.print(
                "[yellow]plain peer served:[/] a default LightGBM on the deal-table columns beat "
                "the full model on this holdout, so it is served (calibrated, with drivers and "
                "actions); see the model card",
                highlight=False,
            )
        if win.get("dropped_features"):
            console.print(
                "features dropped (no significant signal on validation): "
                + ", ".join(win["dropped_features"]),
                highlight=False,
            )
        table = Table(title="holdout metrics (lower is better for brier, log_loss, ece)")
        columns = ("auc", "pr_auc", "brier", "log_loss", "ece")
        table.add_column("")
        for column in columns:
            table.add_column(column, justify="right")
        for name, metrics in [("model", win["holdout"]), *win["baselines"].items()]:
            table.add_row(name, *(_fmt(metrics.get(c)) for c in columns))
        console.print(table)
        timing_model = out.get("timing_model", {})
        timing = timing_model.get("holdout", {})
        closed_only = timing_model.get("baselines", {}).get("closed_only", {})
        console.print(
            f"close timing: 80 % interval covers {_fmt(timing.get('coverage_80'))} of won deals "
            f"on the holdout; mean absolute error {_fmt(timing.get('mae_days'))} days; on long "
            f"cycles (top quarter) mean error {_fmt(timing.get('mean_error_days_long'))} days "
            f"against {_fmt(closed_only.get('mean_error_days_long'))} for a model trained on "
            "closed deals only",
            highlight=False,
        )
        _flag_timing(timing, timing_model.get("baselines", {}).get("stage_median", {}))
    if "forecast_model" not in out:
        return
    fc = out["forecast_model"]
    month = fc["backtest"].get("month", {})
    blend, naive = month.get("blend", {}), month.get("seasonal_naive", {})
    console.print(
        f"revenue forecast version {fc['version']} registered as [bold]{fc['alias']}[/]; "
        f"monthly backtest WAPE {_fmt(blend.get('wape_total'))} (seasonal naive "
        f"{_fmt(naive.get('wape_total'))}), 80 % coverage {_fmt(blend.get('coverage_80_all'))}",
        highlight=False,
    )
    for freq, served in (fc.get("served") or {}).items():
        console.print(f"revenue forecast, {freq}: {served['note']}", highlight=False)

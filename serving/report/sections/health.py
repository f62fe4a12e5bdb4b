"""Model health: the win model's holdout metrics against its baselines, calibration and close
timing; the revenue forecast's backtests and data freshness are in ``sections.freshness``."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from salesml.models.evaluation import binary_metrics, reliability_curve
from salesml.scoring import BASIS_BEYOND
from serving.report import charts
from serving.report import format as fmt
from serving.report.baselines import WIN_BASELINES, Flag, timing_flag, win_flag
from serving.report.data import Context, calibration_sample, registry_metrics
from serving.report.sections.base import Section, flag_views, no_team
from serving.report.sections.freshness import forecast_health, freshness

BASELINES = WIN_BASELINES
METRICS = (("auc", "AUC ↑"), ("brier", "Brier ↓"), ("log_loss", "log loss ↓"), ("ece", "ECE ↓"))


def metric_rows(win_metrics: dict[str, float], tag: dict[str, Any]) -> list[list[str]]:
    """The win model's row (first), then each baseline that was logged."""
    model = {m: win_metrics.get(f"holdout_{m}", tag.get(m)) for m, _ in METRICS}
    rows = [["win model", *(fmt.number(model[m], 3) for m, _ in METRICS)]]
    for key, label in BASELINES.items():
        values = [win_metrics.get(f"baseline_{key}_{m}") for m, _ in METRICS]
        if all(fmt.missing(v) for v in values):
            continue
        rows.append([label, *(fmt.number(v, 3) for v in values)])
    return rows


def _calibration(sample: pd.DataFrame, described: str) -> charts.Chart:
    curve = reliability_curve(sample["won"], sample["p"], n_bins=10)
    fig = go.Figure()
    fig.add_scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        name="perfectly calibrated",
        line={"color": charts.MUTED, "dash": "dot"},
        hoverinfo="skip",
    )
    fig.add_scatter(
        x=curve["mean_predicted"],
        y=curve["observed_rate"],
        mode="lines+markers",
        name="win model",
        line={"color": charts.BLUE},
        error_y={
            "type": "data",
            "symmetric": False,
            "array": curve["upper"] - curve["observed_rate"],
            "arrayminus": curve["observed_rate"] - curve["lower"],
        },
        customdata=curve["count"],
        hovertemplate="predicted %{x:.0%}, won %{y:.0%} (%{customdata} snapshots)<extra></extra>",
    )
    charts.layout(fig, height=320)
    fig.update_xaxes(title_text="predicted win probability", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="observed win rate", range=[0, 1], tickformat=".0%")
    caption = (
        f"Calibration: {described}. Bars: 95% intervals. Points near the diagonal mean "
        "a 70% score wins about 70% of the time."
    )
    return charts.chart(fig, "chart-calibration", caption)


def beyond_ages_flag(open_deals: pd.DataFrame) -> Flag | None:
    """Open deals older than any training deal was when it closed (``score_basis``): their
    win probabilities rest on no observed outcome (None: there are none)."""
    if "score_basis" not in open_deals:
        return None
    n = int((open_deals["score_basis"] == BASIS_BEYOND).sum())
    if n == 0:
        return None
    deals = "deal is" if n == 1 else "deals are"
    return Flag(
        "win",
        f"{n} open {deals} older than any training deal was when it closed: no outcome was "
        "observed at that age, so their win probabilities are extrapolations (score_basis "
        f"{BASIS_BEYOND})",
        "warn",
    )


def _timing(logged: dict[str, float]) -> list[list[str]]:
    """Close timing against the stage-median baseline ([] when the metrics were not logged)."""
    timing = {
        k.removeprefix("timing_"): v
        for k, v in logged.items()
        if k.startswith("timing_") and not k.startswith("timing_baseline_")
    }
    if not timing:
        return []
    return [
        ["timing model", fmt.pct(timing.get("coverage_80")), fmt.days(timing.get("mae_days"))],
        [
            "stage median (baseline)",
            fmt.DASH,
            fmt.days(logged.get("timing_baseline_stage_median_mae_days")),
        ],
    ]


def health(ctx: Context) -> Section:
    if (blocked := no_team(ctx, "health")) is not None:
        return blocked
    win = ctx.win
    view: dict[str, Any] = {
        "win": None,
        "freshness": freshness(ctx),
        "forecast": forecast_health(ctx),
    }
    if win is None:
        return Section("health", "health.html", view)
    logged = ctx.win_metrics if ctx.win_metrics is not None else registry_metrics(win)
    sample, described = calibration_sample(ctx.history, win, ctx.team, ctx.teams_of_deals)
    live: dict[str, Any] = {}
    if len(sample) and sample["won"].nunique() > 1:
        live = binary_metrics(sample["won"], sample["p"])
    plotted = len(sample) >= 20 and sample["won"].nunique() > 1
    view["win"] = {
        "version": fmt.text(win.version),
        "alias": fmt.text(win.alias),
        "little_signal": bool(win.bundle.metadata.get("little_signal")),
        "rows": metric_rows(logged, live if not logged else {}),
        "logged": bool(logged),
        "calibration": _calibration(sample, described) if plotted else None,
        "live": {m: fmt.number(live.get(m), 3) for m in ("auc", "brier", "ece")},
        "described": described,
    }
    view["win"]["flags"] = flag_views([win_flag(logged), beyond_ages_flag(ctx.open_deals)])
    timing = _timing(logged)
    view["win"]["timing"] = bool(timing) or win.timing is not None
    view["win"]["timing_rows"] = timing
    view["win"]["timing_flags"] = flag_views([timing_flag(logged)])
    return Section("health", "health.html", view)

"""Pipeline coverage: open and weighted pipeline, coverage of the quarter's gap, and the
quarter's won, expected, forecast, target and pipeline side by side."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from salesml.models.revenue.periods import period_start
from serving.report import charts
from serving.report import format as fmt
from serving.report.data import Context
from serving.report.sections.base import (
    Section,
    estimated_mask,
    estimated_note,
    model_caveats,
    no_team,
    short,
    won_in_period,
)
from serving.report.targets import target_for

Bar = tuple[str, float, str, dict[str, Any] | None]


def kpi_block(ctx: Context, kpis: dict[str, Any] | None) -> dict[str, Any] | None:
    """The company's (or the team's) block of a ``compute_kpis`` result."""
    if kpis is None:
        return None
    if ctx.team is None:
        block = kpis.get("overall")
        return block if isinstance(block, dict) else None
    for group in kpis.get("groups", []):
        if str(group.get("group")) == ctx.team:
            return dict(group)
    return None


def gap_tone(pipeline: float, gap: float) -> str:
    """Good at 3× the quarter's gap (the usual rule of thumb), bad below 1×."""
    if gap == 0 or pipeline >= 3 * gap:
        return "good"
    return "warn" if pipeline >= gap else "bad"


def _bars(ctx: Context, won: float, in_quarter: float | None, pipeline: float) -> list[Bar]:
    start = period_start(ctx.as_of, "quarter")
    bars: list[Bar] = [("won so far", won, charts.BLUE, None)]
    if in_quarter is not None:
        bars.append(("won + expected from pipeline", won + in_quarter, charts.BLUE_LIGHT, None))
    quarter = ctx.forecasts.get("quarter")
    if quarter is not None and (quarter["period_start"] == start).any():
        row = quarter[quarter["period_start"] == start].iloc[0]
        spread = {
            "type": "data",
            "symmetric": False,
            "array": [float(row["upper_80"] - row["forecast"])],
            "arrayminus": [float(row["forecast"] - row["lower_80"])],
        }
        bars.append(("quarter forecast (80% range)", float(row["forecast"]), charts.AMBER, spread))
    bars.append(("open pipeline (unweighted)", pipeline, charts.MUTED, None))
    return bars


def _chart(ctx: Context, bars: list[Bar], target: float | None) -> charts.Chart:
    fig = go.Figure()
    for name, value, color, error in bars:
        fig.add_bar(
            x=[name],
            y=[value],
            marker_color=color,
            showlegend=False,
            error_y=error,
            hovertemplate="%{x}: %{y:,.0f}<extra></extra>",
        )
    fig.update_layout(barmode="overlay")
    if target is not None:
        fig.add_hline(
            y=target,
            line_dash="dash",
            line_color=charts.RED,
            annotation_text="target",
            annotation_position="top left",
        )
    charts.layout(fig, height=300, money_axis=charts.currency_prefix(ctx.currency))
    quarter = fmt.quarter_label(period_start(ctx.as_of, "quarter"))
    caption = (
        f"{quarter}: revenue won so far, plus what open deals are expected to "
        "bring in before the quarter ends (Σ amount × probability of closing won this quarter), "
        "against the forecast, the target and the whole open pipeline."
    )
    return charts.chart(fig, "chart-coverage", caption)


def coverage(ctx: Context) -> Section:
    if (blocked := no_team(ctx, "coverage")) is not None:
        return blocked
    deals = ctx.open_deals
    if deals.empty:
        return Section("coverage", "coverage.html", {"empty": True})
    amount = deals["amount"].fillna(0.0)
    p = deals["win_probability"] if "win_probability" in deals else pd.Series(np.nan, deals.index)
    weighted = float((amount * p.fillna(0.0)).sum())
    in_quarter = (
        float((amount * deals["p_close_this_quarter"].fillna(0.0)).sum())
        if "p_close_this_quarter" in deals
        else None
    )
    pipeline = float(amount.sum())
    estimated = float(amount[estimated_mask(deals)].sum())
    known = bool(deals["amount"].notna().any())  # else: no amount and no list price at all
    start = period_start(ctx.as_of, "quarter")
    won = won_in_period(ctx, "quarter")
    target = target_for(ctx.targets, "quarter", start, ctx.team)
    block = kpi_block(ctx, ctx.kpis_team) or {}
    view: dict[str, Any] = {
        "empty": False,
        "pipeline": short(ctx, pipeline if known else None),
        "deals": f"{len(deals):,}",
        "estimated": estimated_note(ctx, pipeline, estimated),
        "weighted": short(ctx, weighted if known and p.notna().any() else None),
        "weighted_share": fmt.pct(weighted / pipeline if pipeline and p.notna().any() else None),
        "no_amounts": not known,
        "coverage": fmt.ratio(block.get("pipeline_coverage")),
        "gap": None,
        "chart": _chart(ctx, _bars(ctx, won, in_quarter, pipeline), target),
        "caveats": model_caveats(ctx, "win", "timing"),
    }
    if target is not None:
        gap = max(target - won, 0.0)
        view["gap"] = {
            "quarter": fmt.quarter_label(start),
            "ratio": fmt.ratio(pipeline / gap) if gap else "target met",
            "target": short(ctx, target),
            "won": short(ctx, won),
            "to_go": short(ctx, gap),
            "tone": gap_tone(pipeline, gap),
        }
    return Section("coverage", "coverage.html", view)

"""Pipeline by stage: open deals per stage in funnel order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from serving.report import charts
from serving.report import format as fmt
from serving.report.data import Context
from serving.report.sections.base import (
    Section,
    estimated_mask,
    estimated_note,
    model_caveats,
    money,
    no_team,
)

CAPTION = (
    "Open pipeline by stage (in funnel order): amount, and amount "
    "weighted by each deal's win probability."
)


def by_stage(ctx: Context) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The open deals (with ``p`` and ``weighted``) and their sums per stage in funnel order."""
    deals = ctx.open_deals
    frame = deals.assign(
        p=deals.get("win_probability", np.nan),
    )
    frame["weighted"] = frame["amount"] * frame["p"]
    grouped = frame.groupby("stage", sort=False).agg(
        deals=("deal_id", "size"),
        amount=("amount", lambda a: a.sum(min_count=1)),
        weighted=("weighted", lambda w: w.sum(min_count=1)),
        p=("p", "mean"),
        days=("days_in_stage", "median") if "days_in_stage" in frame else ("p", "size"),
    )
    order = []
    if ctx.win is not None:
        order = [str(s) for s in ctx.win.bundle.explainer.get("stage_order", [])]
    rank = {s: i for i, s in enumerate(order)}
    grouped = grouped.loc[sorted(grouped.index, key=lambda s: (rank.get(s, len(rank)), s))]
    return frame, grouped


def _chart(ctx: Context, grouped: pd.DataFrame) -> charts.Chart:
    fig = go.Figure()
    fig.add_bar(
        x=grouped.index,
        y=grouped["amount"],
        name="open amount",
        marker_color=charts.BLUE_LIGHT,
        customdata=grouped["deals"],
        hovertemplate="%{x}: %{y:,.0f} in %{customdata} deals<extra></extra>",
    )
    fig.add_bar(
        x=grouped.index,
        y=grouped["weighted"],
        name="weighted by win probability",
        marker_color=charts.BLUE,
        hovertemplate="%{x}: %{y:,.0f}<extra>weighted</extra>",
    )
    charts.layout(fig, height=300, money_axis=charts.currency_prefix(ctx.currency))
    fig.update_layout(barmode="group")
    return charts.chart(fig, "chart-stages", CAPTION)


def stages(ctx: Context) -> Section:
    if (blocked := no_team(ctx, "stages")) is not None:
        return blocked
    if ctx.open_deals.empty:
        return Section("stages", "stages.html", {"empty": True})
    frame, grouped = by_stage(ctx)
    has_days = "days_in_stage" in frame
    rows = [
        [
            fmt.text(stage),
            fmt.number(g.deals),
            money(ctx, g.amount),
            money(ctx, g.weighted),
            fmt.pct(g.p),
            fmt.days(g.days) if has_days else fmt.DASH,
        ]
        for stage, g in grouped.iterrows()
    ]
    total = [
        "all stages",
        fmt.number(grouped["deals"].sum()),
        money(ctx, grouped["amount"].sum(min_count=1)),
        money(ctx, grouped["weighted"].sum(min_count=1)),
        fmt.pct(frame["p"].mean()),
        "",
    ]
    estimated = float(frame["amount"][estimated_mask(frame)].sum())
    total_amount = float(frame["amount"].sum())
    view = {
        "empty": False,
        "chart": _chart(ctx, grouped),
        "rows": [*rows, total],
        "caveats": model_caveats(ctx, "win"),
        "estimated": estimated_note(ctx, total_amount, estimated),
    }
    return Section("stages", "stages.html", view)

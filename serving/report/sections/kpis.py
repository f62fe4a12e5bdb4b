"""Rep and team KPIs, and coaching suggestions."""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

from serving.report import charts
from serving.report import format as fmt
from serving.report.data import Context
from serving.report.sections.base import Section, money, no_team, owner_teams, rep_name
from serving.report.sections.coaching import coaching

KPI_HEADERS = [
    "",
    "revenue",
    "growth (last quarter)",
    "win rate",
    "AOV",
    "median cycle",
    "CAC",
    "NPS",
    "open pipeline",
]


def kpi_row(ctx: Context, name: str, block: dict[str, Any]) -> list[str]:
    return [
        name,
        money(ctx, block.get("revenue")),
        fmt.signed_pct(block.get("revenue_growth")),
        fmt.pct(block.get("win_rate")),
        money(ctx, block.get("average_order_value")),
        fmt.days(block.get("median_cycle_days")),
        money(ctx, block.get("cac")),
        fmt.number(block.get("nps")),
        money(ctx, block.get("open_pipeline")),
    ]


def _chart(ctx: Context, series: list[dict[str, Any]]) -> charts.Chart:
    """Won revenue of the last six complete quarters per team (per rep of the team)."""
    fig = go.Figure()
    for g in series:
        periods = [p for p in g.get("periods", []) if p.get("complete")][-6:]
        name = (
            ctx.names.get(str(g.get("group")), str(g.get("group")))
            if ctx.team
            else str(g.get("group"))
        )
        fig.add_bar(
            x=[fmt.quarter_label(p["period_start"]) for p in periods],
            y=[p.get("revenue") for p in periods],
            name=name,
            customdata=[p.get("win_rate") for p in periods],
            hovertemplate="%{x}: %{y:,.0f} (win rate %{customdata:.0%})<extra>" + name + "</extra>",
        )
    charts.layout(fig, height=300, money_axis=charts.currency_prefix(ctx.currency))
    fig.update_layout(barmode="group")
    caption = "Won revenue in the last six complete quarters, per " + (
        "rep of the team." if ctx.team else "team."
    )
    return charts.chart(fig, "chart-kpis", caption)


def kpis(ctx: Context) -> Section:
    if (blocked := no_team(ctx, "kpis")) is not None:
        return blocked
    if ctx.kpis_team is None or ctx.kpis_rep is None:
        return Section("kpis", "kpis.html", {"note": ctx.kpi_note or "No KPIs."})
    rep_team = owner_teams(ctx)
    overall = ctx.kpis_team.get("overall", {})
    groups = [
        g
        for g in ctx.kpis_team.get("groups", [])
        if ctx.team is None or str(g.get("group")) == ctx.team
    ]
    team_rows = [kpi_row(ctx, fmt.text(g.get("group")), g) for g in groups]
    if ctx.team is None:
        team_rows.insert(0, kpi_row(ctx, "company", overall))
    reps = [
        g
        for g in ctx.kpis_rep.get("groups", [])
        if ctx.team is None or rep_team.get(str(g.get("group"))) == ctx.team
    ]
    view = {
        "note": None,
        "team": ctx.team,
        "as_of": ctx.as_of,
        "company_cac": money(ctx, overall.get("cac")),
        "chart": _chart(ctx, reps if ctx.team is not None else groups),
        "headers": KPI_HEADERS,
        "team_rows": team_rows,
        "company_row": ctx.team is None,
        "rep_rows": [kpi_row(ctx, rep_name(ctx, g.get("group")), g) for g in reps],
        "tips": coaching(ctx),
    }
    return Section("kpis", "kpis.html", view)

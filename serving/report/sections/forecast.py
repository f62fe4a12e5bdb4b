"""Forecast vs actual: monthly won revenue and the forecast with its ranges."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from salesml.models.revenue.periods import period_range, period_start
from serving.report import charts
from serving.report import format as fmt
from serving.report.data import ACTUAL_MONTHS, Context, won_by_period
from serving.report.sections.base import Section, model_caveats, money, no_team

CAPTION = (
    "Monthly won revenue (bars) and the forecast for this month and the next two, with "
    "its 80% and 95% ranges."
)


def _add_forecast(fig: go.Figure, rows: pd.DataFrame, previous: Any) -> None:
    """The forecast line with its 80% and 95% bands, and the last report's forecast."""
    x = list(rows["period_start"])
    for low, high, name, alpha in (
        ("lower_95", "upper_95", "95% range", 0.15),
        ("lower_80", "upper_80", "80% range", 0.3),
    ):
        fig.add_scatter(
            x=x, y=rows[high], mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"
        )
        fig.add_scatter(
            x=x,
            y=rows[low],
            mode="lines",
            line={"width": 0},
            fill="tonexty",
            fillcolor=f"rgba(217,119,6,{alpha})",
            name=name,
            hoverinfo="skip",
        )
    fig.add_scatter(
        x=x,
        y=rows["forecast"],
        mode="lines+markers",
        name="forecast",
        line={"color": charts.AMBER, "width": 2},
        customdata=np.stack([rows["lower_80"], rows["upper_80"]], axis=-1),
        hovertemplate="%{x|%b %Y}: %{y:,.0f} (80%: %{customdata[0]:,.0f} – "
        "%{customdata[1]:,.0f})<extra>forecast</extra>",
    )
    if isinstance(previous, dict) and previous.get("period_start"):
        fig.add_scatter(
            x=[pd.Timestamp(previous["period_start"])],
            y=[previous.get("forecast")],
            mode="markers",
            name="last report's forecast",
            marker={"symbol": "diamond-open", "size": 11, "color": charts.INK},
        )


def _table(ctx: Context, rows: pd.DataFrame, actual: pd.Series) -> list[list[str]]:
    current = period_start(ctx.as_of, "month")
    return [
        [
            fmt.month_label(r.period_start),
            money(ctx, r.forecast),
            f"{money(ctx, r.lower_80)} – {money(ctx, r.upper_80)}",
            f"{money(ctx, r.lower_95)} – {money(ctx, r.upper_95)}",
            money(ctx, actual.get(r.period_start))
            if pd.Timestamp(str(r.period_start)) <= current
            else "",
        ]
        for r in rows.itertuples()
    ]


def forecast_vs_actual(ctx: Context) -> Section:
    if (blocked := no_team(ctx, "forecast")) is not None:
        return blocked
    rows = ctx.forecasts.get("month")
    actual = won_by_period(ctx.team_deals(), "month", ctx.as_of)
    current = period_start(ctx.as_of, "month")
    first = period_range(current - pd.DateOffset(months=ACTUAL_MONTHS), 1, "month")[0]
    actual = actual[(actual.index >= first)]
    if actual.empty and rows is None:
        return Section("forecast", "forecast.html", {"empty": True})
    fig = go.Figure()
    so_far = actual.index == current
    fig.add_bar(
        x=actual.index,
        y=actual.to_numpy(),
        name="won (actual; light: this month so far)",
        marker_color=[charts.BLUE_LIGHT if p else charts.BLUE for p in so_far],
        customdata=["so far" if p else "actual" for p in so_far],
        hovertemplate="%{x|%b %Y}: %{y:,.0f}<extra>%{customdata}</extra>",
    )
    if rows is not None:
        _add_forecast(fig, rows, (ctx.previous_headline or {}).get("month"))
    charts.layout(fig, height=340, money_axis=charts.currency_prefix(ctx.currency))
    fig.update_layout(barmode="overlay", xaxis={"tickformat": "%b %Y"})
    view = {
        "empty": False,
        "chart": charts.chart(fig, "chart-forecast", CAPTION),
        "rows": _table(ctx, rows, actual) if rows is not None else None,
        "note": ctx.forecast_notes.get("month", ""),
        "caveats": model_caveats(ctx, "forecast") if rows is not None else [],
    }
    return Section("forecast", "forecast.html", view)

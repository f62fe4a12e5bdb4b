"""Deals at risk: the open deals with the largest expected-revenue loss, why and what to do."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from serving.report import charts
from serving.report import format as fmt
from serving.report.data import Context
from serving.report.sections.base import Section, model_caveats, money, no_team, rep_name, short

RISK_ROWS = 10
CAPTION = "Each deal's amount split into what the model expects to win and what it expects to lose."


def drivers_text(drivers: list[Any], limit: int = 2) -> list[str]:
    """The drivers that pull the score down most (else the first ones), as text."""
    items = [d for d in drivers if isinstance(d, dict)]
    negative = sorted(
        (d for d in items if float(d.get("contribution", 0.0)) < 0),
        key=lambda d: float(d.get("contribution", 0.0)),
    )
    return [fmt.text(d.get("text") or d.get("concept")) for d in (negative or items)[:limit]]


def actions_text(ctx: Context, actions: list[Any], limit: int = 2) -> list[dict[str, str]]:
    """The top actions: ``action``, and ``revenue`` / ``points`` when it has a what-if."""
    out = []
    for a in [a for a in actions if isinstance(a, dict)][:limit]:
        item = {"action": fmt.text(a.get("action"))}
        impact = a.get("expected_impact")
        if isinstance(impact, dict) and impact.get("revenue"):
            item["revenue"] = fmt.signed_money(impact["revenue"], ctx.currency)
            item["points"] = fmt.points(impact.get("win_probability_points"))
        out.append(item)
    return out


def at_risk_frame(ctx: Context) -> pd.DataFrame:
    """Open deals with an amount and a score: ``at_risk``, ``expected`` and ``change`` (points
    since the previous scores)."""
    deals = ctx.open_deals
    frame = deals[deals["amount"].notna() & deals["win_probability"].notna()].copy()
    frame["at_risk"] = frame["amount"] * (1 - frame["win_probability"])
    frame["expected"] = frame["amount"] * frame["win_probability"]
    previous = ctx.scores.previous
    if previous is not None and len(previous):
        before = previous.set_index("deal_id")["win_probability"]
        frame["change"] = (frame["win_probability"] - frame["deal_id"].map(before)) * 100
    else:
        frame["change"] = np.nan
    return frame


def _chart(ctx: Context, top: pd.DataFrame) -> charts.Chart:
    labels = [
        f"{d} · {ctx.names.get(str(o), str(o))}"
        for d, o in zip(top["deal_id"], top["owner_id"], strict=False)
    ]
    fig = go.Figure()
    fig.add_bar(
        y=labels,
        x=top["expected"],
        orientation="h",
        name="expected (amount × p)",
        marker_color=charts.GREEN,
        hovertemplate="%{y}: %{x:,.0f}<extra>expected</extra>",
    )
    fig.add_bar(
        y=labels,
        x=top["at_risk"],
        orientation="h",
        name="at risk (amount × (1 − p))",
        marker_color=charts.RED,
        hovertemplate="%{y}: %{x:,.0f}<extra>at risk</extra>",
    )
    charts.layout(fig, height=max(260, 34 * len(top) + 80))
    fig.update_layout(
        barmode="stack",
        yaxis={"autorange": "reversed"},
        margin={"l": 180, "r": 20, "t": 30, "b": 40},
    )
    fig.update_xaxes(tickprefix=charts.currency_prefix(ctx.currency), tickformat="~s")
    return charts.chart(fig, "chart-risk", CAPTION)


def _row(ctx: Context, r: dict[Hashable, Any]) -> dict[str, Any]:
    return {
        "deal": fmt.text(r["deal_id"]),
        "owner": rep_name(ctx, r.get("owner_id")),
        "stage": fmt.text(r.get("stage")),
        "amount": money(ctx, r["amount"]),
        "estimated": bool(r.get("amount_estimated")),
        "probability": fmt.pct(r["win_probability"]),
        "change": None if fmt.missing(r.get("change")) else fmt.points(r["change"]),
        "at_risk": money(ctx, r["at_risk"]),
        "close": fmt.date(r.get("expected_close_date")),
        "drivers": drivers_text(r.get("drivers") or []),
        "actions": actions_text(ctx, r.get("actions") or []),
    }


def at_risk(ctx: Context) -> Section:
    if (blocked := no_team(ctx, "risk")) is not None:
        return blocked
    deals = ctx.open_deals
    if deals.empty or "win_probability" not in deals or deals["win_probability"].isna().all():
        note = "No open deals at this date." if deals.empty else ctx.scores.source
        return Section("risk", "risk.html", {"note": note})
    frame = at_risk_frame(ctx)
    if frame.empty:
        return Section("risk", "risk.html", {"note": "No open deal has an amount to put at risk."})
    top = frame.nlargest(RISK_ROWS, "at_risk")
    view = {
        "note": None,
        "count": len(top),
        "total": short(ctx, float(frame["at_risk"].sum())),
        "source": ctx.scores.source,
        "caveats": model_caveats(ctx, "win", "timing"),
        "chart": _chart(ctx, top),
        "rows": [_row(ctx, r) for r in top.to_dict("records")],
    }
    return Section("risk", "risk.html", view)

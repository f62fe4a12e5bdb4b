"""The report's sections: each a function of the gathered ``Context`` returning HTML."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from salesml.explain.change import attribute_change
from salesml.models.evaluation import binary_metrics, reliability_curve
from salesml.models.revenue.periods import period_range, period_start
from serving.report import charts
from serving.report import format as fmt
from serving.report.data import (
    ACTUAL_MONTHS,
    Context,
    calibration_sample,
    close_dates_at,
    registry_metrics,
    won_by_period,
)
from serving.report.format import esc
from serving.report.html import bullets, card, cards, empty, pill, section, table
from serving.report.targets import target_for

SECTIONS = (
    ("headline", "Headline"),
    ("forecast", "Forecast vs actual"),
    ("coverage", "Pipeline coverage"),
    ("stages", "Pipeline by stage"),
    ("risk", "Deals at risk"),
    ("changes", "What changed since the last run"),
    ("kpis", "Rep and team KPIs"),
    ("health", "Model health"),
)
TITLES = dict(SECTIONS)
RISK_ROWS = 10
CHANGE_ROWS = 10
SCORE_MOVE_POINTS = 10.0  # a score move worth listing, in probability points


def _team_note(ctx: Context) -> str:
    known = ", ".join(esc(t) for t in ctx.teams) or "none"
    return f"No deals for team <b>{esc(ctx.team)}</b>. Teams in the data: {known}."


def _no_team(ctx: Context, section_id: str) -> str | None:
    if ctx.team_known:
        return None
    return section(section_id, TITLES[section_id], empty(_team_note(ctx)))


def _money(ctx: Context, value: Any) -> str:
    return fmt.money(value, ctx.currency)


def _short(ctx: Context, value: Any) -> str:
    return fmt.money_short(value, ctx.currency)


def _rep(ctx: Context, owner: Any) -> str:
    if fmt.missing(owner):
        return fmt.DASH
    return esc(ctx.names.get(str(owner), str(owner)))


def _won_in_period(ctx: Context, freq: str) -> float:
    start = period_start(ctx.as_of, freq)
    deals = ctx.team_deals()
    won = deals[
        (deals["status"] == "won")
        & (deals["closed_at"] >= start)
        & (deals["closed_at"] <= ctx.as_of)
    ]
    return float(pd.to_numeric(won["amount"], errors="coerce").fillna(0.0).sum())


# --- headline -----------------------------------------------------------------------------------


def _status(forecast: float, low: float, high: float, target: float) -> tuple[str, str]:
    if low >= target:
        return "on track", "good"
    if high < target:
        return "at risk", "bad"
    if forecast >= target:
        return "likely, not certain", "warn"
    return "below target, within range", "warn"


def headline(ctx: Context) -> tuple[str, dict[str, Any]]:
    """The month and quarter forecast cards, and the headline stored for the next report."""
    saved: dict[str, Any] = {
        "as_of": ctx.as_of.isoformat(),
        "team": ctx.team,
        "generated_at": ctx.generated_at.isoformat(timespec="seconds"),
    }
    if not ctx.team_known:
        return section("headline", "Headline", empty(_team_note(ctx))), saved
    prev = ctx.previous_headline or {}
    items = []
    for freq in ("month", "quarter"):
        start = period_start(ctx.as_of, freq)
        label = fmt.period_label(start, freq)
        title = f"This {freq} · {label}"
        rows = ctx.forecasts.get(freq)
        if rows is None:
            items.append(card(title, fmt.DASH, [esc(ctx.forecast_notes.get(freq, ""))], "muted"))
            continue
        match = rows[rows["period_start"] == start]
        if match.empty:
            items.append(card(title, fmt.DASH, ["no forecast row for this period"], "muted"))
            continue
        row = match.iloc[0]
        won = _won_in_period(ctx, freq)
        target = target_for(ctx.targets, freq, start, ctx.team)
        entry = {
            "period_start": start.date().isoformat(),
            **{
                k: float(row[k])
                for k in ("forecast", "lower_80", "upper_80", "lower_95", "upper_95")
            },
            "won_so_far": won,
            "target": target,
        }
        saved[freq] = entry
        lines = [
            f"80% range {_short(ctx, row['lower_80'])} – {_short(ctx, row['upper_80'])}",
            f"95% range {_short(ctx, row['lower_95'])} – {_short(ctx, row['upper_95'])}",
            f"won so far {_short(ctx, won)}",
        ]
        tone = ""
        if target is not None:
            status, tone = _status(
                float(row["forecast"]), float(row["lower_80"]), float(row["upper_80"]), target
            )
            share = float(row["forecast"]) / target if target else None
            lines.append(
                f"target {_short(ctx, target)} · forecast {fmt.pct(share)} of it "
                + pill(status, tone)
            )
        else:
            lines.append('<span class="muted-text">no target set</span>')
        before = prev.get(freq) if isinstance(prev.get(freq), dict) else None
        when = fmt.date(prev.get("as_of"))
        if before and before.get("period_start") == entry["period_start"]:
            delta = float(row["forecast"]) - float(before.get("forecast", 0.0))
            lines.append(
                f"<b>{fmt.signed_money(delta, ctx.currency)}</b> since the last report ({when})"
            )
        elif before:
            lines.append(f"the last report ({when}) covered another {freq}")
        else:
            lines.append('<span class="muted-text">first report: no change to show yet</span>')
        items.append(card(title, _short(ctx, row["forecast"]), lines, tone))
    lead = (
        f"Won revenue forecast for {esc(ctx.team) if ctx.team else 'the company'} as of "
        f"{fmt.date(ctx.as_of)}: what is already won plus what the forecast expects for the rest "
        "of the period, with 80% and 95% ranges."
    )
    return section("headline", "Headline", cards(items), lead), saved


# --- forecast vs actual ----------------------------------------------------------------------


def forecast_vs_actual(ctx: Context) -> str:
    if (blocked := _no_team(ctx, "forecast")) is not None:
        return blocked
    rows = ctx.forecasts.get("month")
    actual = won_by_period(ctx.team_deals(), "month", ctx.as_of)
    current = period_start(ctx.as_of, "month")
    first = period_range(current - pd.DateOffset(months=ACTUAL_MONTHS), 1, "month")[0]
    actual = actual[(actual.index >= first)]
    if actual.empty and rows is None:
        return section("forecast", TITLES["forecast"], empty("No won revenue and no forecast yet."))
    prefix = charts.currency_prefix(ctx.currency)
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
    table_html = ""
    if rows is not None:
        x = list(rows["period_start"])
        for low, high, name, alpha in (
            ("lower_95", "upper_95", "95% range", 0.15),
            ("lower_80", "upper_80", "80% range", 0.3),
        ):
            fig.add_scatter(
                x=x,
                y=rows[high],
                mode="lines",
                line={"width": 0},
                showlegend=False,
                hoverinfo="skip",
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
        prev = (ctx.previous_headline or {}).get("month")
        if isinstance(prev, dict) and prev.get("period_start"):
            fig.add_scatter(
                x=[pd.Timestamp(prev["period_start"])],
                y=[prev.get("forecast")],
                mode="markers",
                name="last report's forecast",
                marker={"symbol": "diamond-open", "size": 11, "color": charts.INK},
            )
        table_html = table(
            ["month", "forecast", "80% range", "95% range", "actual so far"],
            [
                [
                    fmt.month_label(r.period_start),
                    _money(ctx, r.forecast),
                    f"{_money(ctx, r.lower_80)} – {_money(ctx, r.upper_80)}",
                    f"{_money(ctx, r.lower_95)} – {_money(ctx, r.upper_95)}",
                    _money(ctx, actual.get(r.period_start))
                    if pd.Timestamp(str(r.period_start)) <= current
                    else "",
                ]
                for r in rows.itertuples()
            ],
            numeric=(1, 2, 3, 4),
        )
    else:
        table_html = empty(esc(ctx.forecast_notes.get("month", "")))
    charts.layout(fig, height=340, money_axis=prefix)
    fig.update_layout(barmode="overlay", xaxis={"tickformat": "%b %Y"})
    caption = (
        "Monthly won revenue (bars) and the forecast for this month and the next two, with "
        "its 80% and 95% ranges."
    )
    return section(
        "forecast", TITLES["forecast"], charts.chart(fig, "chart-forecast", caption) + table_html
    )


# --- pipeline coverage -------------------------------------------------------------------------


def _kpi_block(ctx: Context, kpis: dict[str, Any] | None) -> dict[str, Any] | None:
    if kpis is None:
        return None
    if ctx.team is None:
        block = kpis.get("overall")
        return block if isinstance(block, dict) else None
    for group in kpis.get("groups", []):
        if str(group.get("group")) == ctx.team:
            return dict(group)
    return None


def coverage(ctx: Context) -> str:
    if (blocked := _no_team(ctx, "coverage")) is not None:
        return blocked
    deals = ctx.open_deals
    if deals.empty:
        return section("coverage", TITLES["coverage"], empty("No open deals at this date."))
    amount = deals["amount"].fillna(0.0)
    p = deals["win_probability"] if "win_probability" in deals else pd.Series(np.nan, deals.index)
    weighted = float((amount * p.fillna(0.0)).sum())
    in_quarter = (
        float((amount * deals["p_close_this_quarter"].fillna(0.0)).sum())
        if "p_close_this_quarter" in deals
        else None
    )
    pipeline = float(amount.sum())
    start = period_start(ctx.as_of, "quarter")
    won = _won_in_period(ctx, "quarter")
    target = target_for(ctx.targets, "quarter", start, ctx.team)
    block = _kpi_block(ctx, ctx.kpis_team) or {}
    gap = None if target is None else max(target - won, 0.0)
    items = [
        card("Open pipeline", _short(ctx, pipeline), [f"{len(deals):,} open deals"]),
        card(
            "Weighted pipeline",
            _short(ctx, weighted),
            [
                "Σ amount × win probability",
                f"{fmt.pct(weighted / pipeline if pipeline else None)} of the open pipeline",
            ],
        ),
        card(
            "Pipeline coverage",
            fmt.ratio(block.get("pipeline_coverage")),
            ["open pipeline ÷ average quarterly won revenue (last 4 complete quarters)"],
        ),
    ]
    if gap is not None:
        tone = "good" if gap == 0 or pipeline >= 3 * gap else "warn" if pipeline >= gap else "bad"
        items.append(
            card(
                f"Coverage of the {fmt.quarter_label(start)} gap",
                fmt.ratio(pipeline / gap) if gap else "target met",
                [
                    f"target {_short(ctx, target)} − won {_short(ctx, won)} = "
                    f"{_short(ctx, gap)} to go",
                    "3× is the usual rule of thumb",
                ],
                tone,
            )
        )
    quarter = ctx.forecasts.get("quarter")
    fig = go.Figure()
    bars: list[tuple[str, float, str, dict[str, Any] | None]] = [
        ("won so far", won, charts.BLUE, None)
    ]
    if in_quarter is not None:
        bars.append(("won + expected from pipeline", won + in_quarter, charts.BLUE_LIGHT, None))
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
    caption = (
        f"{fmt.quarter_label(start)}: revenue won so far, plus what open deals are expected to "
        "bring in before the quarter ends (Σ amount × probability of closing won this quarter), "
        "against the forecast, the target and the whole open pipeline."
    )
    return section(
        "coverage",
        TITLES["coverage"],
        cards(items) + charts.chart(fig, "chart-coverage", caption),
    )


# --- pipeline by stage ---------------------------------------------------------------------------


def stages(ctx: Context) -> str:
    if (blocked := _no_team(ctx, "stages")) is not None:
        return blocked
    deals = ctx.open_deals
    if deals.empty:
        return section("stages", TITLES["stages"], empty("No open deals at this date."))
    frame = deals.assign(
        amount=deals["amount"].fillna(0.0),
        p=deals.get("win_probability", np.nan),
    )
    frame["weighted"] = frame["amount"] * frame["p"].fillna(0.0)
    grouped = frame.groupby("stage", sort=False).agg(
        deals=("deal_id", "size"),
        amount=("amount", "sum"),
        weighted=("weighted", "sum"),
        p=("p", "mean"),
        days=("days_in_stage", "median") if "days_in_stage" in frame else ("p", "size"),
    )
    order = []
    if ctx.win is not None:
        order = [str(s) for s in ctx.win.bundle.explainer.get("stage_order", [])]
    rank = {s: i for i, s in enumerate(order)}
    grouped = grouped.loc[sorted(grouped.index, key=lambda s: (rank.get(s, len(rank)), s))]
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
    rows = [
        [
            esc(stage),
            fmt.number(g.deals),
            _money(ctx, g.amount),
            _money(ctx, g.weighted),
            fmt.pct(g.p),
            fmt.days(g.days) if "days_in_stage" in frame else fmt.DASH,
        ]
        for stage, g in grouped.iterrows()
    ]
    rows.append(
        [
            "<b>all stages</b>",
            fmt.number(grouped["deals"].sum()),
            _money(ctx, grouped["amount"].sum()),
            _money(ctx, grouped["weighted"].sum()),
            fmt.pct(frame["p"].mean()),
            "",
        ]
    )
    body = charts.chart(
        fig,
        "chart-stages",
        "Open pipeline by stage (in funnel order): amount, and amount "
        "weighted by each deal's win probability.",
    ) + table(
        ["stage", "deals", "amount", "weighted", "avg win probability", "median days in stage"],
        rows,
        numeric=(1, 2, 3, 4, 5),
    )
    return section("stages", TITLES["stages"], body)


# --- deals at risk -----------------------------------------------------------------------------


def _drivers_text(drivers: list[Any], limit: int = 2) -> str:
    items = [d for d in drivers if isinstance(d, dict)]
    negative = sorted(
        (d for d in items if float(d.get("contribution", 0.0)) < 0),
        key=lambda d: float(d.get("contribution", 0.0)),
    )
    chosen = (negative or items)[:limit]
    return (
        bullets((esc(d.get("text") or d.get("concept")) for d in chosen), "compact")
        if chosen
        else fmt.DASH
    )


def _actions_text(ctx: Context, actions: list[Any], limit: int = 2) -> str:
    items = [a for a in actions if isinstance(a, dict)][:limit]
    if not items:
        return fmt.DASH
    out = []
    for a in items:
        impact = a.get("expected_impact")
        extra = ""
        if isinstance(impact, dict) and impact.get("revenue"):
            extra = (
                f' <span class="muted-text">({fmt.signed_money(impact["revenue"], ctx.currency)}'
                f" expected, {fmt.points(impact.get('win_probability_points'))})</span>"
            )
        out.append(esc(a.get("action")) + extra)
    return bullets(out, "compact")


def at_risk(ctx: Context) -> str:
    if (blocked := _no_team(ctx, "risk")) is not None:
        return blocked
    deals = ctx.open_deals
    if deals.empty or "win_probability" not in deals or deals["win_probability"].isna().all():
        note = "No open deals at this date." if deals.empty else esc(ctx.scores.source)
        return section("risk", TITLES["risk"], empty(note))
    frame = deals[deals["amount"].notna() & deals["win_probability"].notna()].copy()
    if frame.empty:
        return section("risk", TITLES["risk"], empty("No open deal has an amount to put at risk."))
    frame["at_risk"] = frame["amount"] * (1 - frame["win_probability"])
    frame["expected"] = frame["amount"] * frame["win_probability"]
    previous = ctx.scores.previous
    if previous is not None and len(previous):
        before = previous.set_index("deal_id")["win_probability"]
        frame["change"] = (frame["win_probability"] - frame["deal_id"].map(before)) * 100
    else:
        frame["change"] = np.nan
    top = frame.nlargest(RISK_ROWS, "at_risk")
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
    rows = []
    for r in top.to_dict("records"):
        change = "" if fmt.missing(r.get("change")) else f"<br>{fmt.points(r['change'])}"
        rows.append(
            [
                f"<b>{esc(r['deal_id'])}</b><br>{_rep(ctx, r.get('owner_id'))}",
                esc(r.get("stage")),
                _money(ctx, r["amount"]),
                f"{fmt.pct(r['win_probability'])}{change}",
                _money(ctx, r["at_risk"]),
                fmt.date(r.get("expected_close_date")),
                _drivers_text(r.get("drivers") or []),
                _actions_text(ctx, r.get("actions") or []),
            ]
        )
    total = float(frame["at_risk"].sum())
    lead = (
        f"The {len(top)} open deals with the largest expected-revenue loss, amount × (1 − win "
        f"probability); {_short(ctx, total)} of the open pipeline is at risk in all. Scores: "
        f"{esc(ctx.scores.source)}."
    )
    body = charts.chart(
        fig,
        "chart-risk",
        "Each deal's amount split into what the model expects to win and what it expects to lose.",
    ) + table(
        [
            "deal · owner",
            "stage",
            "amount",
            "win prob. (change)",
            "at risk",
            "expected close",
            "what holds it back",
            "recommended actions",
        ],
        rows,
        numeric=(2, 3, 4),
        cls="risk",
    )
    return section("risk", TITLES["risk"], body, lead)


# --- what changed ------------------------------------------------------------------------------


def changes_frame(ctx: Context) -> dict[str, pd.DataFrame] | None:
    """New, won, lost, slipped and moved deals between the previous scores and now."""
    prev = ctx.scores.previous
    if prev is None or ctx.scores.previous_as_of is None:
        return None
    since = ctx.scores.previous_as_of
    cur = ctx.scores.current
    cur_ids, prev_ids = pd.Index(cur["deal_id"]), pd.Index(prev["deal_id"])
    deals = ctx.history.deals.assign(deal_id=ctx.history.deals["deal_id"].astype(str))
    deals = deals.set_index("deal_id")
    amounts = (
        ctx.open_deals.set_index("deal_id")["amount"]
        if len(ctx.open_deals)
        else pd.Series(dtype=float)
    )
    new = pd.DataFrame({"deal_id": cur_ids.difference(prev_ids)})
    new["amount"] = new["deal_id"].map(amounts)
    new["owner_id"] = new["deal_id"].map(deals["owner_id"])
    new = new.sort_values("amount", ascending=False, na_position="last")
    gone = deals.reindex(prev_ids.difference(cur_ids))
    closed = gone[gone["closed_at"].notna() & (gone["closed_at"] <= ctx.as_of)]
    won, lost = (
        closed[closed["status"] == status]
        .reset_index()
        .sort_values("amount", ascending=False, na_position="last")
        for status in ("won", "lost")
    )
    both = cur_ids.intersection(prev_ids)
    before = close_dates_at(ctx.history, since, both)
    after = close_dates_at(ctx.history, ctx.as_of, both)
    joined = pd.DataFrame({"before": before, "after": after}).dropna()
    slipped = joined[joined["after"] > joined["before"]].copy()
    slipped["days"] = (slipped["after"] - slipped["before"]).dt.days
    slipped.index.name = "deal_id"
    slipped = slipped.reset_index()
    slipped["amount"] = slipped["deal_id"].map(amounts)
    slipped["owner_id"] = slipped["deal_id"].map(deals["owner_id"])
    slipped = slipped.sort_values("amount", ascending=False, na_position="last")
    moves = pd.DataFrame()
    if {"drivers", "model_version"} <= set(cur.columns) & set(prev.columns) and len(both):
        pair = [frame[frame["deal_id"].isin(both)] for frame in (prev, cur)]
        moves = attribute_change(pair[0], pair[1])
        moves["owner_id"] = moves["deal_id"].map(deals["owner_id"])
        moves["amount"] = moves["deal_id"].map(amounts)
    return {"new": new, "won": won, "lost": lost, "slipped": slipped, "moves": moves}


def what_changed(ctx: Context) -> str:
    if (blocked := _no_team(ctx, "changes")) is not None:
        return blocked
    parts = changes_frame(ctx)
    if parts is None:
        return section(
            "changes",
            TITLES["changes"],
            empty(
                "No previous run to compare with: this is the first score run"
                + (" for this workspace" if ctx.scores.current is not None else "")
                + ". Run <code>salesml score</code> again after the next import to see new, won, "
                "lost and slipped deals and score moves here."
            ),
        )
    moves = parts["moves"]
    big = moves[moves["change_points"].abs() >= SCORE_MOVE_POINTS] if len(moves) else moves
    since = fmt.date(ctx.scores.previous_as_of)

    def total(frame: pd.DataFrame) -> str:
        return (
            _short(ctx, pd.to_numeric(frame["amount"], errors="coerce").sum())
            if len(frame) and "amount" in frame
            else _short(ctx, 0)
        )

    items = [
        card("New deals", fmt.number(len(parts["new"])), [total(parts["new"])]),
        card("Won", fmt.number(len(parts["won"])), [total(parts["won"])], "good"),
        card("Lost", fmt.number(len(parts["lost"])), [total(parts["lost"])], "bad"),
        card("Slipped", fmt.number(len(parts["slipped"])), ["close date pushed later"], "warn"),
        card("Score moves", fmt.number(len(big)), [f"±{SCORE_MOVE_POINTS:.0f} points or more"]),
    ]
    body = cards(items)
    if len(moves):
        up = moves["change_points"] >= 0
        fig = go.Figure()
        for mask, name, color in ((up, "up", charts.GREEN), (~up, "down", charts.RED)):
            part = moves[mask]
            fig.add_scatter(
                x=part["old_probability"] * 100,
                y=part["new_probability"] * 100,
                mode="markers",
                name=name,
                marker={"color": color, "size": 7, "opacity": 0.7},
                text=part["deal_id"],
                hovertemplate="%{text}: %{x:.0f} → %{y:.0f}<extra></extra>",
            )
        fig.add_scatter(
            x=[0, 100],
            y=[0, 100],
            mode="lines",
            showlegend=False,
            line={"color": charts.MUTED, "dash": "dot"},
            hoverinfo="skip",
        )
        charts.layout(fig, height=320)
        fig.update_xaxes(title_text=f"score at {since}", range=[0, 100])
        fig.update_yaxes(title_text=f"score at {fmt.date(ctx.as_of)}", range=[0, 100])
        body += charts.chart(
            fig,
            "chart-changes",
            "Each deal open in both runs: its score then and now (above the diagonal: up).",
        )
    lists = []
    if len(big):
        top = big.reindex(big["change_points"].abs().sort_values(ascending=False).index)
        rows = []
        for r in top.head(CHANGE_ROWS).to_dict("records"):
            why = ", ".join(
                f"{esc(a['driver'])} {fmt.points(a['change_points'])}" for a in r["attribution"][:3]
            )
            rows.append(
                [
                    esc(r["deal_id"]),
                    _rep(ctx, r.get("owner_id")),
                    f"{fmt.pct(r['old_probability'])} → {fmt.pct(r['new_probability'])}",
                    fmt.points(r["change_points"]),
                    why,
                ]
            )
        lists.append(
            "<h3>Biggest score moves</h3>"
            + table(
                ["deal", "owner", "win probability", "change", "why (drivers)"],
                rows,
                numeric=(2, 3),
            )
        )
    for key, title, extra in (
        ("new", "New deals", None),
        ("won", "Won", None),
        ("lost", "Lost", None),
        ("slipped", "Slipped", "slip"),
    ):
        frame = parts[key]
        if frame.empty:
            continue
        rows = []
        for r in frame.head(CHANGE_ROWS).to_dict("records"):
            row = [esc(r["deal_id"]), _rep(ctx, r.get("owner_id")), _money(ctx, r.get("amount"))]
            if extra:
                row.append(
                    f"{fmt.date(r['before'])} → {fmt.date(r['after'])} (+{fmt.days(r['days'])})"
                )
            rows.append(row)
        more = f" (largest {CHANGE_ROWS} of {len(frame):,})" if len(frame) > CHANGE_ROWS else ""
        headers = ["deal", "owner", "amount"] + (["close date"] if extra else [])
        lists.append(f"<h3>{title}{more}</h3>" + table(headers, rows, numeric=(2,)))
    body += '<div class="columns">' + "".join(f"<div>{x}</div>" for x in lists) + "</div>"
    lead = (
        f"Since {esc(ctx.scores.previous_source)}; now {esc(ctx.scores.source)}. Won and lost "
        "are deals closed since; slipped deals had their expected close date pushed later."
    )
    return section("changes", TITLES["changes"], body, lead)


# --- KPIs and coaching ---------------------------------------------------------------------------


def _kpi_row(ctx: Context, name: str, block: dict[str, Any]) -> list[str]:
    return [
        name,
        _money(ctx, block.get("revenue")),
        fmt.signed_pct(block.get("revenue_growth")),
        fmt.pct(block.get("win_rate")),
        _money(ctx, block.get("average_order_value")),
        fmt.days(block.get("median_cycle_days")),
        _money(ctx, block.get("cac")),
        fmt.number(block.get("nps")),
        _money(ctx, block.get("open_pipeline")),
    ]


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


def coaching(ctx: Context) -> list[str]:
    """Suggestions for reps and teams from the rules fitted at training (docs/actions.md)."""
    if ctx.win is None:
        return []
    acts = ctx.win.bundle.explainer.get("actions", {}) or {}
    teams = {
        str(o): str(t)
        for o, t in zip(
            ctx.history.reps.get("owner_id", []), ctx.history.reps.get("team", []), strict=False
        )
    }

    def mine(owner: str) -> bool:
        return ctx.team is None or teams.get(owner) == ctx.team

    out = []
    for kind, what in (("coaching_product", "{seg} deals"), ("coaching_stage", "the {seg} stage")):
        for key, v in sorted((acts.get(kind) or {}).items()):
            owner, _, segment = key.partition("|")
            if not mine(owner):
                continue
            out.append(
                f"<b>Coach {_rep(ctx, owner)}</b> on {esc(what.format(seg=segment))}: wins "
                f"{fmt.pct(v.get('rate'))} against the team's {fmt.pct(v.get('team_rate'))} over "
                f"{fmt.number(v.get('deals'))} deals."
            )
    deals = ctx.open_deals
    capacity = acts.get("capacity") or {}
    if len(deals):
        load = deals.groupby(["owner_id", "team"]).size()
        for (owner, team), n in zip(load.index.tolist(), load.tolist(), strict=True):
            cap = capacity.get(str(team))
            if not cap:
                continue
            if n > cap.get("high", np.inf):
                out.append(
                    f"<b>Rebalance {_rep(ctx, owner)}</b>: {n} open deals against a team capacity "
                    f"of about {fmt.number(cap.get('high'))}; reassign some or add help."
                )
            elif n < cap.get("low", -np.inf):
                out.append(
                    f"<b>{_rep(ctx, owner)} has spare capacity</b>: {n} open deals (the team "
                    f"usually carries {fmt.number(cap.get('median'))}); route new deals there."
                )
        if "actions" in deals:
            stale = deals[
                [
                    any(
                        isinstance(a, dict)
                        and a.get("id") in {"no_recent_activity", "stalled_in_stage"}
                        for a in acts_
                    )
                    for acts_ in deals["actions"].map(lambda v: v if isinstance(v, list) else [])
                ]
            ]
            for owner, g in stale.groupby("owner_id"):
                if len(g) >= 3:
                    out.append(
                        f"<b>{_rep(ctx, owner)}</b>: {len(g)} open deals stalled or without "
                        f"recent activity ({_short(ctx, g['amount'].sum())}); review them in the "
                        "next one-to-one."
                    )
    process = acts.get("process") or {}
    if process.get("stage"):
        out.append(
            f"<b>Process:</b> conversion from the {esc(process['stage'])} stage fell from "
            f"{fmt.pct(process.get('before'))} to {fmt.pct(process.get('recent'))} recently; "
            "review that stage's playbook."
        )
    return out


def kpis(ctx: Context) -> str:
    if (blocked := _no_team(ctx, "kpis")) is not None:
        return blocked
    if ctx.kpis_team is None or ctx.kpis_rep is None:
        return section("kpis", TITLES["kpis"], empty(esc(ctx.kpi_note or "No KPIs.")))
    teams = rep_team = {
        str(o): str(t)
        for o, t in zip(
            ctx.history.reps.get("owner_id", []), ctx.history.reps.get("team", []), strict=False
        )
    }
    del teams
    team_rows = []
    overall = ctx.kpis_team.get("overall", {})
    if ctx.team is None:
        team_rows.append(["<b>company</b>", *_kpi_row(ctx, "", overall)[1:]])
    for g in ctx.kpis_team.get("groups", []):
        if ctx.team is None or str(g.get("group")) == ctx.team:
            team_rows.append(_kpi_row(ctx, esc(g.get("group")), g))
    reps = [
        g
        for g in ctx.kpis_rep.get("groups", [])
        if ctx.team is None or rep_team.get(str(g.get("group"))) == ctx.team
    ]
    rep_rows = [_kpi_row(ctx, _rep(ctx, g.get("group")), g) for g in reps]
    groups = [
        g
        for g in ctx.kpis_team.get("groups", [])
        if ctx.team is None or str(g.get("group")) == ctx.team
    ]
    series = reps if ctx.team is not None else groups
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
    tips = coaching(ctx)
    body = charts.chart(
        fig,
        "chart-kpis",
        "Won revenue in the last six complete quarters, per "
        + ("rep of the team." if ctx.team else "team."),
    )
    body += "<h3>Teams</h3>" + table(KPI_HEADERS, team_rows, numeric=range(1, 9))
    body += "<h3>Reps</h3>" + (
        table(KPI_HEADERS, rep_rows, numeric=range(1, 9)) if rep_rows else empty("No reps.")
    )
    body += "<h3>Coaching suggestions</h3>" + (
        bullets(tips) if tips else empty("No rep or team stands out from its team's record.")
    )
    lead = (
        f"Closed-deal figures over the whole history up to {fmt.date(ctx.as_of)}; growth is the "
        "latest complete quarter against the one before. CAC is the company's (marketing spend "
        "is recorded by channel, not by team or rep), so it is blank for teams and reps."
        + (f" Company CAC: {_money(ctx, overall.get('cac'))}." if ctx.team else "")
    )
    return section("kpis", TITLES["kpis"], body, lead)


# --- model health ------------------------------------------------------------------------------


BASELINES = {
    "base_rate": "base rate",
    "stage_probability": "stage win rate",
    "rep_win_rate": "rep win rate",
    "logistic_regression": "logistic regression",
}
METRICS = (("auc", "AUC ↑"), ("brier", "Brier ↓"), ("log_loss", "log loss ↓"), ("ece", "ECE ↓"))


def _metric_rows(win_metrics: dict[str, float], tag: dict[str, Any]) -> list[list[str]]:
    rows = []
    model = {m: win_metrics.get(f"holdout_{m}", tag.get(m)) for m, _ in METRICS}
    rows.append(["<b>win model</b>", *(fmt.number(model[m], 3) for m, _ in METRICS)])
    for key, label in BASELINES.items():
        values = [win_metrics.get(f"baseline_{key}_{m}") for m, _ in METRICS]
        if all(fmt.missing(v) for v in values):
            continue
        rows.append([label, *(fmt.number(v, 3) for v in values)])
    return rows


def health(ctx: Context) -> str:
    if (blocked := _no_team(ctx, "health")) is not None:
        return blocked
    body = ""
    win = ctx.win
    fresh = _freshness(ctx)
    if win is None:
        body += empty("No win model registered: train one with <code>salesml train</code>.")
        return section("health", TITLES["health"], body + fresh)
    meta = win.bundle.metadata
    logged = registry_metrics(win)
    sample, described = calibration_sample(ctx.history, win, ctx.team, ctx.teams_of_deals)
    live: dict[str, Any] = {}
    if len(sample) and sample["won"].nunique() > 1:
        live = binary_metrics(sample["won"], sample["p"])
    rows = _metric_rows(logged, live if not logged else {})
    source = (
        "holdout metrics logged at training"
        if logged
        else "re-computed on the holdout window (the registry's run metrics were not reachable)"
    )
    flags = []
    if meta.get("little_signal"):
        flags.append(pill("little signal: the model predicts the base rate", "bad"))
    body += f"<h3>Win model {esc(win.version)} ({esc(win.alias)})</h3>" + " ".join(flags)
    body += table(
        ["", *(label for _, label in METRICS)],
        rows,
        numeric=(1, 2, 3, 4),
        caption=f"{source}; the model is expected to beat every baseline.",
    )
    if len(sample) >= 20 and sample["won"].nunique() > 1:
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
            hovertemplate="predicted %{x:.0%}, won %{y:.0%} (%{customdata} snapshots)"
            "<extra></extra>",
        )
        charts.layout(fig, height=320)
        fig.update_xaxes(title_text="predicted win probability", range=[0, 1], tickformat=".0%")
        fig.update_yaxes(title_text="observed win rate", range=[0, 1], tickformat=".0%")
        body += charts.chart(
            fig,
            "chart-calibration",
            f"Calibration: {esc(described)}. Bars: 95% intervals. Points near the diagonal mean "
            "a 70% score wins about 70% of the time.",
        )
        body += (
            f'<p class="muted-text">On these snapshots: AUC {fmt.number(live.get("auc"), 3)}, '
            f"Brier {fmt.number(live.get('brier'), 3)}, ECE {fmt.number(live.get('ece'), 3)}.</p>"
        )
    else:
        body += empty(
            f"Calibration plot: not enough deals with a known outcome ({esc(described)})."
        )
    timing = {
        k.removeprefix("timing_"): v
        for k, v in logged.items()
        if k.startswith("timing_") and not k.startswith("timing_baseline_")
    }
    if timing or win.timing is not None:
        body += "<h3>Close timing</h3>" + (
            table(
                ["", "80% interval coverage (target 80%)", "mean abs. error"],
                [
                    [
                        "timing model",
                        fmt.pct(timing.get("coverage_80")),
                        fmt.days(timing.get("mae_days")),
                    ],
                    [
                        "stage median (baseline)",
                        fmt.DASH,
                        fmt.days(logged.get("timing_baseline_stage_median_mae_days")),
                    ],
                ],
                numeric=(1, 2),
            )
            if timing
            else empty("Timing metrics were not logged.")
        )
    body += _forecast_health(ctx)
    return section(
        "health",
        TITLES["health"],
        body + fresh,
        "How much to trust the numbers above: the models' honest holdout figures "
        "against simple baselines, calibration, and how fresh the data is.",
    )


def _forecast_health(ctx: Context) -> str:
    if ctx.forecast is None:
        return "<h3>Revenue forecast</h3>" + empty("No revenue-forecast model registered.")
    backtest = ctx.forecast.bundle.metadata.get("backtest") or {}
    rows = []
    for freq, comps in backtest.items():
        if not isinstance(comps, dict):
            continue
        for comp in ("blend", "series", "pipeline", "seasonal_naive"):
            m = comps.get(comp)
            if isinstance(m, dict):
                rows.append(
                    [
                        f"{esc(freq)}",
                        esc(comp.replace("_", " ")),
                        fmt.pct(m.get("wape_total"), 1),
                        fmt.number(m.get("mase_total"), 2),
                        fmt.pct(m.get("coverage_80_all")),
                    ]
                )
    head = f"<h3>Revenue forecast {esc(ctx.forecast.version)}</h3>"
    for freq, comps in backtest.items():
        blend = (comps or {}).get("blend") or {}
        naive = (comps or {}).get("seasonal_naive") or {}
        b, n = blend.get("wape_total"), naive.get("wape_total")
        if b is not None and n is not None and float(b) > float(n):
            head += pill(
                f"{esc(freq)}: the blend does not beat seasonal naive in backtests "
                f"(WAPE {fmt.pct(b)} vs {fmt.pct(n)}); read its ranges with care",
                "warn",
            )
    if not rows:
        return head + empty("The forecast model carries no backtest figures.")
    return head + table(
        ["period", "component", "WAPE ↓", "MASE ↓", "80% interval coverage"],
        rows,
        numeric=(2, 3, 4),
        caption="Rolling-origin backtests: the blend is what the report shows; seasonal naive "
        "is the baseline to beat.",
    )


def _freshness(ctx: Context) -> str:
    exported = pd.Timestamp(ctx.history.exported_at)
    age = (ctx.as_of - exported).days
    rows = [
        [
            "latest event in the data",
            fmt.date(exported),
            f"{fmt.days(max(age, 0))} before the report date"
            if age >= 0
            else "after the report date (the report reads history up to its date)",
        ]
    ]
    if ctx.win is not None:
        trained = ctx.win.bundle.metadata.get("trained_to")
        gap = (ctx.as_of - pd.Timestamp(trained)).days if trained else None
        tone = "bad" if gap is not None and gap > 90 else ""
        rows.append(
            [
                f"win model {esc(ctx.win.version)} trained to",
                fmt.date(trained),
                (
                    pill(f"{fmt.days(gap)} old: retrain", tone)
                    if tone
                    else (f"{fmt.days(gap)} before the report date" if gap is not None else "")
                ),
            ]
        )
    if ctx.forecast is not None:
        trained = ctx.forecast.bundle.metadata.get("trained_to")
        rows.append(
            [f"forecast model {esc(ctx.forecast.version)} trained to", fmt.date(trained), ""]
        )
    rows.append(["scores", fmt.date(ctx.as_of), esc(ctx.scores.source)])
    rows.append(["report generated", esc(f"{ctx.generated_at:%d %b %Y %H:%M} UTC"), ""])
    return "<h3>Data freshness</h3>" + table(["", "date", ""], rows)

"""What changed since the last run: new, won, lost and slipped deals, and score moves with
their drivers."""

from __future__ import annotations

from typing import Any

import pandas as pd
import plotly.graph_objects as go

from salesml.explain.change import attribute_change
from serving.report import charts
from serving.report import format as fmt
from serving.report.data import Context, close_dates_at
from serving.report.sections.base import Section, money, no_team, rep_name, short

CHANGE_ROWS = 10
SCORE_MOVE_POINTS = 10.0  # a score move worth listing, in probability points
CAPTION = "Each deal open in both runs: its score then and now (above the diagonal: up)."
LISTS = (("new", "New deals"), ("won", "Won"), ("lost", "Lost"), ("slipped", "Slipped"))


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


def _chart(ctx: Context, moves: pd.DataFrame) -> charts.Chart:
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
    fig.update_xaxes(title_text=f"score at {fmt.date(ctx.scores.previous_as_of)}", range=[0, 100])
    fig.update_yaxes(title_text=f"score at {fmt.date(ctx.as_of)}", range=[0, 100])
    return charts.chart(fig, "chart-changes", CAPTION)


def _total(ctx: Context, frame: pd.DataFrame) -> str:
    if len(frame) and "amount" in frame:
        return short(ctx, pd.to_numeric(frame["amount"], errors="coerce").sum())
    return short(ctx, 0)


def _moves_rows(ctx: Context, big: pd.DataFrame) -> list[list[str]]:
    top = big.reindex(big["change_points"].abs().sort_values(ascending=False).index)
    rows = []
    for r in top.head(CHANGE_ROWS).to_dict("records"):
        why = ", ".join(
            f"{fmt.text(a['driver'])} {fmt.points(a['change_points'])}"
            for a in r["attribution"][:3]
        )
        rows.append(
            [
                fmt.text(r["deal_id"]),
                rep_name(ctx, r.get("owner_id")),
                f"{fmt.pct(r['old_probability'])} → {fmt.pct(r['new_probability'])}",
                fmt.points(r["change_points"]),
                why,
            ]
        )
    return rows


def _list(ctx: Context, key: str, title: str, frame: pd.DataFrame) -> dict[str, Any]:
    """One of the deal lists: the largest ``CHANGE_ROWS`` deals by amount."""
    rows = []
    for r in frame.head(CHANGE_ROWS).to_dict("records"):
        row = [
            fmt.text(r["deal_id"]),
            rep_name(ctx, r.get("owner_id")),
            money(ctx, r.get("amount")),
        ]
        if key == "slipped":
            row.append(f"{fmt.date(r['before'])} → {fmt.date(r['after'])} (+{fmt.days(r['days'])})")
        rows.append(row)
    more = f" (largest {CHANGE_ROWS} of {len(frame):,})" if len(frame) > CHANGE_ROWS else ""
    headers = ["deal", "owner", "amount"] + (["close date"] if key == "slipped" else [])
    return {"title": title + more, "headers": headers, "rows": rows}


def what_changed(ctx: Context) -> Section:
    if (blocked := no_team(ctx, "changes")) is not None:
        return blocked
    parts = changes_frame(ctx)
    if parts is None:
        return Section(
            "changes", "changes.html", {"first": True, "runs": ctx.scores.current is not None}
        )
    moves = parts["moves"]
    big = moves[moves["change_points"].abs() >= SCORE_MOVE_POINTS] if len(moves) else moves
    view = {
        "first": False,
        "since": ctx.scores.previous_source,
        "now": ctx.scores.source,
        "counts": {k: fmt.number(len(parts[k])) for k in ("new", "won", "lost", "slipped")},
        "totals": {k: _total(ctx, parts[k]) for k in ("new", "won", "lost")},
        "moved": fmt.number(len(big)),
        "threshold": f"{SCORE_MOVE_POINTS:.0f}",
        "chart": _chart(ctx, moves) if len(moves) else None,
        "moves": _moves_rows(ctx, big) if len(big) else [],
        "lists": [_list(ctx, k, t, parts[k]) for k, t in LISTS if not parts[k].empty],
    }
    return Section("changes", "changes.html", view)

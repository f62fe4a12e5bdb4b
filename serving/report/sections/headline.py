"""Headline: this month's and this quarter's forecast against the target, and the headline kept
for the next report."""

from __future__ import annotations

from typing import Any

from salesml.models.revenue.periods import period_start
from serving.report import format as fmt
from serving.report.data import Context
from serving.report.sections.base import (
    Section,
    model_caveats,
    no_team,
    revenue_known,
    short,
    won_in_period,
)
from serving.report.targets import target_for

BOUNDS = ("forecast", "lower_80", "upper_80", "lower_95", "upper_95")


def status(forecast: float, low: float, high: float, target: float) -> tuple[str, str]:
    """The forecast against the target, and its tone."""
    if low >= target:
        return "on track", "good"
    if high < target:
        return "at risk", "bad"
    if forecast >= target:
        return "likely, not certain", "warn"
    return "below target, within range", "warn"


def _since(ctx: Context, freq: str, entry: dict[str, Any]) -> dict[str, Any]:
    """How the forecast moved since the last report: ``kind`` change / other period / first."""
    prev = ctx.previous_headline or {}
    before = prev.get(freq) if isinstance(prev.get(freq), dict) else None
    when = fmt.date(prev.get("as_of"))
    if before and before.get("period_start") == entry["period_start"]:
        delta = entry["forecast"] - float(before.get("forecast", 0.0))
        return {"kind": "change", "delta": fmt.signed_money(delta, ctx.currency), "when": when}
    if before:
        return {"kind": "other", "when": when}
    return {"kind": "first"}


def _card(ctx: Context, freq: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The card of one period, and the entry the headline keeps for it (None: no forecast)."""
    start = period_start(ctx.as_of, freq)
    title = f"This {freq} · {fmt.period_label(start, freq)}"
    if not revenue_known(ctx):
        lines = ["no won deal in the data has an amount: there is no revenue to forecast"]
        return {"title": title, "missing": True, "lines": lines}, None
    rows = ctx.forecasts.get(freq)
    if rows is None:
        return {"title": title, "missing": True, "lines": [ctx.forecast_notes.get(freq, "")]}, None
    match = rows[rows["period_start"] == start]
    if match.empty:
        return {"title": title, "missing": True, "lines": ["no forecast row for this period"]}, None
    row = match.iloc[0]
    won = won_in_period(ctx, freq)
    target = target_for(ctx.targets, freq, start, ctx.team)
    bounds = {k: float(row[k]) for k in BOUNDS}
    entry: dict[str, Any] = {
        "period_start": start.date().isoformat(),
        **bounds,
        "won_so_far": won,
        "target": target,
    }
    card: dict[str, Any] = {
        "title": title,
        "missing": False,
        "value": short(ctx, row["forecast"]),
        "range_80": (short(ctx, row["lower_80"]), short(ctx, row["upper_80"])),
        "range_95": (short(ctx, row["lower_95"]), short(ctx, row["upper_95"])),
        "won": short(ctx, won),
        "target": None,
        "tone": "",
        "since": _since(ctx, freq, entry),
        "freq": freq,
    }
    if target is not None:
        card["status"], card["tone"] = status(
            bounds["forecast"], bounds["lower_80"], bounds["upper_80"], target
        )
        card["target"] = short(ctx, target)
        card["share"] = fmt.pct(bounds["forecast"] / target if target else None)
    return card, entry


def headline(ctx: Context) -> tuple[Section, dict[str, Any]]:
    """The month and quarter forecast cards, and the headline stored for the next report."""
    saved: dict[str, Any] = {
        "as_of": ctx.as_of.isoformat(),
        "team": ctx.team,
        "generated_at": ctx.generated_at.isoformat(timespec="seconds"),
    }
    if (blocked := no_team(ctx, "headline")) is not None:
        return blocked, saved
    cards = []
    for freq in ("month", "quarter"):
        card, entry = _card(ctx, freq)
        if entry is not None:
            saved[freq] = entry
        cards.append(card)
    view = {
        "team": ctx.team,
        "as_of": ctx.as_of,
        "cards": cards,
        "caveats": model_caveats(ctx, "forecast"),
    }
    return Section("headline", "headline.html", view), saved

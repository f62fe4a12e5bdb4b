"""Plain-language phrases for drivers: the deal's value against what is typical for won deals."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

LABELS: dict[str, str] = {
    "age_days": "Deal age",
    "current_stage": "Stage",
    "days_in_stage": "Days in stage",
    "stage_regressions": "Moves back a stage",
    "days_to_expected_close": "Days to expected close",
    "close_date_pushes": "Close date pushed",
    "push_days_total": "Days the close date moved",
    "amount": "Amount",
    "amount_changes": "Amount changes",
    "amount_vs_product_typical": "Amount vs product's typical won deal",
    "amount_vs_list_price": "Amount vs list price",
    "activities_7d": "Activities in the last 7 days",
    "activities_30d": "Activities in the last 30 days",
    "activities_90d": "Activities in the last 90 days",
    "activities_total": "Activities so far",
    "days_since_last_activity": "Days since last activity",
    "engagement_trend": "Activity trend (last 30 days vs the 30 before)",
    "meetings_total": "Meetings so far",
    "product": "Product",
    "lead_source": "Lead source",
    "deal_type": "Deal type",
    "sales_team": "Team",
    "region": "Region",
    "rep_win_rate_365d": "Owner's win rate (last year)",
    "rep_closed_deals_365d": "Owner's closed deals (last year)",
    "rep_cycle_days_365d": "Owner's typical cycle",
    "rep_open_deals": "Owner's open deals",
    "rep_open_amount": "Owner's open pipeline",
    "rep_tenure_days": "Owner's tenure",
    "account_won_deals": "Deals won with this account",
    "account_won_revenue": "Revenue won with this account",
    "account_employees": "Account head count",
    "account_industry": "Industry",
    "account_size_band": "Account size",
}


def label(feature: str) -> str:
    if feature in LABELS:
        return LABELS[feature]
    return feature.removeprefix("attr_").replace("_", " ").capitalize()


def _days(v: float) -> str:
    return f"{v:,.0f} day" + ("" if round(v) == 1 else "s")


def _number(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10 or float(v).is_integer():
        return f"{v:.0f}"
    return f"{v:.2g}" if abs(v) < 1 else f"{v:.1f}"


def _ratio(v: float) -> str:
    return f"{v:.2f}×"


def _pct(v: float) -> str:
    return f"{v:.0%}"


FORMATS: dict[str, Callable[[float], str]] = {
    "age_days": _days,
    "days_in_stage": _days,
    "days_to_expected_close": _days,
    "push_days_total": _days,
    "days_since_last_activity": _days,
    "rep_cycle_days_365d": _days,
    "rep_tenure_days": _days,
    "amount_vs_product_typical": _ratio,
    "amount_vs_list_price": _ratio,
    "rep_win_rate_365d": _pct,
}


def fmt(feature: str, value: float) -> str:
    return FORMATS.get(feature, _number)(value)


def _points(points: float) -> str:
    sign = "+" if points >= 0 else "−"
    return f"{sign}{abs(points):.1f} pts"


def phrase(
    feature: str,
    value: Any,
    typical: Mapping[str, Any] | None,
    points: float,
) -> str:
    """E.g. ``"No activity for 24 days (won deals: median 5 days) −9.1 pts"``."""
    return f"{_statement(feature, value, typical)} {_points(points)}"


def _statement(feature: str, value: Any, typical: Mapping[str, Any] | None) -> str:
    if isinstance(value, str) or (value is None and typical and "mode" in typical):
        # No value (or one the model never saw, blanked by the scorer): say it is unknown.
        text = f"{label(feature)}: {value}" if value is not None else f"{label(feature)} unknown"
        if typical and "mode" in typical:
            rate = typical.get("win_rate", {}).get(str(value))
            extra = f"win rate {rate:.0%}; " if rate is not None else ""
            text += f" ({extra}won deals: most often {typical['mode']})"
        return text
    median = None if not typical else typical.get("median")
    won = f" (won deals: median {fmt(feature, median)})" if median is not None else ""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if feature == "days_since_last_activity":
            return f"No activity logged yet{won}"
        if feature == "days_to_expected_close":
            return f"No expected close date{won}"
        return f"{label(feature)} unknown{won}"
    v = float(value)
    if feature == "days_since_last_activity":
        return f"No activity for {fmt(feature, v)}{won}"
    if feature == "days_to_expected_close" and v < 0:
        return f"Expected close date passed {fmt(feature, -v)} ago{won}"
    if feature == "days_in_stage":
        return f"{fmt(feature, v)} in the current stage{won}"
    return f"{label(feature)}: {fmt(feature, v)}{won}"

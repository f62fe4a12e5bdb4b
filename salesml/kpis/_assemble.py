"""The Python half of the KPI engine: turns the aggregates into the JSON blocks.

Everything here works on a few hundred numbers per group (one row per period), never on deals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from salesml.kpis._queries import ClosedAgg, Funnel, Key, LeadRow, NpsAgg, PeriodUnit

# How many periods back "the same period one year earlier" is.
YEAR_LAG: dict[PeriodUnit, int] = {"month": 12, "quarter": 4, "year": 1}
MONTHS: dict[PeriodUnit, int] = {"month": 1, "quarter": 3, "year": 12}
COVERAGE_PERIODS = 4


def money(value: float | None) -> float | None:
    """Money in the JSON: 2 decimals."""
    return None if value is None else round(float(value), 2)


def rate(value: float | None) -> float | None:
    """Rates, growth and ratios in the JSON: 4 decimals."""
    return None if value is None else round(float(value), 4)


def ratio(num: float | None, den: float | None) -> float | None:
    """num / den, or None when either is missing or den is 0."""
    if num is None or den is None or den == 0:
        return None
    return num / den


def growth(current: float, previous: float | None) -> float | None:
    """Fractional change from previous to current; None when previous is missing or 0."""
    if previous is None or previous == 0:
        return None
    return (current - previous) / previous


def add_months(day: date, months: int) -> date:
    """The first of the month ``months`` after ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_grid(first: date, as_of: datetime, unit: PeriodUnit) -> list[tuple[date, bool]]:
    """Period starts from ``first`` to the period holding as_of, each with its completeness.

    A period is complete when as_of falls on or after its last day (CRM dates are days).
    """
    step = MONTHS[unit]
    grid = []
    start = first
    last_day = as_of.date()
    while start <= last_day:
        end = add_months(start, step)
        grid.append((start, end - timedelta(days=1) <= last_day))
        start = end
    return grid


@dataclass
class Facts:
    """Every aggregate the engine fetched, keyed as in ``salesml.kpis._queries``."""

    unit: PeriodUnit
    grid: list[tuple[date, bool]]
    closed: dict[Key, ClosedAgg]
    new_customers: dict[Key, int]
    new_customers_by_channel: dict[str, int]
    spend: tuple[dict[date, float], dict[str, float]] | None
    nps: dict[Key, NpsAgg]
    pipeline: dict[str | None, tuple[int, float, float]]
    leads: dict[str | None, list[LeadRow]]
    leads_by_group: bool
    funnel: Funnel
    web: dict[str, tuple[int, float | None]] | None = None


def _nps_score(agg: NpsAgg | None) -> float | None:
    if agg is None or agg.responses == 0:
        return None
    return round(100.0 * (agg.promoters - agg.detractors) / agg.responses, 2)


def _period_spend(per: dict[date, float], start: date) -> float | None:
    """A period's spend: 0 for a period inside the span the spend data covers with no row
    (nothing spent), unknown (None) before its first or after its last period (not recorded)."""
    if start in per:
        return per[start]
    return 0.0 if min(per) <= start <= max(per) else None


def first_close_period(facts: Facts) -> date | None:
    """The earliest period any deal closed in (over every group), None with no close."""
    starts = [p for (g, p) in facts.closed if g is None and p is not None]
    return min(starts) if starts else None


def _periods(facts: Facts, g: str | None) -> tuple[list[dict[str, Any]], list[float | None]]:
    """The period rows of one block, and their unrounded revenues (None where unknown).

    Periods before the first period in which any deal closed (over the whole export, not just
    this group) have no recorded closes at all: an export that starts recording closes later
    than creations (Maven: deals from Oct 2016, first close Mar 2017) cannot tell "nothing
    closed" from "closes not in the export", so their closed-deal figures are null, not 0.
    """
    overall = g is None
    lag = YEAR_LAG[facts.unit]
    recorded_from = first_close_period(facts)
    revenues: list[float | None] = []
    rows: list[dict[str, Any]] = []
    for i, (start, complete) in enumerate(facts.grid):
        recorded = recorded_from is not None and start >= recorded_from
        c = facts.closed.get((g, start), ClosedAgg())
        revenue = (c.revenue or 0.0) if recorded else None
        revenues.append(revenue)
        new = facts.new_customers.get((g, start), 0) if recorded else None
        spend = None
        if overall and facts.spend is not None:
            spend = _period_spend(facts.spend[0], start)
        rows.append(
            {
                "period_start": start.isoformat(),
                "complete": complete,
                "closes_recorded": recorded,
                "revenue": money(revenue),
                "revenue_growth": rate(_growth(revenue, revenues[i - 1] if i else None)),
                "revenue_growth_yoy": rate(
                    _growth(revenue, revenues[i - lag] if i >= lag else None)
                ),
                "deals_won": c.won if recorded else None,
                "deals_lost": c.lost if recorded else None,
                "win_rate": rate(ratio(c.won, c.won + c.lost)),
                "average_order_value": money(ratio(c.revenue, c.won_with_amount)),
                "median_cycle_days": money(c.median_cycle),
                "new_customers": new,
                "marketing_spend": money(spend),
                "cac": money(ratio(spend, new)),
                "nps": _nps_score(facts.nps.get((g, start))),
            }
        )
    return rows, revenues


def _growth(current: float | None, previous: float | None) -> float | None:
    return None if current is None else growth(current, previous)


def block(facts: Facts, g: str | None) -> dict[str, Any]:
    """One BLOCK of the JSON contract (see docs/kpis.md) for group ``g`` (None = overall)."""
    overall = g is None
    periods, revenues = _periods(facts, g)
    complete = [i for i, (_, done) in enumerate(facts.grid) if done]
    latest = periods[complete[-1]] if complete else None
    recent = [r for r in (revenues[i] for i in complete[-COVERAGE_PERIODS:]) if r is not None]
    c = facts.closed.get((g, None), ClosedAgg())
    n_deals, pipeline, estimated = facts.pipeline.get(g, (0, 0.0, 0.0))
    nps = facts.nps.get((g, None))

    cac = None
    cac_by_channel: dict[str, float | None] | None = None
    if overall:
        cac_by_channel = {}
        if facts.spend is not None:
            new = facts.new_customers.get((None, None), 0)
            cac = money(ratio(sum(facts.spend[1].values()), new))
            cac_by_channel = {
                channel: money(ratio(amount, facts.new_customers_by_channel.get(channel, 0)))
                for channel, amount in sorted(facts.spend[1].items())
            }

    leads: list[dict[str, Any]] | None = None
    if overall or facts.leads_by_group:
        leads = [
            {
                "source": row.source,
                "leads": row.leads,
                "converted": row.converted,
                "customers": row.customers,
                "lead_to_customer_rate": rate(ratio(row.customers, row.leads)),
            }
            for row in facts.leads.get(g, [])
        ]

    stages = facts.funnel.stages
    funnel = []
    for from_stage, to_stage in itertools.pairwise(stages):
        entered, advanced = facts.funnel.counts.get((g, from_stage), (0, 0))
        funnel.append(
            {
                "from_stage": from_stage,
                "to_stage": to_stage,
                "entered": entered,
                "advanced": advanced,
                "conversion_rate": rate(ratio(advanced, entered)),
            }
        )

    return {
        "revenue": money(c.revenue or 0.0),
        "revenue_growth": None if latest is None else latest["revenue_growth"],
        "revenue_growth_yoy": None if latest is None else latest["revenue_growth_yoy"],
        "deals_won": c.won,
        "deals_lost": c.lost,
        "win_rate": rate(ratio(c.won, c.won + c.lost)),
        "average_order_value": money(ratio(c.revenue, c.won_with_amount)),
        "median_cycle_days": money(c.median_cycle),
        "p75_cycle_days": money(c.p75_cycle),
        "cac": cac,
        "cac_by_channel": cac_by_channel,
        "nps": _nps_score(nps),
        "nps_responses": 0 if nps is None else nps.responses,
        "open_pipeline": money(pipeline),
        "open_pipeline_deals": n_deals,
        "open_pipeline_estimated": money(estimated),
        "pipeline_coverage": rate(ratio(pipeline, sum(recent) / len(recent) if recent else None)),
        "lead_conversion": leads,
        "web_traffic": _web_traffic(facts) if overall else None,
        "funnel": funnel,
        "periods": periods,
    }


def _web_traffic(facts: Facts) -> list[dict[str, Any]] | None:
    """Per web-analytics channel: sessions → key events → new customers, spend and CAC."""
    if facts.web is None:
        return None
    spend = facts.spend[1] if facts.spend is not None else {}
    # Customers are attributed by deals.lead_source = channel: when no deal's source names a
    # web channel, the names differ (not the conversions), so customer figures are unknown.
    matched = bool(set(facts.web) & set(facts.new_customers_by_channel))
    rows = []
    for channel, (sessions, key_events) in facts.web.items():
        new = facts.new_customers_by_channel.get(channel, 0) if matched else None
        amount = spend.get(channel)
        rows.append(
            {
                "channel": channel,
                "sessions": sessions,
                "key_events": key_events,
                "key_event_rate": rate(ratio(key_events, sessions)),
                "new_customers": new,
                "session_to_customer_rate": rate(ratio(new, sessions)),
                "marketing_spend": money(amount),
                "cac": money(ratio(amount, new)),
            }
        )
    return rows

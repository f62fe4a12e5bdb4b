"""The catalogue of recommended-action rules (documented in ``docs/actions.md``).

A rule says when it fires (evaluated in ``salesml.actions.engine``), what to do, which driver
concept and KPI it answers, and — when it acts on something the rep can change — which
actionable features its what-if re-score moves. A rule never lists a feature that is not
actionable; the engine checks that against the bundle before any what-if.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    id: str
    kind: str  # deal | process | resources | training | data
    concept: str  # the driver concept it answers
    kpi: str
    action: str  # the advice; {placeholders} filled from the deal
    what_if: tuple[str, ...] = ()  # actionable features the what-if changes (empty: none)


RULES: tuple[Rule, ...] = (
    Rule(
        "stalled_in_stage",
        "deal",
        "Stage progress",
        "time in stage vs won deals (p75)",
        "Agree the next step with the buyer and move the deal to {next_stage}",
        ("current_stage", "days_in_stage"),
    ),
    Rule(
        "no_recent_activity",
        "deal",
        "Engagement",
        "days since last activity vs won deals (p75)",
        "Contact the buyer this week (call or meeting) and log it",
        (
            "days_since_last_activity",
            "activities_7d",
            "activities_30d",
            "activities_90d",
            "activities_total",
            "engagement_trend",
        ),
    ),
    Rule(
        "few_activities_for_stage",
        "deal",
        "Engagement",
        "activities vs won deals at the same stage (p25)",
        "Plan {gap} more touches (meeting, demo, call): won deals at this stage had {typical}",
        (
            "days_since_last_activity",
            "activities_7d",
            "activities_30d",
            "activities_90d",
            "activities_total",
            "engagement_trend",
        ),
    ),
    Rule(
        "engagement_fading",
        "deal",
        "Engagement",
        "activity trend and last-30-day activities vs won deals",
        "Re-engage: activity is falling; book a meeting with the decision maker",
        (
            "days_since_last_activity",
            "activities_7d",
            "activities_30d",
            "activities_90d",
            "activities_total",
            "engagement_trend",
        ),
    ),
    Rule(
        "close_date_overdue",
        "deal",
        "Timing",
        "expected close date in the past (missing next step)",
        "The expected close date has passed: agree a next step and a realistic close date",
        ("days_to_expected_close",),
    ),
    Rule(
        "no_expected_close_date",
        "deal",
        "Timing",
        "missing expected close date",
        "Set an expected close date with the buyer",
        ("days_to_expected_close",),
    ),
    Rule(
        "close_date_pushed_repeatedly",
        "deal",
        "Timing",
        "close-date pushes vs won deals (p90, at least 2)",
        "Re-qualify: confirm budget, timeline and decision maker before forecasting it again",
    ),
    Rule(
        "amount_above_rep_typical",
        "deal",
        "Deal size",
        "amount vs the owner's median won deal (> 2×)",
        "Validate the budget; consider a smaller first phase (the owner's won deals: median "
        "{typical})",
        ("amount", "amount_vs_product_typical", "amount_vs_list_price"),
    ),
    Rule(
        "price_above_list",
        "deal",
        "Deal size",
        "amount vs list price vs won deals (p90)",
        "Review the pricing: won deals sell at a median {typical} of list price",
        ("amount", "amount_vs_product_typical", "amount_vs_list_price"),
    ),
    Rule(
        "stage_regression",
        "deal",
        "Stage progress",
        "moves back to an earlier stage",
        "Re-qualify: the deal went back a stage; confirm the buying process and champion",
    ),
    Rule(
        "missing_amount",
        "data",
        "Deal size",
        "deals without an amount",
        "Enter the deal amount: until then its value is its product's list price where there "
        "is one (as the KPIs and the forecast count it), else unknown",
    ),
    Rule(
        "rep_overloaded",
        "resources",
        "Rep track record",
        "open deals per rep vs the team's capacity",
        "Rebalance: the owner has {value} open deals (team capacity about {typical}); "
        "reassign some or add help",
    ),
    Rule(
        "rep_spare_capacity",
        "resources",
        "Rep track record",
        "open deals per rep vs the team's capacity",
        "Rebalance: the owner has {value} open deals (team usually {typical}) and can take more",
    ),
    Rule(
        "coaching_product",
        "training",
        "Rep track record",
        "owner's win rate on a product vs the team's",
        "Coaching: the owner wins {value} of {segment} deals against the team's {typical}",
    ),
    Rule(
        "coaching_stage",
        "training",
        "Rep track record",
        "owner's conversion from a stage vs the team's",
        "Coaching: the owner's deals in {segment} win {value} against the team's {typical}",
    ),
    Rule(
        "process_stage_drop",
        "process",
        "Stage progress",
        "stage conversion, recent vs history",
        "Review the {segment} stage: its conversion fell from {typical} to {value} recently",
    ),
)

BY_ID: dict[str, Rule] = {r.id: r for r in RULES}

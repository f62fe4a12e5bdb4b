"""The features, declared as data: name, kind, entity, window, what it means and to whom.

``FIXED_FEATURES`` are computed for every history (NaN or ``"missing"`` where a table is
absent); custom deal attributes join them unless the leakage screen excludes them. Bump
``FEATURE_SPEC_VERSION`` whenever a definition changes: a model bundle records the version it
was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from features.history import History
from features.screen import screen_attributes, screen_deal_columns
from salesml.schemas import ATTRIBUTE_PREFIX

FEATURE_SPEC_VERSION = "1.1"  # 1.1: meetings_total; flat exports read the deals table
MISSING = "missing"  # the category of a categorical feature with no value


@dataclass(frozen=True)
class Feature:
    """One model input, computed for a deal as of a date."""

    name: str
    kind: Literal["numeric", "categorical"]
    entity: Literal["deal", "rep", "account"]
    window_days: int | None
    description: str
    concept: str  # the group a sales rep recognises (or the custom attribute's name)
    actionable: bool  # can the rep change it (activity, close date, amount…)


Entity = Literal["deal", "rep", "account"]


def _n(name: str, entity: Entity, window: int | None, concept: str, actionable: bool) -> Feature:
    return Feature(name, "numeric", entity, window, DESCRIPTIONS[name], concept, actionable)


def _c(name: str, entity: Entity, concept: str, actionable: bool) -> Feature:
    return Feature(name, "categorical", entity, None, DESCRIPTIONS[name], concept, actionable)


ENG, STAGE, SIZE, TIMING = "Engagement", "Stage progress", "Deal size", "Timing"
REP, ACCOUNT, PROFILE = "Rep track record", "Account", "Deal profile"

DESCRIPTIONS: dict[str, str] = {
    "age_days": "Days since the deal was created.",
    "current_stage": (
        "Stage at as_of: the stage of the last stage-history row stamped at or before as_of "
        "('missing' when there is none)."
    ),
    "days_in_stage": (
        "Days since the deal entered its current stage (rows that only push the close date or "
        "change the amount do not restart the clock)."
    ),
    "stage_regressions": (
        "Moves back to an earlier stage so far, under the stage order known at as_of."
    ),
    "days_to_expected_close": (
        "Expected close date at as_of minus as_of, in days; negative when overdue."
    ),
    "close_date_pushes": "Times the expected close date moved later so far.",
    "push_days_total": "Total days the expected close date moved later so far.",
    "amount": (
        "Deal amount at as_of (from the stage history; for a deal without any, the deals "
        "table's amount when the leakage screen keeps it)."
    ),
    "amount_changes": "Times the amount changed so far.",
    "amount_vs_product_typical": (
        "Amount at as_of over the median amount of the product's deals won at or before as_of."
    ),
    "amount_vs_list_price": "Amount at as_of over the product's list price.",
    "activities_7d": "Activities logged in the 7 days up to as_of.",
    "activities_30d": "Activities logged in the 30 days up to as_of.",
    "activities_90d": "Activities logged in the 90 days up to as_of.",
    "activities_total": "Activities logged up to as_of.",
    "days_since_last_activity": (
        "Days since the latest activity at or before as_of (NaN when there is none)."
    ),
    "engagement_trend": "Activities in the last 30 days minus activities in the 30 days before.",
    "meetings_total": "Meetings and demos logged up to as_of (activities of those types).",
    "product": "Product sold.",
    "lead_source": "Channel the deal came from.",
    "deal_type": "Deal type (new business, expansion, renewal, …).",
    "sales_team": "The deal's sales team.",
    "region": "The deal's sales region.",
    "rep_win_rate_365d": (
        "Owner's win rate over deals closed in the 365 days up to as_of, shrunk toward the team's"
        " rate: (wins + 10 × team rate) / (closed + 10)."
    ),
    "rep_closed_deals_365d": "Deals the owner closed (won or lost) in the 365 days up to as_of.",
    "rep_cycle_days_365d": (
        "Owner's median days from creation to win over deals won in the 365 days up to as_of, "
        "shrunk toward the team's median: (n × rep + 10 × team) / (n + 10)."
    ),
    "rep_open_deals": "Deals the owner has open at as_of (this one included).",
    "rep_open_amount": "Total amount at as_of of the owner's open deals (unknown amounts count 0).",
    "rep_tenure_days": "Days since the owner was hired.",
    "account_won_deals": "Deals of the account won at or before as_of.",
    "account_won_revenue": "Revenue of the account's deals won at or before as_of.",
    "account_employees": "Account head count.",
    "account_industry": "Account industry.",
    "account_size_band": (
        "Account size band by head count: 1-49, 50-249, 250-999, 1000-4999, 5000+."
    ),
}


FIXED_FEATURES: tuple[Feature, ...] = (
    _n("age_days", "deal", None, TIMING, False),
    _c("current_stage", "deal", STAGE, True),
    _n("days_in_stage", "deal", None, STAGE, True),
    _n("stage_regressions", "deal", None, STAGE, False),
    _n("days_to_expected_close", "deal", None, TIMING, True),
    _n("close_date_pushes", "deal", None, TIMING, False),
    _n("push_days_total", "deal", None, TIMING, False),
    _n("amount", "deal", None, SIZE, True),
    _n("amount_changes", "deal", None, SIZE, False),
    _n("amount_vs_product_typical", "deal", None, SIZE, True),
    _n("amount_vs_list_price", "deal", None, SIZE, True),
    _n("activities_7d", "deal", 7, ENG, True),
    _n("activities_30d", "deal", 30, ENG, True),
    _n("activities_90d", "deal", 90, ENG, True),
    _n("activities_total", "deal", None, ENG, True),
    _n("days_since_last_activity", "deal", None, ENG, True),
    _n("engagement_trend", "deal", 60, ENG, True),
    _n("meetings_total", "deal", None, ENG, True),
    _c("product", "deal", PROFILE, False),
    _c("lead_source", "deal", PROFILE, False),
    _c("deal_type", "deal", PROFILE, False),
    _c("sales_team", "deal", PROFILE, False),
    _c("region", "deal", PROFILE, False),
    _n("rep_win_rate_365d", "rep", 365, REP, False),
    _n("rep_closed_deals_365d", "rep", 365, REP, False),
    _n("rep_cycle_days_365d", "rep", 365, REP, False),
    _n("rep_open_deals", "rep", None, REP, False),
    _n("rep_open_amount", "rep", None, REP, False),
    _n("rep_tenure_days", "rep", None, REP, False),
    _n("account_won_deals", "account", None, ACCOUNT, False),
    _n("account_won_revenue", "account", None, ACCOUNT, False),
    _n("account_employees", "account", None, ACCOUNT, False),
    _c("account_industry", "account", ACCOUNT, False),
    _c("account_size_band", "account", ACCOUNT, False),
)


def attribute_feature(name: str, kind: str) -> Feature:
    """The feature of custom deal attribute ``name`` (column ``attr_<name>``)."""
    return Feature(
        ATTRIBUTE_PREFIX + name,
        "numeric" if kind == "numeric" else "categorical",
        "deal",
        None,
        f"Custom deal attribute '{name}' (treated as known from the deal's creation).",
        name,
        False,
    )


def feature_spec(history: History) -> list[Feature]:
    """The fixed features, then every custom attribute the leakage screen keeps, by name."""
    excluded = excluded_attributes(history)
    custom = [
        attribute_feature(name, kind)
        for name, kind in sorted(history.attributes.items())
        if name not in excluded
    ]
    return [*FIXED_FEATURES, *custom]


def excluded_attributes(history: History) -> dict[str, str]:
    """Custom attributes left out of the features, each with the reason (see docs/features.md)."""
    return screen_attributes(history.deals, history.attributes)


def flat_deals(history: History) -> np.ndarray:
    """Per row of ``history.deals``: whether the deal has no stage-history row at all."""
    # Plain object arrays: pandas' isin on Arrow-backed strings converts every value to a
    # pyarrow scalar first (~0.1 s per call on 3,000 deals; this runs several times per build).
    ids = history.deals["deal_id"].to_numpy(dtype=object)
    staged = pd.unique(history.stage_history["deal_id"].dropna().to_numpy(dtype=object))
    found = pd.Series(ids, dtype=object).isin(staged).to_numpy(dtype=bool)
    return np.asarray(~found, dtype=bool)


def flat_columns(history: History) -> dict[str, str]:
    """Deals-table columns (``amount``, ``stage``, ``expected_close_date``) read as the
    creation-time values of deals without stage history, each with why (see
    ``features.screen.screen_deal_columns``); the others stay unknown for those deals."""
    return _flat_screen(history)[0]


def excluded_flat_columns(history: History) -> dict[str, str]:
    """The deals-table columns a deal without stage history does not read, each with why
    (empty when every deal has a stage history)."""
    return _flat_screen(history)[1]


def _flat_screen(history: History) -> tuple[dict[str, str], dict[str, str]]:
    """The screen on ``history``; a column it keeps stays out when the whole export (of which
    ``history`` is a truncation) leaves it out: the export's own open deals judge it."""
    kept, excluded = screen_deal_columns(history.deals, flat_deals(history))
    for column, why in history.export_excluded.items():
        if column in kept:
            del kept[column]
            excluded[column] = f"on the whole export: {why}"
    return kept, excluded

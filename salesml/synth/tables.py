"""Turn the simulated arrays into canonical column sets (Arrow arrays, ids dictionary-encoded)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from salesml.synth import catalog
from salesml.synth.activities import Activities
from salesml.synth.arrow import categorical, join_strings, sequential_ids
from salesml.synth.deals import Deals
from salesml.synth.events import StageHistory
from salesml.synth.funnel import Leads, Nps, Spend, WebSessions
from salesml.synth.timeline import FloatArray, IntArray, Timeline
from salesml.synth.world import Accounts, Reps

PRODUCT_NAMES: tuple[str, ...] = tuple(p[0] for p in catalog.PRODUCTS)


def _floats(values: FloatArray) -> pa.Array:
    mask = np.isnan(values)
    return pa.array(
        np.where(mask, 0.0, values), type=pa.float64(), mask=mask if mask.any() else None
    )


def deal_status(deals: Deals, timeline: Timeline) -> IntArray:
    """Status code per deal at the export: index into ``catalog.STATUSES``."""
    return np.asarray(np.where(deals.is_open(timeline), 0, np.where(deals.won, 1, 2)), np.int64)


def deals_columns(
    deals: Deals,
    history: StageHistory,
    timeline: Timeline,
    reps: Reps,
    accounts: Accounts,
    deal_ids: pa.Array,
) -> tuple[dict[str, pa.Array], dict[str, pa.Array]]:
    """Canonical ``deals`` columns and the custom attribute columns."""
    is_open = deals.is_open(timeline)
    canonical = {
        "deal_id": deal_ids,
        "name": _deal_names(deals, accounts),
        "created_at": timeline.timestamps(deals.created),
        "status": categorical(deal_status(deals, timeline), catalog.STATUSES),
        "closed_at": timeline.timestamps(deals.closed, mask=is_open),
        "amount": _floats(history.current_amount),
        "currency": categorical(np.zeros(deals.n, dtype=np.int64), (catalog.CURRENCY,)),
        "owner_id": categorical(deals.owner, reps.ids),
        "stage": categorical(history.current_stage, catalog.STAGES),
        "expected_close_date": timeline.dates(history.current_expected),
        "account_id": categorical(deals.account, accounts.ids),
        "product": categorical(deals.product, PRODUCT_NAMES),
        "lead_source": categorical(deals.source, catalog.LEAD_SOURCES),
        "deal_type": categorical(deals.deal_type, catalog.DEAL_TYPES),
        "team": categorical(deals.team, catalog.TEAMS),
        "region": categorical(deals.region, catalog.REGIONS),
    }
    extra = {
        "competitor": categorical(deals.competitor, catalog.COMPETITORS),
        "noise_score": pa.array(deals.noise_score, type=pa.float64()),
        "noise_label": categorical(deals.noise_label, catalog.NOISE_LABELS),
    }
    return canonical, extra


def _deal_names(deals: Deals, accounts: Accounts) -> pa.Array:
    """``<account> – <product>[ expansion| renewal]``."""
    return join_strings(
        [
            categorical(deals.account, accounts.names),
            " – ",
            categorical(deals.product, PRODUCT_NAMES),
            categorical(deals.deal_type, catalog.DEAL_TYPE_NAME_SUFFIX),
        ]
    )


def stage_history_columns(
    history: StageHistory, timeline: Timeline, deal_ids: pa.Array
) -> dict[str, pa.Array]:
    """Canonical ``stage_history`` columns."""
    return {
        "deal_id": categorical(history.deal, deal_ids),
        "stage": categorical(history.stage, catalog.STAGES),
        "changed_at": timeline.timestamps_from_seconds(history.secs),
        "amount": _floats(history.amount),
        "expected_close_date": timeline.dates(history.expected),
    }


def activities_columns(
    activities: Activities, deals: Deals, timeline: Timeline, reps: Reps, deal_ids: pa.Array
) -> dict[str, pa.Array]:
    """Canonical ``activities`` columns; ids ``T…`` follow time order."""
    n = len(activities.time)
    return {
        "activity_id": sequential_ids("T", n, 8),
        "deal_id": categorical(activities.deal, deal_ids),
        "occurred_at": timeline.timestamps(activities.time),
        "type": categorical(activities.kind, catalog.ACTIVITY_TYPES),
        "owner_id": categorical(deals.owner[activities.deal], reps.ids),
    }


def leads_columns(
    leads: Leads, timeline: Timeline, reps: Reps, deal_ids: pa.Array
) -> dict[str, pa.Array]:
    """Canonical ``leads`` columns; ids ``L…`` follow creation order."""
    return {
        "lead_id": sequential_ids("L", len(leads.created), 7),
        "created_at": timeline.timestamps(leads.created),
        "source": categorical(leads.channel, catalog.CHANNELS),
        "owner_id": categorical(leads.owner, reps.ids),
        "converted_at": timeline.timestamps(leads.converted, mask=np.isnan(leads.converted)),
        "deal_id": categorical(leads.deal, deal_ids),
        "disqualified_at": timeline.timestamps(
            leads.disqualified, mask=np.isnan(leads.disqualified)
        ),
    }


def spend_columns(spend: Spend, timeline: Timeline) -> dict[str, pa.Array]:
    """Canonical ``marketing_spend`` columns."""
    return {
        "period": timeline.dates(spend.month_start),
        "channel": categorical(spend.channel, catalog.CHANNELS),
        "amount": pa.array(spend.amount, type=pa.float64()),
    }


def web_sessions_columns(web: WebSessions, timeline: Timeline) -> dict[str, pa.Array]:
    """Canonical ``web_sessions`` columns."""
    return {
        "period": timeline.dates(web.month_start),
        "channel": categorical(web.channel, catalog.CHANNELS),
        "sessions": pa.array(web.sessions, type=pa.int64()),
        "key_events": pa.array(web.key_events, type=pa.float64()),  # a number (GA4: fractional)
    }


def nps_columns(nps: Nps, timeline: Timeline, accounts: Accounts) -> dict[str, pa.Array]:
    """Canonical ``nps_responses`` columns; ids ``N…`` follow time order."""
    return {
        "response_id": sequential_ids("N", len(nps.time), 6),
        "account_id": categorical(nps.account, accounts.ids),
        "responded_at": timeline.timestamps(nps.time),
        "score": pa.array(nps.score, type=pa.int64()),
    }

"""The top and the tail of the funnel: leads, marketing spend by channel, NPS responses.

Every new-business deal with a lead source comes from a converted lead of that channel
(``converted_at`` = the deal's ``created_at``); each channel also has the leads that never
converted, in proportion to its conversion rate, most of them disqualified. Monthly spend per
channel is the channel's cost per lead times its lead volume (with noise), so CAC differs by
channel. Accounts answer NPS surveys after won deals; the score depends on the product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salesml.synth import catalog, effects
from salesml.synth.deals import Deals
from salesml.synth.timeline import FloatArray, IntArray, Timeline
from salesml.synth.world import Reps, pick_reps

NO_DEAL = -1


@dataclass(frozen=True)
class Leads:
    """Leads sorted by creation time; ``deal`` is NO_DEAL for leads that did not convert."""

    created: FloatArray
    channel: IntArray
    owner: IntArray
    converted: FloatArray  # NaN when not converted
    deal: IntArray
    disqualified: FloatArray  # NaN when not disqualified (yet)


@dataclass(frozen=True)
class Spend:
    """Monthly spend per channel: ``month_start`` is a day index (may precede the history)."""

    month_start: IntArray
    channel: IntArray
    amount: FloatArray


@dataclass(frozen=True)
class WebSessions:
    """Monthly web sessions and key events of the channels a site tracks."""

    month_start: IntArray
    channel: IntArray
    sessions: IntArray
    key_events: IntArray


@dataclass(frozen=True)
class Nps:
    """NPS answers sorted by time."""

    account: IntArray
    time: FloatArray
    score: IntArray


def make_leads(rng: np.random.Generator, timeline: Timeline, deals: Deals, reps: Reps) -> Leads:
    """Converted leads behind the deals plus the channel's unconverted leads."""
    n_channels = len(catalog.CHANNELS)
    from_lead = np.flatnonzero((deals.source >= 0) & (deals.source < n_channels))
    conv_channel = deals.source[from_lead]
    conv_time = deals.created[from_lead]
    conv_created = conv_time - rng.gamma(1.5, 8.0, len(from_lead))

    rate = np.asarray([effects.LEAD_CONVERSION[c] for c in catalog.CHANNELS])
    converted_per_channel = np.bincount(conv_channel, minlength=n_channels)
    others = np.round(converted_per_channel * (1.0 / rate - 1.0)).astype(np.int64)
    n_other = int(others.sum())
    other_created = timeline.sample_creation(rng, n_other)
    other_channel = rng.permutation(np.repeat(np.arange(n_channels), others))
    other_owner = pick_reps(rng, reps, other_created, ~reps.departed, np.ones(reps.n))
    dq_time = other_created + rng.gamma(1.2, 10.0, n_other)
    dq = (rng.random(n_other) < effects.LEAD_DISQUALIFIED_SHARE) & (dq_time < timeline.n_days)

    created = np.concatenate([conv_created, other_created])
    order = np.argsort(created, kind="stable")
    nan_other = np.full(n_other, np.nan)
    return Leads(
        created=created[order],
        channel=np.concatenate([conv_channel, other_channel])[order],
        owner=np.concatenate([deals.owner[from_lead], other_owner])[order],
        converted=np.concatenate([conv_time, nan_other])[order],
        deal=np.concatenate([from_lead, np.full(n_other, NO_DEAL)])[order],
        disqualified=np.concatenate(
            [np.full(len(from_lead), np.nan), np.where(dq, dq_time, np.nan)]
        )[order],
    )


def _monthly_leads(timeline: Timeline, leads: Leads) -> tuple[IntArray, IntArray]:
    """(month starts from the first to the last month of the history, leads per (month,
    channel))."""
    n_channels = len(catalog.CHANNELS)
    last_day = np.asarray([timeline.n_days - 1], dtype=np.int64)
    n_months = int(
        (
            timeline.calendar(last_day).astype("datetime64[M]") - np.datetime64(timeline.start, "M")
        ).astype(np.int64)[0]
        + 1
    )
    months = timeline.month_start_index(
        np.zeros(n_months, dtype=np.int64), np.arange(n_months, dtype=np.int64)
    )
    inside = (leads.created >= 0) & (leads.created < timeline.n_days)
    month_of = np.searchsorted(months, np.floor(leads.created[inside]), side="right") - 1
    counts = np.bincount(
        month_of * n_channels + leads.channel[inside], minlength=n_months * n_channels
    ).reshape(n_months, n_channels)
    return months, counts


def make_spend(rng: np.random.Generator, timeline: Timeline, leads: Leads) -> Spend:
    """Spend per (month, channel) from the first to the last month of the history."""
    n_channels = len(catalog.CHANNELS)
    months, counts = _monthly_leads(timeline, leads)
    n_months = len(months)
    cpl = np.asarray([effects.COST_PER_LEAD[c] for c in catalog.CHANNELS])
    noise = np.exp(effects.SPEND_NOISE_SIGMA * rng.standard_normal((n_months, n_channels)))
    amount = np.round(counts * cpl[None, :] * noise, 2)
    return Spend(
        month_start=np.repeat(months, n_channels),
        channel=np.tile(np.arange(n_channels), n_months),
        amount=amount.ravel(),
    )


def make_web_sessions(rng: np.random.Generator, timeline: Timeline, leads: Leads) -> WebSessions:
    """Sessions (Poisson around leads × sessions per lead) and key events (the leads) per
    month for the channels a site tracks."""
    months, counts = _monthly_leads(timeline, leads)
    tracked = [catalog.CHANNELS.index(c) for c in effects.SESSIONS_PER_LEAD]
    per_lead = np.asarray(list(effects.SESSIONS_PER_LEAD.values()))
    key_events = counts[:, tracked]
    sessions = rng.poisson(key_events * per_lead[None, :] + 1.0)
    return WebSessions(
        month_start=np.repeat(months, len(tracked)),
        channel=np.tile(np.asarray(tracked, dtype=np.int64), len(months)),
        sessions=sessions.ravel().astype(np.int64),
        key_events=key_events.ravel().astype(np.int64),
    )


def make_nps(rng: np.random.Generator, timeline: Timeline, deals: Deals) -> Nps:
    """Survey answers some weeks after won deals; the mean score depends on the product."""
    won = np.flatnonzero(deals.won & ~deals.is_open(timeline))
    answers = won[rng.random(len(won)) < effects.NPS_RESPONSE_SHARE]
    time = deals.closed[answers] + 14.0 + rng.gamma(2.0, 40.0, len(answers))
    keep = time < timeline.n_days
    answers, time = answers[keep], time[keep]
    mean = np.asarray([effects.NPS_MEAN_BY_PRODUCT[p[0]] for p in catalog.PRODUCTS])
    raw = mean[deals.product[answers]] + effects.NPS_SIGMA * rng.standard_normal(len(answers))
    score = np.clip(np.round(raw), 0, 10).astype(np.int64)
    order = np.argsort(time, kind="stable")
    return Nps(account=deals.account[answers][order], time=time[order], score=score[order])

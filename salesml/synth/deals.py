"""Deals: who owns them, what they sell, their latent drivers, and how and when they end.

Every deal's fate is drawn at creation: a win probability from the planted logistic model
(:mod:`salesml.synth.effects`), an outcome, an exit stage for lost deals and a log-normal
cycle length; seasonal slips then move some closings to quarter ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salesml.synth import catalog, effects
from salesml.synth.timeline import BoolArray, FloatArray, IntArray, Timeline
from salesml.synth.world import (
    Accounts,
    Reps,
    choose,
    choose_by_row,
    list_prices,
    pick_accounts,
    pick_reps,
    product_mix,
)

UNTRACKED = -1  # lead_source code of deals with no source recorded
LAST_STAGE = len(catalog.STAGES) - 1


@dataclass(frozen=True)
class Deals:
    """Per-deal arrays (index = deal number - 1, in creation order) and their latent truth."""

    created: FloatArray  # days since the history start
    owner: IntArray  # index into Reps
    team: IntArray
    region: IntArray
    account: IntArray
    product: IntArray
    deal_type: IntArray
    source: IntArray  # index into catalog.LEAD_SOURCES, UNTRACKED when missing
    competitor: IntArray
    noise_score: FloatArray
    noise_label: IntArray
    quantity: FloatArray
    discount: FloatArray
    amount0: FloatArray  # amount at creation
    price_ratio: FloatArray  # amount0 / list price
    engagement_z: FloatArray
    engagement_rate: FloatArray  # activities per day
    rep_skill: FloatArray
    employees: IntArray
    logit: FloatArray
    p_win: FloatArray
    won: BoolArray  # eventual outcome, also for deals still open at the export
    exit_stage: IntArray  # last stage reached (LAST_STAGE for won deals)
    log_cycle_base: FloatArray  # log median cycle before the outcome term
    cycle_median: FloatArray  # median cycle of the deal's own distribution (with outcome)
    closed: FloatArray  # eventual close time (days since start); > n_days for open deals
    departed_owner: BoolArray
    rep_left: FloatArray  # per rep: day the rep left (inf for reps still on board)
    logit_sd: dict[str, float]

    @property
    def n(self) -> int:
        """Number of deals."""
        return len(self.created)

    def is_open(self, timeline: Timeline) -> BoolArray:
        """Deals not yet closed at the export."""
        return np.asarray(self.closed >= timeline.n_days, dtype=np.bool_)


def _lookup(table: dict[str, float], names: tuple[str, ...]) -> FloatArray:
    return np.asarray([table[k] for k in names], dtype=np.float64)


def _assign_departed(
    rng: np.random.Generator, reps: Reps, created: FloatArray, owner: IntArray, n_days: int
) -> tuple[BoolArray, FloatArray]:
    """Hand a small share of deals to reps who later leave; returns (mask, left day per rep)."""
    n = len(created)
    departed_pool = np.flatnonzero(reps.departed)
    candidates = np.flatnonzero(created < n_days - 60)
    k = min(len(candidates), max(1, round(effects.DEPARTED_OWNER_SHARE * n)))
    chosen = np.sort(rng.choice(candidates, k, replace=False)) if k else candidates[:0]
    owner[chosen] = departed_pool[rng.integers(0, len(departed_pool), len(chosen))]
    last_deal = np.full(reps.n, -np.inf)
    np.maximum.at(last_deal, owner[chosen], created[chosen])
    left = np.where(
        np.isfinite(last_deal),
        last_deal + rng.uniform(5.0, 60.0, reps.n),
        rng.uniform(30.0, max(n_days - 60.0, 31.0), reps.n),
    )
    mask = np.zeros(n, dtype=np.bool_)
    mask[chosen] = True
    return mask, np.where(reps.departed, np.floor(left), np.inf)


def _win_logit(
    source: IntArray,
    competitor: IntArray,
    deal_type: IntArray,
    product: IntArray,
    engagement_z: FloatArray,
    rep_skill: FloatArray,
    price_ratio: FloatArray,
    employees: IntArray,
    noise_score: FloatArray,
    noise_label: IntArray,
) -> tuple[FloatArray, dict[str, float]]:
    source_effect = np.append(
        _lookup(effects.LEAD_SOURCE_EFFECT, catalog.LEAD_SOURCES), effects.UNTRACKED_SOURCE_EFFECT
    )  # index -1 (UNTRACKED) reads the appended last entry
    parts: dict[str, FloatArray] = {
        "engagement": effects.ENGAGEMENT_COEF * engagement_z,
        "rep_skill": effects.REP_SKILL_COEF * rep_skill,
        "price_ratio": effects.PRICE_RATIO_COEF * np.log(price_ratio),
        "lead_source": source_effect[source],
        "competitor": _lookup(effects.COMPETITOR_EFFECT, catalog.COMPETITORS)[competitor],
        "deal_type": _lookup(effects.DEAL_TYPE_EFFECT, catalog.DEAL_TYPES)[deal_type],
        "product": _lookup(effects.PRODUCT_EFFECT, tuple(p[0] for p in catalog.PRODUCTS))[product],
        "account_size": effects.ACCOUNT_SIZE_COEF * (np.log10(employees) - 2.5),
        "noise_score": effects.NOISE_SCORE_COEF * (noise_score - 50.0),
        "noise_label": _lookup(effects.NOISE_LABEL_EFFECT, catalog.NOISE_LABELS)[noise_label],
    }
    logit = np.full(len(source), effects.WIN_INTERCEPT)
    for part in parts.values():
        logit += part
    sd = {k: round(float(np.std(v)), 4) if len(v) else 0.0 for k, v in parts.items()}
    return logit, sd


def _slip_closings(
    rng: np.random.Generator,
    timeline: Timeline,
    day: IntArray,
    won: BoolArray,
    quarter_end: bool = True,
) -> IntArray:
    """Seasonal slips: some closes move to the last month of their quarter (see effects).

    ``quarter_end=False`` switches every slip off (the same random draws are made, so the rest
    of the history is unchanged): a history without quarter-end peaks."""
    month = timeline.month(day)
    in_quarter = (month - 1) % 3
    p = np.where(won, effects.QUARTER_END_SLIP["won"], effects.QUARTER_END_SLIP["lost"])
    p = p + np.where((month == 7) | (month == 8), effects.SUMMER_SLIP, 0.0)
    p = np.where(won & ((month == 10) | (month == 11)), effects.DECEMBER_SLIP_WON, p)
    slip = (in_quarter < 2) & (rng.random(len(day)) < p) & quarter_end
    first = timeline.month_start_index(day, 2 - in_quarter)
    last = timeline.month_start_index(day, 3 - in_quarter) - 1
    target = first + np.floor(rng.random(len(day)) * (last - first + 1)).astype(np.int64)
    wd = timeline.weekday(target)
    target = target - np.where(wd >= 5, wd - 4, 0)  # quarter-end deals close on a weekday
    return np.where(slip, np.maximum(target, day), day)


def make_deals(
    rng: np.random.Generator,
    n: int,
    timeline: Timeline,
    reps: Reps,
    accounts: Accounts,
    quarter_end: bool = True,
) -> Deals:
    """Draw ``n`` deals with their latent drivers, outcome and eventual close time."""
    created = timeline.sample_creation(rng, n)
    load = np.asarray(catalog.TEAM_DEAL_LOAD)[reps.team]
    owner = pick_reps(rng, reps, created, ~reps.departed, load)
    departed_owner, rep_left = _assign_departed(rng, reps, created, owner, timeline.n_days)
    team, region = reps.team[owner], reps.region[owner]
    account = pick_accounts(rng, accounts, team, region)
    product = choose_by_row(rng, product_mix(), team)
    deal_type = choose(rng, catalog.DEAL_TYPE_SHARE, n)
    channel = choose_by_row(rng, np.asarray(catalog.CHANNEL_SHARE_BY_TEAM), team)
    untracked = rng.random(n) < catalog.UNTRACKED_SOURCE_SHARE
    existing = catalog.LEAD_SOURCES.index(catalog.EXISTING_CUSTOMER)
    source = np.where(deal_type == 0, np.where(untracked, UNTRACKED, channel), existing)
    competitor = choose(rng, catalog.COMPETITOR_SHARE, n)
    noise_score = np.round(rng.normal(50.0, 15.0, n), 1)
    noise_label = rng.integers(0, len(catalog.NOISE_LABELS), n)

    price = list_prices()[product]
    quantity = np.exp(effects.QUANTITY_SIGMA * rng.standard_normal(n))
    discount = rng.beta(*effects.DISCOUNT_BETA, n)
    amount0 = np.maximum(10.0, np.round(price * quantity * (1.0 - discount), -1))
    price_ratio = amount0 / price
    engagement_z = rng.standard_normal(n)
    engagement_rate = effects.ENGAGEMENT_BASE_RATE * np.exp(effects.ENGAGEMENT_SIGMA * engagement_z)
    rep_skill = reps.skill[owner]
    employees = accounts.employees[account]

    logit, logit_sd = _win_logit(
        source, competitor, deal_type, product, engagement_z, rep_skill, price_ratio,
        employees, noise_score, noise_label,
    )  # fmt: skip
    p_win = 1.0 / (1.0 + np.exp(-logit))
    won = rng.random(n) < p_win
    exit_stage = np.where(won, LAST_STAGE, choose(rng, catalog.LOST_EXIT_STAGE_SHARE, n))

    log_base = (
        np.log(effects.CYCLE_BASE_MEDIAN_DAYS)
        + effects.CYCLE_PRICE_COEF * np.log(price / effects.CYCLE_PRICE_REF)
        + effects.CYCLE_SIZE_COEF * (np.log10(employees) - 2.5)
        + effects.CYCLE_AMOUNT_COEF * np.log(price_ratio)
        + effects.CYCLE_RENEWAL_COEF * (deal_type == catalog.DEAL_TYPES.index("renewal"))
    )
    lost_factor = np.asarray(effects.CYCLE_LOST_EXIT_FACTOR)[exit_stage]
    log_median = log_base + np.where(won, 0.0, np.log(lost_factor))
    cycle = np.exp(log_median + effects.CYCLE_SIGMA * rng.standard_normal(n))
    cycle = np.clip(cycle, effects.CYCLE_MIN_DAYS, effects.CYCLE_MAX_DAYS)
    day = timeline.next_weekday(np.floor(created + cycle).astype(np.int64))
    day = _slip_closings(rng, timeline, day, won, quarter_end)
    closed = np.maximum(day + rng.random(n), created + effects.CYCLE_MIN_DAYS)

    return Deals(
        created=created,
        owner=owner,
        team=team,
        region=region,
        account=account,
        product=product,
        deal_type=deal_type,
        source=source,
        competitor=competitor,
        noise_score=noise_score,
        noise_label=noise_label,
        quantity=quantity,
        discount=discount,
        amount0=amount0,
        price_ratio=price_ratio,
        engagement_z=engagement_z,
        engagement_rate=engagement_rate,
        rep_skill=rep_skill,
        employees=employees,
        logit=logit,
        p_win=p_win,
        won=won,
        exit_stage=exit_stage,
        log_cycle_base=log_base,
        cycle_median=np.exp(log_median),
        closed=closed,
        departed_owner=departed_owner,
        rep_left=rep_left,
        logit_sd=logit_sd,
    )

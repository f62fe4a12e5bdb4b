"""What the rest of the history says about a deal's rep, team, account, product and stages at
one as_of, computed once per snapshot for the one-deal path (``features.single``).

A what-if or a new deal changes one open deal. Such a deal never counts in any record (only
deals closed at or before as_of do), so a rep's, team's, account's and product's record at
as_of is the same with or without the change: it is computed here, by the batch's own
functions queried for every rep, team, account and product at once, and looked up per request.
What the change does move — the owner's open pipeline, the stage order (a deal's first entry
into a stage is one vote in it) — is kept as the sums it is made of, which a request corrects
for the one deal: its cost grows with the deal's own rows and its owner's open deals, never with
the history.

Every value is the batch's, bit for bit: the same numpy operations on the same numbers in the
same order (running totals are continued from the batch's own total before the deal).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features._context import REP_WINDOW_DAYS, Deals, shrunk_rep_record
from features._events import (
    MICROS_PER_DAY,
    NAT,
    EventIndex,
    FloatArray,
    IntArray,
    days_between,
    micros,
    prefix_sum,
)
from features._stages import CodedStages, first_entries, positions_of


@dataclass(frozen=True)
class GroupRecord:
    """Deals closed and won in the rep window, and the median won cycle, per group code (the
    last slot: a code the history lacks, whose record is empty)."""

    closed: FloatArray
    won: FloatArray
    cycle: FloatArray

    def at(self, code: int) -> tuple[FloatArray, FloatArray, FloatArray]:
        i = min(code, len(self.closed) - 1)
        return self.closed[i : i + 1], self.won[i : i + 1], self.cycle[i : i + 1]


@dataclass(frozen=True)
class EntityState:
    """Per-entity aggregates at ``time`` (microseconds) for one-deal feature rows."""

    time: int
    owner: GroupRecord
    team: GroupRecord
    overall: GroupRecord
    hired: dict[str, object]  # owner_id -> hired_at in microseconds (first reps row)
    open_owner: IntArray  # owner code of each open deal (in deal_id order)
    open_by_owner: dict[int, IntArray]  # owner code -> its open deals' slots (ascending)
    account_won: FloatArray  # per account code (+1 slot: unknown account)
    account_revenue: FloatArray
    product_typical: FloatArray  # per product code (+1 slot: unknown product)
    list_price: dict[str, object]  # product -> list price (first products row)
    stage_counts: IntArray  # (stages, ranks): first entries at or before time
    fe_deal: IntArray  # deal position of each first entry (sorted)
    fe_stage: IntArray
    fe_rank: IntArray
    fe_time: IntArray
    push_before: FloatArray  # per deal position (+1: after the last): push days total before
    stage_rows: IntArray  # stage-history rows sorted by deal position
    stage_row_starts: IntArray  # per deal position (+1): where its rows start in stage_rows

    @functools.cached_property
    def positions(self) -> FloatArray:
        """The stage order at ``time`` (``stage_positions``, one date) of the state's history."""
        return positions_of(self.stage_counts[None, :, :])

    def rows_of(self, loc: int) -> IntArray:
        """The stage-history rows of the deal at position ``loc``."""
        return self.stage_rows[self.stage_row_starts[loc] : self.stage_row_starts[loc + 1]]


def _records(d: Deals, group: IntArray, n_groups: int, t: int) -> GroupRecord:
    """``features._context.rep_features``'s ``record`` for every group code at time ``t``."""
    closed = d.won | d.lost
    cycle = days_between(d.closed, d.created)
    q_group = np.arange(n_groups + 1, dtype=np.int64)
    q_time = np.full(len(q_group), t, dtype=np.int64)
    after = q_time - REP_WINDOW_DAYS * MICROS_PER_DAY
    grp = np.where(closed, group, -1)
    ev = EventIndex(grp, d.closed, n_groups + 1)
    wins = prefix_sum(d.won[ev.order])
    n_closed = ev.count_upto(q_group, q_time) - ev.count_upto(q_group, after)
    n_won = ev.sum_upto(wins, q_group, q_time) - ev.sum_upto(wins, q_group, after)
    won_ev = EventIndex(np.where(d.won, group, -1), d.closed, n_groups + 1)
    median = won_ev.window_median(cycle[won_ev.order], q_group, after, q_time)
    return GroupRecord(n_closed.astype(np.float64), n_won, median)


def entity_state(
    history_reps: pd.DataFrame,
    history_products: pd.DataFrame,
    d: Deals,
    stages: CodedStages,
    open_deal: IntArray,
    time: int,
) -> EntityState:
    """The aggregates of ``d`` (the context's deals) and ``stages`` at ``time``."""
    n = len(d.created)
    reps = history_reps.drop_duplicates("owner_id")
    hired = _by_key(reps["owner_id"], micros(reps["hired_at"]).tolist())
    open_owner = d.owner[open_deal]
    order = np.argsort(open_owner, kind="stable")
    cuts = np.flatnonzero(np.diff(open_owner[order])) + 1
    by_owner = {int(open_owner[part[0]]): part for part in np.split(order, cuts) if len(part)}
    # Account wins and revenue (features._context.account_features) for every account code.
    accounts = np.arange(len(d.accounts) + 1, dtype=np.int64)
    at = np.full(len(accounts), time, dtype=np.int64)
    ev = EventIndex(np.where(d.won, d.account, -1), d.closed, len(d.accounts) + 1)
    revenue = prefix_sum(d.final_amount[ev.order])
    # Typical won amount per product (features._context.product_features).
    products = np.arange(len(d.products) + 1, dtype=np.int64)
    priced = d.won & ~np.isnan(d.final_amount)
    pev = EventIndex(np.where(priced, d.product, -1), d.closed, len(d.products) + 1)
    typical = pev.window_median(
        d.final_amount[pev.order],
        products,
        np.full(len(products), NAT),
        np.full(len(products), time, dtype=np.int64),
    )
    table = history_products.drop_duplicates("product")
    prices = table["list_price"].to_numpy(dtype=np.float64)
    stage_state = _stage_state(stages, n, time)
    return EntityState(
        time=time,
        owner=_records(d, d.owner, len(d.owners), time),
        team=_records(d, d.team, len(d.teams), time),
        overall=_records(d, np.zeros_like(d.owner), 1, time),
        hired=hired,
        open_owner=open_owner,
        open_by_owner=by_owner,
        account_won=ev.count_upto(accounts, at).astype(np.float64),
        account_revenue=ev.sum_upto(revenue, accounts, at),
        product_typical=typical,
        list_price=_by_key(table["product"], prices.tolist()),
        **stage_state,
    )


def _by_key(keys: pd.Series, values: list[object]) -> dict[str, object]:
    """A dimension table's values by key as text (``features._context.lookup`` matches keys as
    text); null keys match nothing."""
    out: dict[str, object] = {}
    for key, value in zip(keys.tolist(), values, strict=True):
        if not pd.isna(key):
            out.setdefault(str(key), value)
    return out


def _stage_state(stages: CodedStages, n_deals: int, time: int) -> dict[str, np.ndarray]:
    """First entries (stage order votes) and push-day totals of the coded stage history."""
    n_stages = len(stages.vocabulary)
    ev = EventIndex(stages.deal, stages.time, n_deals, tiebreak=stages.stage)
    stage = stages.stage[ev.order]
    if len(ev) and n_stages:
        first, rank = first_entries(ev, stage, n_stages)
    else:
        first, rank = np.zeros(0, np.int64), np.zeros(0, np.int64)
    fe_time = ev.time[first]
    counts = _votes(stage[first], rank, fe_time <= time, n_stages, int(rank.max(initial=0)) + 1)
    push = push_days(ev, stages.expected_close[ev.order])
    cum = prefix_sum(push)
    by_deal = np.argsort(stages.deal, kind="stable")
    keyed = stages.deal[by_deal]
    return {
        "stage_counts": counts,
        "fe_deal": ev.group[first],
        "fe_stage": stage[first],
        "fe_rank": rank,
        "fe_time": fe_time,
        "push_before": cum[ev.starts],
        "stage_rows": by_deal,
        "stage_row_starts": np.searchsorted(keyed, np.arange(n_deals + 1), side="left"),
    }


def _votes(
    stage: IntArray, rank: IntArray, counted: np.ndarray, n_stages: int, n_ranks: int
) -> IntArray:
    """(stages, ranks) counts of the first entries ``counted``."""
    key = stage[counted] * n_ranks + rank[counted]
    return np.bincount(key, minlength=n_stages * n_ranks).reshape(n_stages, n_ranks)


def push_days(ev: EventIndex, ecd: IntArray) -> FloatArray:
    """Days each row pushed the expected close date (``coded_stage_features``'s ``push_days``)."""
    same = np.r_[False, ev.group[1:] == ev.group[:-1]]
    prev_ecd = np.r_[NAT, ecd[:-1]]
    pushed = same & (ecd != NAT) & (prev_ecd != NAT) & (ecd > prev_ecd)
    return np.asarray(np.where(pushed, (ecd - np.where(pushed, prev_ecd, 0)) / MICROS_PER_DAY, 0.0))


def changed_positions(
    state: EntityState,
    old_vocabulary: list[str],
    names: list[str],
    loc: int,
    own: CodedStages,
) -> FloatArray:
    """The stage order at ``state.time`` (``stage_positions``, one date) once the deal at
    ``loc`` (-1: a new deal) has the rows ``own`` (coded into ``names``, deal 0) instead of
    its own.

    The order counts each deal's first entry into each stage (and its rank); a change that
    keeps the deal's counted first entries (an amount or close-date what-if, a repeated stage)
    leaves it as the state has it."""
    new = _first_entries(own, state.time)
    same_names = names is old_vocabulary or names == old_vocabulary
    remap = (
        None
        if same_names
        else np.searchsorted(
            np.asarray(names, dtype=object), np.asarray(old_vocabulary, dtype=object)
        )
    )
    old: list[tuple[int, int]] = []
    if loc >= 0:
        lo, hi = np.searchsorted(state.fe_deal, [loc, loc + 1])
        mine = slice(int(lo), int(hi))
        counted = state.fe_time[mine] <= state.time
        old_stage = state.fe_stage[mine][counted]
        if remap is not None:
            old_stage = remap[old_stage]
        old = list(zip(old_stage.tolist(), state.fe_rank[mine][counted].tolist(), strict=True))
    if same_names and new == old:
        return state.positions
    n_ranks = max(state.stage_counts.shape[1], max((r for _, r in new), default=0) + 1)
    counts = np.zeros((len(names), n_ranks), dtype=np.int64)
    base = state.stage_counts
    if remap is None:
        counts[:, : base.shape[1]] += base
    else:
        counts[remap, : base.shape[1]] += base
    for stage, rank in old:
        counts[stage, rank] -= 1
    for stage, rank in new:
        counts[stage, rank] += 1
    return positions_of(counts[None, :, :])


def _first_entries(own: CodedStages, time: int) -> list[tuple[int, int]]:
    """``first_entries`` of one deal's rows (deal 0) as (stage, rank) pairs, those stamped
    at or before ``time``: rows in (time, stage) order, as ``EventIndex`` sorts them."""
    keep = np.flatnonzero((own.deal >= 0) & (own.time != NAT))
    order = keep[np.lexsort([own.stage[keep], own.time[keep]])]
    seen: set[int] = set()
    out = []
    for stage, at in zip(own.stage[order].tolist(), own.time[order].tolist(), strict=True):
        if stage in seen:
            continue
        if at <= time:
            out.append((stage, len(seen)))
        seen.add(stage)
    return out


def owner_amounts(
    state: EntityState, open_amount: FloatArray, owner: int, slot: int, amount: float, new: bool
) -> FloatArray:
    """The amounts at as_of of the open deals of ``owner``, in slot (deal_id) order, once the
    scored deal (at ``slot``; ``new``: inserted there) is one of them with ``amount``."""
    slots = state.open_by_owner.get(owner, np.zeros(0, np.int64))
    if not new:
        slots = slots[slots != slot]
    cut = int(np.searchsorted(slots, slot))
    values = open_amount[slots]
    return np.concatenate([values[:cut], np.array([amount], dtype=np.float64), values[cut:]])


def rep_values(
    state: EntityState, owner: int, team: int, owner_id: object, amounts: FloatArray
) -> dict[str, FloatArray]:
    """``rep_features`` of one deal (owner and team codes, -1: none; the owner's open deals'
    amounts at as_of in slot order, ``owner_amounts``)."""
    rep = state.owner.at(owner) if owner >= 0 else _none()
    rep_closed = rep[0]
    win_rate, cycle_shrunk = shrunk_rep_record(
        rep, state.team.at(team) if team >= 0 else _none(), state.overall.at(0)
    )
    known = np.array([owner >= 0])
    # bincount adds in slot order, as the batch's per-owner bincount does
    weights = np.nan_to_num(amounts, nan=0.0)
    total = np.bincount(np.zeros(len(weights), np.int64), weights=weights, minlength=1)
    hired = state.hired.get(str(owner_id), NAT) if owner_id is not None else NAT
    t = np.array([state.time], dtype=np.int64)
    return {
        "rep_win_rate_365d": np.where(known, win_rate, np.nan),
        "rep_closed_deals_365d": np.where(known, rep_closed, np.nan),
        "rep_cycle_days_365d": np.where(known, cycle_shrunk, np.nan),
        "rep_open_deals": np.where(known, len(weights), np.nan).astype(np.float64),
        "rep_open_amount": np.where(known, total, np.nan),
        "rep_tenure_days": days_between(t, np.array([hired], dtype=np.int64)),
    }


def account_values(state: EntityState, account: int) -> dict[str, FloatArray]:
    """``account_features`` of one deal (account code, -1: none)."""
    i = min(max(account, 0), len(state.account_won) - 1)
    known = np.array([account >= 0])
    return {
        "account_won_deals": np.where(known, state.account_won[i : i + 1], np.nan),
        "account_won_revenue": np.where(known, state.account_revenue[i : i + 1], np.nan),
    }


def product_values(
    state: EntityState, product: int, name: object, amount_now: FloatArray
) -> dict[str, FloatArray]:
    """``product_features`` of one deal (product code, -1: none; its name)."""
    i = min(product, len(state.product_typical) - 1)
    typical = state.product_typical[i : i + 1] if product >= 0 else np.full(1, np.nan)
    price = state.list_price.get(str(name), np.nan) if product >= 0 else np.nan
    list_price = np.array([price], dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        vs_typical = np.where(typical > 0, amount_now / typical, np.nan)
        vs_list = np.where(list_price > 0, amount_now / list_price, np.nan)
    return {"amount_vs_product_typical": vs_typical, "amount_vs_list_price": vs_list}


def _none() -> tuple[FloatArray, FloatArray, FloatArray]:
    return np.zeros(1), np.zeros(1), np.full(1, np.nan)

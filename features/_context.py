"""Rep, account and product features: what the rest of the history says about a deal's context.

Only deals closed at or before as_of count (their status and final amount are known from the
moment they close); the deal being scored is open at as_of, so it never counts itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features._events import (
    MICROS_PER_DAY,
    NAT,
    BoolArray,
    EventIndex,
    FloatArray,
    IntArray,
    codes,
    days_between,
    micros,
    prefix_sum,
    take_at,
)

REP_WINDOW_DAYS = 365
PRIOR_STRENGTH = 10.0  # pseudo-deals of the team's rate added to a rep's record
SIZE_BANDS = ("1-49", "50-249", "250-999", "1000-4999", "5000+")
SIZE_EDGES = (50, 250, 1000, 5000)


@dataclass(frozen=True)
class Deals:
    """The deals table as arrays, one position per deal."""

    index: pd.Index  # deal_id -> position
    created: IntArray
    closed: IntArray  # NAT while open
    won: BoolArray
    lost: BoolArray
    final_amount: FloatArray  # export-time amount: read only for deals closed by as_of
    owner: IntArray  # code into ``owners`` (-1: none)
    owners: pd.Index
    team: IntArray  # code into ``teams`` (-1: none)
    teams: pd.Index
    account: IntArray
    accounts: pd.Index
    product: IntArray
    products: pd.Index


def deal_arrays(deals: pd.DataFrame) -> Deals:
    """Index the deals table; ids must be unique."""
    index = pd.Index(deals["deal_id"])
    if not index.is_unique:
        dupes = index[index.duplicated()].unique()[:5].tolist()
        raise ValueError(f"deal_id must be unique in the history; repeated: {dupes}")
    lookups = {}
    for col in ("owner_id", "team", "account_id", "product"):
        vocab = pd.Index(sorted(deals[col].dropna().unique()))
        lookups[col] = (codes(deals[col], vocab), vocab)
    return deals_from(deals, index, lookups)


def deals_from(
    deals: pd.DataFrame, index: pd.Index, lookups: dict[str, tuple[IntArray, pd.Index]]
) -> Deals:
    """``Deals`` of the deals table rows ``index`` names, with each entity column's codes and
    vocabulary from ``lookups`` (``deal_arrays``; the one-deal path's own vocabularies)."""
    status = deals["status"].to_numpy(dtype=object)
    closed = micros(deals["closed_at"])
    return Deals(
        index=index,
        created=micros(deals["created_at"]),
        closed=closed,
        won=(status == "won") & (closed != NAT),
        lost=(status == "lost") & (closed != NAT),
        final_amount=deals["amount"].to_numpy(dtype=np.float64),
        owner=lookups["owner_id"][0],
        owners=lookups["owner_id"][1],
        team=lookups["team"][0],
        teams=lookups["team"][1],
        account=lookups["account_id"][0],
        accounts=lookups["account_id"][1],
        product=lookups["product"][0],
        products=lookups["product"][1],
    )


def lookup(keys: pd.Index, q_code: IntArray, table_keys: pd.Series) -> IntArray:
    """Row of a dimension table for each query code into ``keys`` (-1 when absent)."""
    rows = np.append(codes(keys.to_series(), pd.Index(table_keys)), -1)
    return np.asarray(rows[q_code], dtype=np.int64)


def shrunk_rep_record(
    rep: tuple[FloatArray, ...], team: tuple[FloatArray, ...], overall: tuple[FloatArray, ...]
) -> tuple[FloatArray, FloatArray]:
    """A rep's win rate and won-deal cycle over the window, shrunk toward the team's (the whole
    company's where the team closed nothing) with ``PRIOR_STRENGTH`` pseudo-deals. Each record
    is (deals closed, deals won, median cycle of the won); the batch and the one-deal path
    both call this."""
    rep_closed, rep_won, rep_cycle = rep
    team_closed, team_won, team_cycle = team
    all_closed, all_won, all_cycle = overall
    with np.errstate(invalid="ignore", divide="ignore"):
        prior_rate = np.where(team_closed > 0, team_won / team_closed, all_won / all_closed)
    prior_cycle = np.where(np.isnan(team_cycle), all_cycle, team_cycle)
    k = PRIOR_STRENGTH
    win_rate = (rep_won + k * prior_rate) / (rep_closed + k)
    cycle_shrunk = np.where(
        rep_won > 0,
        (rep_won * np.nan_to_num(rep_cycle) + k * prior_cycle) / (rep_won + k),
        prior_cycle,
    )
    return win_rate, cycle_shrunk


def rep_features(
    history_reps: pd.DataFrame,
    d: Deals,
    q_deal: IntArray,
    q_time: IntArray,
    q_date: IntArray,
    amount_now: FloatArray,
    pipeline: tuple[FloatArray, FloatArray] | None = None,
) -> dict[str, FloatArray]:
    """Track record (shrunk win rate and cycle), open pipeline load and tenure of the owner.

    ``pipeline``: the owner's open deals and open amount per query, as ``open_pipeline`` gives
    them for every deal open at each date; without it they are counted over the queries (which
    must then include every deal open at each date)."""
    after = q_time - REP_WINDOW_DAYS * MICROS_PER_DAY
    owner, team = d.owner[q_deal], d.team[q_deal]
    closed = d.won | d.lost
    cycle = days_between(d.closed, d.created)

    def record(group: IntArray, n_groups: int, q_group: IntArray) -> tuple[FloatArray, ...]:
        """Per query: deals closed and won in the window, and the median cycle of the won."""
        grp = np.where(closed, group, -1)
        ev = EventIndex(grp, d.closed, n_groups)
        wins = prefix_sum(d.won[ev.order])
        n_closed = ev.count_upto(q_group, q_time) - ev.count_upto(q_group, after)
        n_won = ev.sum_upto(wins, q_group, q_time) - ev.sum_upto(wins, q_group, after)
        won_ev = EventIndex(np.where(d.won, group, -1), d.closed, n_groups)
        median = won_ev.window_median(cycle[won_ev.order], q_group, after, q_time)
        return n_closed.astype(np.float64), n_won, median

    rep = record(d.owner, len(d.owners), owner)
    rep_closed = rep[0]
    win_rate, cycle_shrunk = shrunk_rep_record(
        rep,
        record(d.team, len(d.teams), team),
        record(np.zeros_like(d.owner), 1, np.zeros_like(owner)),
    )
    known = owner >= 0
    if pipeline is None:
        pipeline = open_pipeline(d, q_deal, q_date, amount_now)
    open_deals, open_amount = pipeline
    reps = history_reps.drop_duplicates("owner_id")
    hired = take_at(micros(reps["hired_at"]), lookup(d.owners, owner, reps["owner_id"]), NAT)
    return {
        "rep_win_rate_365d": np.where(known, win_rate, np.nan),
        "rep_closed_deals_365d": np.where(known, rep_closed, np.nan),
        "rep_cycle_days_365d": np.where(known, cycle_shrunk, np.nan),
        "rep_open_deals": np.where(known, open_deals, np.nan).astype(np.float64),
        "rep_open_amount": np.where(known, open_amount, np.nan),
        "rep_tenure_days": days_between(q_time, hired),
    }


def open_pipeline(
    d: Deals, q_deal: IntArray, q_date: IntArray, amount_now: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Per query: how many of the queried deals (every deal open at its date) its owner holds
    at that date, and their amount at that date (unknown amounts count 0)."""
    owner = d.owner[q_deal]
    known = owner >= 0
    load_key = q_date * max(len(d.owners), 1) + np.maximum(owner, 0)
    size = (int(q_date.max()) + 1 if len(q_date) else 0) * max(len(d.owners), 1)
    open_deals = np.bincount(load_key[known], minlength=size)[load_key].astype(np.float64)
    amounts = np.nan_to_num(amount_now[known], nan=0.0)
    open_amount = np.bincount(load_key[known], weights=amounts, minlength=size)[load_key]
    return open_deals, np.asarray(open_amount, dtype=np.float64)


def account_profile(history_accounts: pd.DataFrame, d: Deals) -> dict[str, np.ndarray]:
    """Per deal: its account's head count, industry and size band (static account facts)."""
    table = history_accounts.drop_duplicates("account_id")
    row = lookup(d.accounts, d.account, table["account_id"])
    employees = take_at(table["employees"].to_numpy(dtype=np.float64), row, np.nan)
    industry = take_at(table["industry"].to_numpy(dtype=object), row, None)
    band = np.full(len(row), None, dtype=object)
    sized = ~np.isnan(employees)
    band_at = np.searchsorted(SIZE_EDGES, employees[sized], side="right")
    band[sized] = np.asarray(SIZE_BANDS, dtype=object)[band_at]
    return {"account_employees": employees, "account_industry": industry, "account_size_band": band}


def account_features(d: Deals, q_deal: IntArray, q_time: IntArray) -> dict[str, FloatArray]:
    """Deals of the account won at or before as_of, and their revenue."""
    account = d.account[q_deal]
    ev = EventIndex(np.where(d.won, d.account, -1), d.closed, len(d.accounts))
    revenue = prefix_sum(d.final_amount[ev.order])
    known = account >= 0
    won = np.where(known, ev.count_upto(account, q_time), np.nan)
    won_revenue = np.where(known, ev.sum_upto(revenue, account, q_time), np.nan)
    return {"account_won_deals": won.astype(np.float64), "account_won_revenue": won_revenue}


def product_features(
    history_products: pd.DataFrame,
    d: Deals,
    q_deal: IntArray,
    q_time: IntArray,
    amount_now: FloatArray,
) -> dict[str, FloatArray]:
    """Amount at as_of against the product's typical won amount and its list price."""
    product = d.product[q_deal]
    priced = d.won & ~np.isnan(d.final_amount)
    ev = EventIndex(np.where(priced, d.product, -1), d.closed, len(d.products))
    typical = ev.window_median(d.final_amount[ev.order], product, np.full(len(q_time), NAT), q_time)
    table = history_products.drop_duplicates("product")
    row = lookup(d.products, product, table["product"])
    list_price = take_at(table["list_price"].to_numpy(dtype=np.float64), row, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        vs_typical = np.where(typical > 0, amount_now / typical, np.nan)
        vs_list = np.where(list_price > 0, amount_now / list_price, np.nan)
    return {"amount_vs_product_typical": vs_typical, "amount_vs_list_price": vs_list}

"""Deal features read from the stage history as of a date: stage, amount, close date, pushes.

The stage history is the only source of a deal's time-varying fields. Rows are ordered by
(deal, changed_at, stage name); with ties in ``changed_at`` the stage name decides, so "the last
row at or before as_of" is always one well-defined row.
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


@dataclass(frozen=True)
class StageFeatures:
    """Stage-history features, one value per (deal, as_of) query."""

    stage: IntArray  # code into ``vocabulary``; -1 when the deal has no row yet
    days_in_stage: FloatArray
    stage_regressions: FloatArray
    close_date_pushes: FloatArray
    push_days_total: FloatArray
    amount: FloatArray
    amount_changes: FloatArray
    expected_close: IntArray  # microseconds, NAT when unknown


def stage_vocabulary(stage_history: pd.DataFrame) -> list[str]:
    """Every stage name in the history, sorted."""
    return sorted(str(s) for s in stage_history["stage"].dropna().unique())


@dataclass(frozen=True)
class CodedStages:
    """The stage history as arrays: deal position, time, stage code into ``vocabulary``."""

    deal: IntArray  # position in the deal index; -1 for rows of unknown deals
    time: IntArray
    stage: IntArray
    amount: FloatArray
    expected_close: IntArray
    vocabulary: list[str]


def code_stages(stage_history: pd.DataFrame, deal_index: pd.Index) -> CodedStages:
    """Encode ``stage_history`` against ``deal_index`` and its own stage vocabulary."""
    vocabulary = stage_vocabulary(stage_history)
    return CodedStages(
        deal=codes(stage_history["deal_id"], deal_index),
        time=micros(stage_history["changed_at"]),
        stage=codes(stage_history["stage"], pd.Index(vocabulary)),
        amount=stage_history["amount"].to_numpy(dtype=np.float64),
        expected_close=micros(stage_history["expected_close_date"]),
        vocabulary=vocabulary,
    )


def stage_features(
    stage_history: pd.DataFrame,
    deal_index: pd.Index,
    q_deal: IntArray,
    q_date: IntArray,
    dates: IntArray,
) -> StageFeatures:
    """Stage features for each query: deal position ``q_deal`` as of ``dates[q_date]``."""
    coded = code_stages(stage_history, deal_index)
    return coded_stage_features(coded, len(deal_index), q_deal, q_date, dates)


def coded_stage_features(
    coded: CodedStages,
    n_deals: int,
    q_deal: IntArray,
    q_date: IntArray,
    dates: IntArray,
    *,
    positions: FloatArray | None = None,
    push_offset: float = 0.0,
) -> StageFeatures:
    """``stage_features`` of an encoded stage history (``n_deals`` deal positions).

    The stage codes must follow the order of the stage names (they break ties in time); a
    vocabulary with names no row uses gives the same features.

    One deal's rows alone give its features in a larger history when the larger history's
    stage order (``positions``, as ``stage_positions`` gives it at ``dates``) and the running
    total of push days over the deals before it (``push_offset``: the features sum a running
    total, so the same start gives the same rounding) are passed in (``features.single``).
    """
    vocabulary = coded.vocabulary
    stage_code = coded.stage
    ev = EventIndex(coded.deal, coded.time, n_deals, tiebreak=stage_code)
    stage = stage_code[ev.order]
    amount = coded.amount[ev.order]
    ecd = coded.expected_close[ev.order]
    same = np.r_[False, ev.group[1:] == ev.group[:-1]]
    prev = np.r_[-1, stage[:-1]]
    # When the current run of equal stages began: a row starts a run unless it repeats the
    # previous row's stage (a push or an amount change).
    starts_run = ~same | (stage != prev)
    run_start = ev.time[np.maximum.accumulate(np.where(starts_run, np.arange(len(ev)), 0))]
    prev_ecd = np.r_[NAT, ecd[:-1]]
    pushed = same & (ecd != NAT) & (prev_ecd != NAT) & (ecd > prev_ecd)
    push_days = np.where(pushed, (ecd - np.where(pushed, prev_ecd, 0)) / MICROS_PER_DAY, 0.0)
    prev_amount = np.r_[np.nan, amount[:-1]]
    both_missing = np.isnan(amount) & np.isnan(prev_amount)
    amount_changed = same & ~both_missing & ~(amount == prev_amount)

    t = dates[q_date]
    start, end = ev.start(q_deal), ev.end_upto(q_deal, t)
    last = np.where(end > start, end - 1, -1)
    has = last >= 0
    if positions is None and len(ev) and len(vocabulary):
        positions = stage_positions(ev, stage, len(vocabulary), dates)
    regressions = _regressions(ev, stage, same, prev, positions, q_date, start, end)

    def since_start(flags: FloatArray, offset: float = 0.0) -> FloatArray:
        cum = prefix_sum(flags)
        if offset:
            cum = np.cumsum(np.concatenate([[offset], np.nan_to_num(flags, nan=0.0)]))
        return np.where(has, cum[end] - cum[start], np.nan)

    return StageFeatures(
        stage=take_at(stage, last, -1),
        days_in_stage=days_between(t, take_at(run_start, last, NAT)),
        stage_regressions=np.where(has, regressions, np.nan),
        close_date_pushes=since_start(pushed.astype(np.float64)),
        push_days_total=since_start(push_days, push_offset),
        amount=take_at(amount, last, np.nan),
        amount_changes=since_start(amount_changed.astype(np.float64)),
        expected_close=take_at(ecd, last, NAT),
    )


def stage_positions(ev: EventIndex, stage: IntArray, n_stages: int, dates: IntArray) -> FloatArray:
    """Order of the stages as known at each date: ``positions[d, s]`` (NaN: not seen yet).

    A stage's first entry in a deal has a rank: how many distinct stages the deal had entered
    before it. Stages are ordered by the median of those ranks over first entries stamped at or
    before the date, then by their mean, then by name. A rank is fixed when the stage is
    entered, so the order at a date depends on no later event.
    """
    if len(ev) == 0:
        return np.full((len(dates), n_stages), np.nan)
    first, rank = first_entries(ev, stage, n_stages)
    n_ranks = int(rank.max()) + 1
    cells = EventIndex(stage[first] * n_ranks + rank, ev.time[first], n_stages * n_ranks)
    grid = np.arange(n_stages * n_ranks, dtype=np.int64)
    counts = cells.count_upto(np.tile(grid, len(dates)), np.repeat(dates, len(grid))).reshape(
        len(dates), n_stages, n_ranks
    )
    return positions_of(counts)


def first_entries(ev: EventIndex, stage: IntArray, n_stages: int) -> tuple[IntArray, IntArray]:
    """The first entry of each stage in each deal (positions in ``ev``, in (deal, time) order)
    and its rank: how many distinct stages the deal had entered before it."""
    _, first = np.unique(ev.group * n_stages + stage, return_index=True)
    first = np.sort(first)  # first entries in (deal, time) order
    fe_deal = ev.group[first]
    rank = np.arange(len(first)) - np.searchsorted(fe_deal, fe_deal, side="left")
    return first, rank


def positions_of(counts: IntArray) -> FloatArray:
    """``stage_positions`` from its counts: ``counts[d, s, r]`` first entries of stage ``s`` at
    rank ``r`` stamped at or before date ``d`` (trailing ranks without entries change nothing)."""
    n_dates, n_stages, n_ranks = counts.shape
    positions = np.full((n_dates, n_stages), np.nan)
    cum = np.cumsum(counts, axis=2)
    n = cum[:, :, -1]

    def order_statistic(k: IntArray) -> FloatArray:
        return np.asarray((cum < (k + 1)[:, :, None]).sum(axis=2), dtype=np.float64)

    median = (order_statistic((n - 1) // 2) + order_statistic(n // 2)) / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (counts * np.arange(n_ranks)).sum(axis=2) / n
    d_idx, s_idx = np.nonzero(n > 0)
    order = np.lexsort([s_idx, mean[d_idx, s_idx], median[d_idx, s_idx], d_idx])
    d_sorted = d_idx[order]
    pos = np.arange(len(order)) - np.searchsorted(d_sorted, d_sorted, side="left")
    positions[d_sorted, s_idx[order]] = pos
    return positions


def _regressions(
    ev: EventIndex,
    stage: IntArray,
    same: BoolArray,
    prev: IntArray,
    positions: FloatArray | None,
    q_date: IntArray,
    start: IntArray,
    end: IntArray,
) -> FloatArray:
    """Moves back to an earlier stage, under the stage order known at each query's date
    (``positions``, per date and stage).

    The order changes rarely (as the first deals come in), so the rows are flagged once per
    distinct order, not once per date.
    """
    out = np.zeros(len(q_date))
    if len(ev) == 0 or positions is None or positions.shape[1] == 0:
        return out
    filled = np.nan_to_num(positions, nan=-1.0)
    orders, which = np.unique(filled, axis=0, return_inverse=True)
    which = which.ravel()
    moved = same & (stage != prev)
    q_order = which[q_date]
    for o in np.unique(q_order):
        pos = orders[o]
        here, before = pos[stage], pos[np.maximum(prev, 0)]
        back = moved & (here >= 0) & (before >= 0) & (here < before)
        cum = prefix_sum(back.astype(np.float64))
        rows = q_order == o
        out[rows] = cum[end[rows]] - cum[start[rows]]
    return out

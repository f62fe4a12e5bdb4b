"""Stage history: stage entries, one-off regressions, close-date pushes and amount changes.

Rows follow Salesforce ``OpportunityHistory``: a row whenever the stage, the amount or the
expected close date changes, carrying the stage, amount and expected close date the deal had
right after the change. A row whose stage equals the previous row's stage is a close-date push
or an amount change. Closed deals get no "Closed Won/Lost" row: their last row is the last open
stage they reached, and ``deals.stage`` repeats it (``deals.status`` says won or lost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from salesml.synth import catalog, effects
from salesml.synth.deals import LAST_STAGE, Deals
from salesml.synth.timeline import BoolArray, FloatArray, IntArray, Timeline

N_STAGES = len(catalog.STAGES)
PUSH = -1  # stage code of rows that change something other than the stage


@dataclass(frozen=True)
class StageHistory:
    """Rows known at the export (sorted by deal, then time) and each deal's state at export."""

    deal: IntArray
    time: FloatArray  # raw time
    secs: IntArray  # exported seconds since the start (office clock, unique per deal)
    stage: IntArray
    amount: FloatArray  # NaN where the CRM has no amount
    expected: IntArray  # expected close date as a day index
    current_stage: IntArray  # per deal, as of the export (for closed deals: at close)
    current_amount: FloatArray
    current_expected: IntArray
    regressed: BoolArray  # truth: the deal went back one stage once (eventually)
    pushes: IntArray  # truth: close-date pushes over the deal's whole life


def _strictly_increasing(group: IntArray, secs: IntArray) -> IntArray:
    """Bump equal seconds within a group (rows sorted by group) so each row gets its own."""
    if not len(secs):
        return secs
    idx = np.arange(len(secs), dtype=np.int64)
    span = int(secs.max() - secs.min()) + len(secs) + 1
    shifted = secs - secs.min() - idx + group * span
    return np.asarray(np.maximum.accumulate(shifted) - group * span + secs.min() + idx, np.int64)


def _month_end(timeline: Timeline, day: IntArray) -> IntArray:
    return timeline.month_start_index(day, np.ones_like(day)) - 1


def _expected_dates(
    rng: np.random.Generator, timeline: Timeline, deals: Deals
) -> tuple[IntArray, FloatArray]:
    """Expected close dates (n x MAX_PUSHES+1) and push times (n x MAX_PUSHES, inf = none)."""
    n, k_max = deals.n, effects.MAX_PUSHES
    guess = np.exp(deals.log_cycle_base + 0.35 * rng.standard_normal(n))
    guess = np.maximum(7.0, effects.CLOSE_GUESS_OPTIMISM * guess)
    first = np.floor(deals.created + guess).astype(np.int64)
    expected = np.empty((n, k_max + 1), dtype=np.int64)
    expected[:, 0] = np.where(rng.random(n) < 0.5, _month_end(timeline, first), first)
    push_time = np.full((n, k_max), np.inf)
    alive = np.ones(n, dtype=np.bool_)
    for k in range(k_max):  # at most a few rounds, each over all deals at once
        when = expected[:, k] + 1.0 + 6.0 * rng.random(n)
        alive &= when < deals.closed
        push_time[:, k] = np.where(alive, when, np.inf)
        nxt = np.floor(when + 14.0 + rng.gamma(2.0, 12.0, n)).astype(np.int64)
        nxt = np.where(rng.random(n) < 0.5, _month_end(timeline, nxt), nxt)
        expected[:, k + 1] = np.where(alive, nxt, expected[:, k])
    return expected, push_time


def make_stage_history(rng: np.random.Generator, timeline: Timeline, deals: Deals) -> StageHistory:
    """Build every stage-history row a CRM would hold at the export, vectorised over deals."""
    n = deals.n
    created, closed, last = deals.created, deals.closed, deals.exit_stage
    cycle = closed - created
    j = np.arange(N_STAGES)
    reached = j[None, :] <= last[:, None]
    seg = np.where(reached, rng.gamma(2.0, 1.0, (n, N_STAGES)), 0.0)
    cum = np.cumsum(seg, axis=1)
    entry = created[:, None] + cycle[:, None] * (cum - seg) / cum[:, -1:]

    # One-off regressions: after entering stage r >= 1 the deal goes back to r - 1, then returns.
    eligible = last >= 1
    share = effects.REGRESSION_SHARE
    regressed = eligible & (rng.random(n) < share)
    r = 1 + np.floor(rng.random(n) * np.maximum(last, 1)).astype(np.int64)
    t_r = entry[np.arange(n), np.minimum(r, LAST_STAGE)]
    t_next = np.where(r < last, entry[np.arange(n), np.minimum(r + 1, LAST_STAGE)], closed)
    t_back = t_r + (t_next - t_r) * rng.uniform(0.2, 0.5, n)
    t_again = t_back + (t_next - t_back) * rng.uniform(0.3, 0.8, n)

    expected, push_time = _expected_dates(rng, timeline, deals)
    amount_changes = rng.random(n) < effects.AMOUNT_CHANGE_SHARE
    t_amount = np.where(amount_changes, created + cycle * rng.uniform(0.2, 0.95, n), np.inf)
    amount1 = np.maximum(
        10.0,
        np.round(deals.amount0 * np.exp(rng.normal(-0.03, effects.AMOUNT_CHANGE_SIGMA, n)), -1),
    )
    is_open = deals.is_open(timeline)
    status_missing = np.where(
        is_open,
        effects.MISSING_AMOUNT_SHARE["open"],
        np.where(
            deals.won, effects.MISSING_AMOUNT_SHARE["won"], effects.MISSING_AMOUNT_SHARE["lost"]
        ),
    )
    missing = rng.random(n) < status_missing

    reg = np.flatnonzero(regressed)
    pushed_deal, _ = np.nonzero(np.isfinite(push_time))
    changed = np.flatnonzero(amount_changes)
    entry_deal, entry_stage = np.nonzero(reached)
    deal = np.concatenate([entry_deal, reg, reg, pushed_deal, changed])
    time = np.concatenate(
        [
            entry[reached],
            t_back[reg],
            t_again[reg],
            push_time[np.isfinite(push_time)],
            t_amount[changed],
        ]
    )
    stage = np.concatenate(
        [entry_stage, r[reg] - 1, r[reg], np.full(len(pushed_deal) + len(changed), PUSH)]
    )
    known = time < timeline.n_days
    deal, time, stage = deal[known], time[known], stage[known]

    order = np.lexsort((time, deal))  # by deal, then in the order things happened
    deal, time, stage = deal[order], time[order], stage[order]
    filled = np.maximum.accumulate(np.where(stage >= 0, np.arange(len(stage)), 0))
    stage = stage[filled]  # push / amount rows carry the stage the deal is in
    secs = _strictly_increasing(deal, timeline.seconds(time))
    secs = np.minimum(secs, timeline.seconds(closed)[deal])
    # Two changes in the same second at the same stage are one CRM row: keep the later one.
    dup = (deal[:-1] == deal[1:]) & (secs[:-1] == secs[1:]) & (stage[:-1] == stage[1:])
    keep = np.append(~dup, True)
    deal, time, stage, secs = deal[keep], time[keep], stage[keep], secs[keep]

    amount = np.where(time >= t_amount[deal], amount1[deal], deals.amount0[deal])
    amount = np.where(missing[deal], np.nan, amount)
    n_pushes = (push_time[deal] <= time[:, None]).sum(axis=1)
    row_expected = expected[deal, n_pushes]
    last_row = np.searchsorted(deal, np.arange(n), side="right") - 1
    return StageHistory(
        deal=deal,
        time=time,
        secs=secs,
        stage=stage,
        amount=amount,
        expected=row_expected,
        current_stage=stage[last_row],
        current_amount=amount[last_row],
        current_expected=row_expected[last_row],
        regressed=regressed,
        pushes=np.isfinite(push_time).sum(axis=1),
    )

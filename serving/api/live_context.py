"""The applier's one-deal feature context, kept up to date per round (docs/events.md).

Rescoring the deals an event touches with ``build_features`` reads the whole history every
round. ``LiveContext`` keeps a ``features.single.DealContext`` instead and scores each touched
deal with ``deal_features``'s parts (the what-if path: the round's deals' rows read once,
``inputs_of``, then ``deal_row`` per deal and one frame, ``rows_frame``), which gives exactly
the row ``build_features(history, as_of, [deal])`` gives (``features.single``'s contract). The
context must then describe the current history at the round's as_of; per round it is

* moved to the new as_of when nothing in its history happens in between (no deal created or
  closed, no stage change, no closing entering or leaving the rep window): every aggregate it
  holds is then the same at both times;
* patched for the deals whose stage history the round changed (stage changes, amount and
  close date moves of open deals): their coded rows are replaced, the stage order and push
  totals recomputed from the coded rows (numpy over the stage history, no DataFrame work) and
  their amounts at as_of put into the open pipeline;
* rebuilt otherwise (a new or closed deal, a changed owner, team, product or other deal field,
  a stage name the history lacks) — that round is scored by ``build_features`` as before.

A rebuild never holds up a round: it runs on a builder thread from the history of the round
that asked for it, while the next rounds are scored by ``build_features``; those rounds'
deals (the journal's tail since that history) are remembered, and the first round after the
build is done adopts the new context by checking and patching them too (the patch replaces
a deal's stage rows by the history's, so a deal patched twice is patched once). A tail the
new context cannot express (a new deal in it, say) starts another build.

Activities are read per deal only, so an activity never changes the context.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from features._context import REP_WINDOW_DAYS
from features._entities import _stage_state
from features._events import MICROS_PER_DAY, NAT, micros
from features._stages import CodedStages, code_stages
from features.build import build_features
from features.history import History
from features.single import (
    DealContext,
    FeatureRow,
    deal_context,
    deal_row,
    inputs_of,
    rows_frame,
)
from features.spec import Feature, flat_columns

log = logging.getLogger("salesml.events")

# Rounds after which a round that costs about as much one deal at a time as in one batch
# takes the batch, to measure it again (``LiveContext._one_by_one``).
PROBE_ROUNDS = 10
# Deal columns an event may move without touching the context (the stage history carries them).
STAGE_COLUMNS = ("stage", "amount", "expected_close_date")
# The applier gives the event loop the GIL between deals once it has held it this long (the
# interpreter's own switch interval is 5 ms; yielding after every ~1 ms deal let a busy event
# loop take most of a round's wall time).
YIELD_SECONDS = 0.004


class StaleContextError(Exception):
    """The context cannot describe this round's history exactly: rebuild it."""


def _boundaries(history: History) -> np.ndarray:
    """Times at which some aggregate of the context can change (sorted, microseconds)."""
    deals = history.deals
    created = micros(deals["created_at"])
    closed = micros(deals["closed_at"])
    closed = closed[closed != NAT]
    window = REP_WINDOW_DAYS * MICROS_PER_DAY
    changed = micros(history.stage_history["changed_at"])
    out = np.concatenate([created, closed, closed + window, changed])
    return np.sort(out[out != NAT])


class LiveContext:
    """A ``DealContext`` following the applier's history; see the module docstring."""

    def __init__(self, spec: Sequence[Feature]) -> None:
        self.spec = list(spec)
        self.context: DealContext | None = None
        self._base: object = None  # the history object the context was last aligned with
        self._bounds = np.zeros(0, np.int64)
        self.rebuilds = 0
        self.patches = 0
        self.fallbacks: dict[str, int] = {}  # why a round could not use the context
        self.batched = 0  # rounds scored by build_features
        self.adopted = 0  # built contexts taken over with a tail of rounds to patch in
        self._costs: dict[str, list[float]] = {"deal": [], "batch": []}  # seconds, recent
        self._since_batch = 0  # rounds since the batch cost was last measured
        self._since_deal = 0  # and the one-deal cost
        self.last_path = ""  # how the last round's rows were made (for the round trace)
        # The builder thread's context (built from some round's history), its boundaries,
        # and the deals of the rounds scored since that history: the tail it must adopt.
        self._build_lock = threading.Lock()
        self._generation = 0  # of the builds started; only the latest one's context is kept
        self._builder: threading.Thread | None = None
        self._built: tuple[DealContext, np.ndarray] | None = None
        self._tail_touched: set[str] = set()
        self._tail_dirty: set[str] = set()

    # -- keeping the context current -------------------------------------------------------
    def rebuild(self, history: History, as_of: pd.Timestamp) -> None:
        """Rebuild the context now, on this thread, from ``history`` at ``as_of``."""
        with self._build_lock:
            self._generation += 1  # a build running is superseded
        self.context, self._bounds = self._make(history, as_of)
        self._base = history
        self._built = None
        self._tail_touched, self._tail_dirty = set(), set()

    def _make(self, history: History, as_of: pd.Timestamp) -> tuple[DealContext, np.ndarray]:
        started = time.perf_counter()
        made = deal_context(history, as_of, self.spec), _boundaries(history)
        self.rebuilds += 1
        if not self._costs["batch"]:
            # Reading the whole history once, like ``build_features``: its cost until measured.
            self._costs["batch"] = [time.perf_counter() - started]
        return made

    def start_rebuild(self, history: History, as_of: pd.Timestamp) -> None:
        """Rebuild the context on the builder thread from ``history`` at ``as_of``; the rounds
        scored meanwhile are the tail the new context adopts. A build already running is
        superseded (its context is dropped)."""
        with self._build_lock:
            self._generation += 1
            generation = self._generation
            self.context, self._built = None, None
            self._tail_touched, self._tail_dirty = set(), set()

            def build() -> None:
                try:
                    made = self._make(history, as_of)
                except Exception as exc:  # the next round that needs it starts another
                    log.warning("rebuilding the live feature context failed (%s)", exc)
                    return
                with self._build_lock:
                    if generation == self._generation:
                        self._built = made

            self._builder = threading.Thread(target=build, name="events-context", daemon=True)
            self._builder.start()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the builder thread (tests, shutdown); whether no build is running."""
        builder = self._builder
        if builder is not None:
            builder.join(timeout)
        return builder is None or not builder.is_alive()

    def _adopt(self, touched: Sequence[str], dirty: Sequence[str]) -> tuple[list[str], list[str]]:
        """Take the builder's context when it is done; the round's deals and dirty deals
        with the tail's added (what the new context must check and patch)."""
        if self.context is None:
            with self._build_lock:
                built, self._built = self._built, None
            if built is None:
                raise StaleContextError("rebuilding")
            self.context, self._bounds = built
            tail_touched, tail_dirty = self._tail_touched, self._tail_dirty
            self._tail_touched, self._tail_dirty = set(), set()
            extra = sorted((tail_touched | tail_dirty) - set(touched))
            self.adopted += bool(tail_touched or tail_dirty)
            return [*touched, *extra], sorted({*dirty, *tail_dirty})
        return list(touched), list(dirty)

    def _advance(self, as_of: pd.Timestamp) -> DealContext:
        ctx = self.context
        assert ctx is not None
        t0 = int(ctx.dates[0])
        t = int(micros(pd.Series([as_of], dtype=object))[0])
        if t == t0:
            return ctx
        lo, hi = sorted((t0, t))
        # an aggregate moves at a boundary b when lo < b <= hi
        if np.searchsorted(self._bounds, hi, "right") > np.searchsorted(self._bounds, lo, "right"):
            raise StaleContextError("the history changes between the two as_of dates")
        state = ctx.state
        assert state is not None
        return ctx.moved(
            as_of=as_of,
            dates=np.array([t], dtype=np.int64),
            state=replace(state, time=t),
        )

    def _patch(self, ctx: DealContext, history: History, dirty: Sequence[str]) -> DealContext:
        """``ctx`` with the stage rows of the open deals ``dirty`` taken from ``history``."""
        state = ctx.state
        assert state is not None
        sh = ctx.history.stage_history
        locs = ctx.deals.index.get_indexer(pd.Index(dirty))
        if (locs < 0).any():
            raise StaleContextError("a new deal")
        old = np.concatenate([state.rows_of(int(loc)) for loc in locs])
        new_rows = history.stage_history.iloc[positions_of(history.stage_history, dirty)]
        if new_rows["stage"].isna().any():
            raise StaleContextError("a stage row without a stage")
        names = Counter(ctx.stage_counts)
        names.subtract(str(v) for v in sh["stage"].iloc[old].dropna())
        names.update(str(v) for v in new_rows["stage"])
        if sorted(n for n, c in names.items() if c > 0) != ctx.stage_values:
            raise StaleContextError("the stage vocabulary changes")
        coded = code_stages(new_rows, ctx.deals.index)
        remap = np.searchsorted(
            np.asarray(ctx.stages.vocabulary, dtype=object),
            np.asarray(coded.vocabulary, dtype=object),
        )
        keep = np.ones(len(ctx.stages.deal), dtype=bool)
        keep[old] = False
        base = ctx.stages
        stages = CodedStages(
            deal=np.concatenate([base.deal[keep], coded.deal]),
            time=np.concatenate([base.time[keep], coded.time]),
            stage=np.concatenate(
                [base.stage[keep], np.where(coded.stage >= 0, remap[coded.stage], -1)]
            ).astype(np.int64),
            amount=np.concatenate([base.amount[keep], coded.amount]),
            expected_close=np.concatenate([base.expected_close[keep], coded.expected_close]),
            vocabulary=base.vocabulary,
        )
        stage_history = pd.concat([sh[keep], new_rows], ignore_index=True)
        n = len(ctx.deals.created)
        # the new rows' times are boundaries for the next rounds too
        self._bounds = np.sort(np.concatenate([self._bounds, coded.time[coded.time != NAT]]))
        state = replace(state, **_stage_state(stages, n, int(ctx.dates[0])))  # type: ignore[arg-type]
        self.patches += 1
        return ctx.moved(
            history=replace(ctx.history, stage_history=stage_history),
            stages=stages,
            stage_counts=+names,
            state=state,
        )

    def _check_deals(self, ctx: DealContext, history: History, touched: Sequence[str]) -> None:
        """Raise ``StaleContextError`` unless every touched deal is one of the context's open
        deals with the same deal row, but for the columns the stage history carries."""
        table = ctx.deals_table
        locs = ctx.deals.index.get_indexer(pd.Index(touched))
        if (locs < 0).any():
            raise StaleContextError("a new deal")
        mine = positions_of(history.deals, touched)
        if len(mine) != len(touched):
            raise StaleContextError("a deal id twice")
        columns = [c for c in table.columns if c not in STAGE_COLUMNS]
        # (``current_stage``'s source "stage" names the stage history, not the column)
        read = {v for k, v in ctx.sources.items() if k != "current_stage"}
        if read & {*STAGE_COLUMNS}:
            columns = list(table.columns)
        # Compared as text, value by value, on the touched rows only (a DataFrame per step
        # costs more than the round's few rows).
        ids = deal_id_array(history.deals)[mine]
        now = dict(zip(ids, _texts(history.deals, mine, columns), strict=True))
        before = _texts(table, locs, columns)
        if any(now.get(deal) != row for deal, row in zip(touched, before, strict=True)):
            raise StaleContextError("a deal field other than stage, amount or close date changed")
        # The leakage screen of the deals without stage history reads these columns: only
        # their rows, and which deals they are. A touched deal with stage rows in the context
        # has them still (the history only grows), so the screen moves only when a touched
        # deal had none.
        flat_touched = not np.isin(locs, ctx.stages.deal).all()
        if flat_touched and flat_columns(history) != ctx.flat:
            raise StaleContextError("the flat-export screen changes")
        for loc in locs:
            if ctx.deals.closed[loc] != NAT or int(np.searchsorted(ctx.open_deal, loc)) >= len(
                ctx.open_deal
            ):
                raise StaleContextError("a closed deal")
            if ctx.open_deal[np.searchsorted(ctx.open_deal, loc)] != loc:
                raise StaleContextError("a deal not open at as_of")

    # -- scoring ---------------------------------------------------------------------------
    def rows(
        self,
        history: History,
        as_of: pd.Timestamp,
        touched: Sequence[str],
        dirty: Sequence[str],
    ) -> pd.DataFrame:
        """Feature rows of ``touched`` (``dirty``: those whose stage rows changed) on
        ``history`` at ``as_of``: ``build_features(history, as_of, touched)``."""
        touched = list(touched)
        wanted, dirty_all = touched, list(dirty)
        try:
            if self.context is None and self._builder is None and self._built is None:
                raise StaleContextError("no context yet")
            wanted, dirty_all = self._adopt(touched, dirty)
            assert self.context is not None
            if self.context.state is None:
                raise StaleContextError("no context state")
            if "amount" not in {f.name for f in self.spec}:
                raise StaleContextError("no amount feature to keep the open pipeline with")
            ctx = self._advance(as_of)
            self._check_deals(ctx, history, wanted)
            if dirty_all:
                ctx = self._patch(ctx, history, dirty_all)
            self.last_path = "patch+" if dirty_all else ""
            if len(wanted) > len(touched):
                self.last_path = f"adopt({len(wanted) - len(touched)})+{self.last_path}"
            if self._one_by_one(len(wanted) + len(dirty_all)):
                self.last_path += "deal"
                started = time.perf_counter()
                out, ctx = self._score(ctx, history, touched, dirty_all)
                spent = (time.perf_counter() - started) / (len(touched) + len(dirty_all))
                self._costs["deal"] = [*self._costs["deal"][-19:], spent]
                self._since_deal = 0
            else:
                self.last_path += "batch"
                full = self._build(
                    history, as_of, [*touched, *sorted(set(dirty_all) - set(touched))]
                )
                ctx = _with_amounts(ctx, dirty_all, full)
                out = full.loc[[d for d in touched if d in full.index]]
        except StaleContextError as why:
            self.last_path = f"fallback: {why}"
            self.fallbacks[str(why)] = self.fallbacks.get(str(why), 0) + 1
            if str(why) == "rebuilding":
                # the tail the builder's context will adopt
                self._tail_touched.update(touched)
                self._tail_dirty.update(dirty)
            else:
                # the round's history is the one to rebuild from (``refresh``)
                with self._build_lock:
                    self._generation += 1
                    self.context, self._built, self._builder = None, None, None
                self._tail_touched, self._tail_dirty = set(), set()
            return self._build(history, as_of, touched)
        self.context, self._base = ctx, history
        return out

    def _build(self, history: History, as_of: pd.Timestamp, touched: Sequence[str]) -> pd.DataFrame:
        started = time.perf_counter()
        out = build_features(history, as_of, deal_ids=list(touched), features=self.spec)
        out.index = out.index.astype(str)
        self._costs["batch"] = [*self._costs["batch"][-19:], time.perf_counter() - started]
        self._since_batch = 0
        self.batched += 1
        return out

    def _one_by_one(self, n_rows: int) -> bool:
        """Whether ``n_rows`` one-deal rows cost less than one ``build_features`` call, by the
        median cost of each measured in this process (one-deal rows until both are known):
        the one-deal cost is fixed, the batch's grows with the history. Only the path taken
        is measured, and the machine's load moves both: a round whose two costs are within a
        factor of two takes the other path every PROBE_ROUNDS rounds, so both stay current."""
        deal, batch = self._costs["deal"], self._costs["batch"]
        self._since_batch += 1
        self._since_deal += 1
        if not deal or not batch:
            return True
        one_by_one, whole = n_rows * float(np.median(deal)), float(np.median(batch))
        if one_by_one <= whole:  # unless the batch is due a measurement
            return not (self._since_batch >= PROBE_ROUNDS and 2 * one_by_one > whole)
        return self._since_deal >= PROBE_ROUNDS and one_by_one < 2 * whole

    def refresh(self, history: History, as_of: pd.Timestamp, wait: bool = True) -> None:
        """Rebuild the context when the last round could not use it: now (``wait``), or on
        the builder thread (the applier: a rebuild never holds up the next round)."""
        if self.context is not None:
            return
        if wait:
            if self._built is None:
                self.rebuild(history, as_of)
            return
        if self._built is None and not self.building:
            self.start_rebuild(history, as_of)

    @property
    def usable(self) -> bool:
        """Whether a context is ready for the next round (kept, or built and to be adopted)."""
        return self.context is not None or self._built is not None

    @property
    def building(self) -> bool:
        """Whether the builder thread is at work."""
        return self._builder is not None and self._builder.is_alive()

    def _score(
        self, ctx: DealContext, history: History, touched: Sequence[str], dirty: Sequence[str]
    ) -> tuple[pd.DataFrame, DealContext]:
        wanted = sorted({*touched, *dirty})
        inputs = inputs_of(
            *(
                t.iloc[positions_of(t, wanted)]
                for t in (history.deals, history.stage_history, history.activities)
            )
        )
        yielded = time.perf_counter()

        def one(deal_id: str) -> FeatureRow:
            nonlocal yielded
            found = inputs.get(deal_id)
            if found is None:
                raise StaleContextError("a new deal")
            row = deal_row(ctx, *found)
            if row is None:
                raise StaleContextError("a deal not open at as_of")
            if time.perf_counter() - yielded > YIELD_SECONDS:
                time.sleep(0)  # let the event loop answer between deals
                yielded = time.perf_counter()
            return row

        # The dirty deals' amounts at as_of first (the open pipeline of their owners reads
        # them), then every touched deal on the context with those amounts.
        rows = {d: one(d) for d in dirty}
        if rows:
            amounts = ctx.open_amount.copy()
            locs = ctx.deals.index.get_indexer(pd.Index(list(rows)))
            slots = np.searchsorted(ctx.open_deal, locs)
            at = ctx.positions_in_spec["amount"]
            for slot, row in zip(slots, rows.values(), strict=True):
                amounts[slot] = row.values[at]
            ctx = ctx.moved(open_amount=amounts)
            owners = ctx.deals.owner[locs]
            shared = {int(o) for o, c in Counter(owners.tolist()).items() if c > 1}
            # a deal alone among the dirty ones of its owner read no other changed amount:
            # its row stands on the context with the amounts (framed with the others)
            rows = {
                d: replace(r, context=ctx)
                for d, r, o in zip(rows, rows.values(), owners, strict=True)
                if int(o) not in shared
            }
        out = rows_frame([rows[d] if d in rows else one(d) for d in touched])
        out.index = out.index.astype(str)
        return out, ctx


# id(frame) -> (a weak reference to the frame, its deal_id column as text objects, their
# hashes)
_DEAL_IDS: dict[int, tuple[weakref.ref[pd.DataFrame], np.ndarray, np.ndarray]] = {}


def deal_id_array(frame: pd.DataFrame) -> np.ndarray:
    """``frame``'s ``deal_id`` column as an object array of ``str`` (None where missing), kept
    while the frame lives: the applier reads the same history's ids several times a round,
    and turning an Arrow string column of the whole history into objects costs more than
    the round's own work (``remember_deal_ids`` hands over a grown frame's ids)."""
    return _deal_ids(frame)[0]


def deal_id_hashes(frame: pd.DataFrame) -> np.ndarray:
    """The ``hash`` of each of ``deal_id_array(frame)`` (int64), kept with them: finding a
    few deals' rows compares integers, not the history's strings (``positions_of``)."""
    return _deal_ids(frame)[1]


def _deal_ids(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    found = _DEAL_IDS.get(id(frame))
    if found is not None and found[0]() is frame:
        return found[1], found[2]
    values = frame["deal_id"].to_numpy(dtype=object)
    ids = np.asarray(
        [v if isinstance(v, str) else None if _missing(v) else str(v) for v in values], object
    )
    hashes = _hashes(ids)
    remember_deal_ids(frame, ids, hashes)
    return ids, hashes


def _hashes(ids: Any) -> np.ndarray:
    values = list(ids)
    return np.fromiter((hash(v) for v in values), np.int64, len(values))


def remember_deal_ids(
    frame: pd.DataFrame, ids: np.ndarray, hashes: np.ndarray | None = None
) -> None:
    """Keep ``ids`` (and their hashes, computed when not given) as ``frame``'s
    (``deal_id_array``); entries of dead frames are dropped."""
    for key in [k for k, (ref, _, _) in _DEAL_IDS.items() if ref() is None]:
        del _DEAL_IDS[key]
    _DEAL_IDS[id(frame)] = (weakref.ref(frame), ids, _hashes(ids) if hashes is None else hashes)


def positions_of(frame: pd.DataFrame, deals: Sequence[str]) -> np.ndarray:
    """Row positions of ``frame`` whose ``deal_id`` is one of ``deals``, in frame order: the
    rows whose id hash is one of theirs, then those whose id is (a hash may collide)."""
    ids, hashes = _deal_ids(frame)
    wanted = set(deals)
    if not wanted or not len(ids):
        return np.zeros(0, np.int64)
    maybe = np.flatnonzero(np.isin(hashes, _hashes(wanted)))
    exact = np.fromiter((ids[i] in wanted for i in maybe.tolist()), bool, len(maybe))
    found: np.ndarray = maybe[exact]
    return found


def _texts(frame: pd.DataFrame, rows: np.ndarray, columns: list[str]) -> list[tuple[Any, ...]]:
    """The values of ``frame``'s ``rows`` in ``columns`` as text (None where missing)."""
    part = frame.take(rows)[columns]  # the rows first: selecting columns copies the frame
    values = [part[c].to_numpy(dtype=object) for c in columns]
    return [
        tuple(None if _missing(v) else str(v) for v in row) for row in zip(*values, strict=True)
    ]


def _missing(value: Any) -> bool:
    return value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def _with_amounts(ctx: DealContext, dirty: Sequence[str], rows: pd.DataFrame) -> DealContext:
    """``ctx`` with the open-pipeline amounts of ``dirty`` read from their feature rows."""
    if not dirty:
        return ctx
    if not pd.Index(dirty).isin(rows.index).all():
        raise StaleContextError("a deal not open at as_of")
    amounts = ctx.open_amount.copy()
    slots = np.searchsorted(ctx.open_deal, ctx.deals.index.get_indexer(pd.Index(dirty)))
    amounts[slots] = rows.loc[list(dirty), "amount"].to_numpy(dtype=np.float64)
    return ctx.moved(open_amount=amounts)

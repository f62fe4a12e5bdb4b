"""CRM events in, scores out: the server's side of ``POST /v1/events`` (docs/events.md).

``LiveEvents.ingest`` (a request) checks each event, resolves it against the deal as it stands
(``serving.events.resolve``: the deal's earlier events included, even those not scored yet)
and appends the accepted ones to the journal in one durable commit, all under one lock — so
the journal's order is the order events were resolved in, and the answer is sent only after
the commit. One applier thread then does the rest, in journal order:

1. folds the new rows into the server's in-memory history;
2. rescores the deals they touch with the serving model, on the history as of the latest
   event: their feature rows come from the one-deal path (``features.single.deal_features``
   on a context kept up to date per round, ``serving.api.live_context``), which gives exactly
   ``build_features(history, as_of, deal_ids)`` — the nightly batch's rows — and falls back to
   that call for a round it cannot express; scored on the scoring thread;
3. publishes their ``GET /v1/deals/{id}`` answers (the new score, the history with the event
   as its latest point, and ``change`` naming the event) on top of the latest score run, and
   keeps them in the journal (``live_scores``), so a restart shows them again;
4. every ``fold_seconds``, imports the rows into the warehouse (``serving.events.fold``) in
   one short write transaction — skipped and retried while another process holds it.

A live answer gives way once a score run covers the deal at the event's time or later (the
nightly batch, ``salesml score --changed``).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.history import History, _canonical, to_naive_utc
from salesml.errors import WarehouseError
from salesml.explain import attribute_pairs
from salesml.importers.validate import Limits
from salesml.schemas import ATTRIBUTE_PREFIX, TABLES
from serving.api.answers import probability_move
from serving.api.live_context import (
    LiveContext,
    deal_id_array,
    deal_id_hashes,
    positions_of,
    remember_deal_ids,
)
from serving.api.problems import ProblemError
from serving.api.schemas import DealResponse, RunPoint, ScoreChange, ScoreRow
from serving.api.state import EXPLAIN_COLUMNS, RunView, ServingState, Snapshot, dumps, jsonable
from serving.changes import input_hashes
from serving.events.checks import check_row, event_hint, parse_timestamp
from serving.events.fold import fold
from serving.events.journal import Entry, Journal, LiveScore
from serving.events.leads import PendingLeads, warehouse_leads
from serving.events.resolve import Unapplicable, deal_ids, resent, resolve
from serving.events.shapes import BODY_KEY, Parsed, Reading, Unusable
from serving.runs import HASH_COLUMN

log = logging.getLogger("salesml.events")
# While the applier is behind, the warehouse fold waits up to this many fold intervals.
FOLD_DEFER = 5
# /readyz waits at most this long (from the data being loaded) for the first live feature
# context; past it, or when the build failed, the server is ready and events are scored by
# build_features until a context is built.
WARM_SECONDS = 60.0
HISTORY_TABLES = ("deals", "stage_history", "activities")
KEYS = {
    "deals": ("deal_id",),
    "stage_history": ("deal_id", "changed_at", "stage"),
    "activities": ("activity_id",),
}


@dataclass(frozen=True)
class EventResult:
    """What became of one event of a request."""

    index: int
    event_id: str | None
    status: str  # accepted | duplicate | rejected | ignored
    seq: int | None = None
    field: str | None = None
    reason: str | None = None
    deal_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None or k == "event_id"}


@dataclass
class _Live:
    """A deal's score after its latest event, and its answer."""

    score: LiveScore
    answer: tuple[str | None, bytes] | None = None
    base: Any = None  # the RunInfo the answer was built on


def _raw(value: Any) -> Any:
    """A history value as an event would send it."""
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if hasattr(value, "item"):
        return value.item()
    return value


def _now() -> pd.Timestamp:
    return pd.Timestamp(datetime.now(UTC).replace(tzinfo=None))


def _typed_frame(rows: list[dict[str, Any]], like: pd.DataFrame) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    for column in like.columns:
        if column not in frame:
            frame[column] = None
    return frame[list(like.columns)]


def overlay(history: History, rows: dict[str, list[dict[str, Any]]]) -> History:
    """``history`` with typed canonical rows upserted by key (later rows win). Only the new
    rows are normalised (``features.history``'s dtypes); the history's frames are reused,
    and the deal ids of the grown frames are handed over (``deal_id_array``), not re-read."""
    tables: dict[str, pd.DataFrame] = {}
    for name in HISTORY_TABLES:
        base: pd.DataFrame = getattr(history, name)
        new = rows.get(name) or []
        if not new:
            tables[name] = base
            continue
        added = typed_rows(history, name, new)
        # The history leaves activity_id out (no feature reads it): an activity is then known
        # by its deal, time and type.
        keys = [k for k in KEYS[name] if k in base.columns] or ["deal_id", "occurred_at", "type"]
        added = _last_per_key(added, keys)
        replaced = _replaced(base, added, keys)
        ids, hashes = deal_id_array(base), deal_id_hashes(base)
        if replaced.any():
            base, ids, hashes = base[~replaced], ids[~replaced], hashes[~replaced]
        tables[name] = pd.concat([base, added], ignore_index=True)
        remember_deal_ids(
            tables[name],
            np.concatenate([ids, deal_id_array(added)]),
            np.concatenate([hashes, deal_id_hashes(added)]),
        )
    return replace(
        history,
        deals=tables["deals"],
        stage_history=tables["stage_history"],
        activities=tables["activities"],
    )


def typed_rows(history: History, name: str, new: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows of the history's table ``name`` as ``features.history`` types them (its
    ``_canonical``, then the history's own dtypes), built column by column from the rows'
    values: a round's few rows, where a DataFrame per step costs more than the values.
    Values of a kind the fast path does not expect take ``_canonical`` itself."""
    base: pd.DataFrame = getattr(history, name)
    kinds = {c.name: c.kind for c in TABLES[name].columns}
    columns: dict[str, Any] = {}
    for column in base.columns:
        values = [r.get(column) for r in new]
        kind = kinds.get(column)
        if column.startswith(ATTRIBUTE_PREFIX):
            series = pd.Series(values, dtype=object)
            if history.attributes.get(column.removeprefix(ATTRIBUTE_PREFIX)) == "numeric":
                series = pd.to_numeric(series, errors="coerce")
            columns[column] = series.astype(base[column].dtype)
        elif kind in ("timestamp", "date"):
            if not all(v is None or isinstance(v, date) for v in values):
                return _canonical_rows(history, name, new)
            columns[column] = to_naive_utc(pd.Series(values, dtype=object))
        elif kind in ("float", "int"):
            if not all(v is None or isinstance(v, (int, float, np.number)) for v in values):
                return _canonical_rows(history, name, new)
            columns[column] = np.array([np.nan if v is None else v for v in values], np.float64)
        elif kind == "bool":
            columns[column] = pd.Series(values, dtype=object)
        else:
            if not all(v is None or isinstance(v, str) for v in values):
                return _canonical_rows(history, name, new)
            columns[column] = pd.array(values, dtype="str")
    out = pd.DataFrame(columns)
    differ = {c: t for c, t in base.dtypes.items() if out[c].dtype != t}
    return out.astype(differ) if differ else out


def _canonical_rows(history: History, name: str, new: list[dict[str, Any]]) -> pd.DataFrame:
    """``typed_rows`` through ``features.history._canonical`` (the reference it stands for)."""
    base: pd.DataFrame = getattr(history, name)
    added = _canonical(pd.DataFrame(new), TABLES[name], [])
    for column in [c for c in base.columns if c.startswith(ATTRIBUTE_PREFIX)]:
        values = pd.Series([r.get(column) for r in new], index=added.index)
        kind = history.attributes.get(column.removeprefix(ATTRIBUTE_PREFIX))
        added[column] = (
            pd.to_numeric(values, errors="coerce") if kind == "numeric" else values
        ).astype(base[column].dtype)
    return added[list(base.columns)].astype(base.dtypes.to_dict())


def _last_per_key(added: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``added.drop_duplicates(keys, keep="last")``, without the DataFrame work when the
    round's rows have distinct keys (the usual case)."""
    strings = _key_strings(added, keys, np.arange(len(added)))
    if len(set(strings)) == len(strings):
        return added
    return added.drop_duplicates(keys, keep="last")


def _replaced(base: pd.DataFrame, added: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Per row of ``base``: whether a row of ``added`` has its key. Every key but an
    activity's own id names the deal: then only the rows of the added rows' deals are
    compared (a round's few deals, not the whole history)."""
    out = np.zeros(len(base), dtype=bool)
    candidates = np.arange(len(base))
    if "deal_id" in keys:
        wanted = list(pd.unique(deal_id_array(added)))
        candidates = positions_of(base, [w for w in wanted if w is not None])
    if len(candidates) == 0 or len(added) == 0:
        return out
    theirs = set(_key_strings(added, keys, np.arange(len(added))))
    out[candidates] = [key in theirs for key in _key_strings(base, keys, candidates)]
    return out


def _key_strings(frame: pd.DataFrame, keys: list[str], rows: np.ndarray) -> list[tuple[str, ...]]:
    """The keys of ``frame``'s ``rows`` as ``astype(str)`` writes them (a timestamp's
    ``str``, ``nan``, ``NaT``), as tuples: a few rows, so no DataFrame work."""
    columns = [frame[k].take(rows).to_numpy(dtype=object) for k in keys]
    return [tuple(str(v) for v in values) for values in zip(*columns, strict=True)]


def _only(history: History, deals: pd.Index) -> History:
    """``history`` with the rows of ``deals`` only in its deal tables (what
    ``serving.changes.input_hashes`` of those deals reads), in the history's order."""
    wanted = list(deals.astype(str))
    tables = {}
    for name in HISTORY_TABLES:
        frame: pd.DataFrame = getattr(history, name)
        tables[name] = frame.iloc[positions_of(frame, wanted)]
    return replace(
        history,
        deals=tables["deals"],
        stage_history=tables["stage_history"],
        activities=tables["activities"],
    )


@dataclass
class LiveEvents:
    """The journal, the ingestion lock, the applier thread and the live answers."""

    state: ServingState
    home: Path
    limits: Callable[[], Limits]
    fold_seconds: float = 2.0
    journal: Journal = field(init=False)
    errors: int = 0
    last_error: str | None = None

    def __post_init__(self) -> None:
        self.journal = Journal(self.home)
        self._lock = threading.RLock()
        self._fold_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._folder: threading.Thread | None = None
        self._data: Any = None  # the DataIndex the history below started from
        self._history: History | None = None
        self._deal_pos: dict[str, int] = {}
        # deal_id -> (journal seq, raw row): the newest journaled row of each deal
        self._pending: dict[str, tuple[int, dict[str, Any]]] = {}
        # the newest journaled row of each lead not in the warehouse yet
        self._leads = PendingLeads(self.journal.unfolded(limit=1_000_000))
        self._history_seq = 0  # the last journal entry in the history
        self._scored_seq = 0
        self._saved_seq = 0  # the last entry whose live scores are in the journal
        self._journaled_seq = 0  # the last entry this process journaled
        self._as_of: pd.Timestamp | None = None  # the last round's
        self._live: dict[str, _Live] = {s.deal_id: _Live(s) for s in self.journal.live_scores()}
        if self._live:
            self._scored_seq = max(v.score.seq for v in self._live.values())
            self._saved_seq = self._scored_seq
        self._published: RunView | None = None
        self._context: LiveContext | None = None  # the one-deal feature context (per data)
        self._context_data: Any = None
        self._last_fold = 0.0
        self._last_ingest = 0.0  # monotonic time of the last accepted event
        self.scored = threading.Condition()
        self._journaled_at: dict[int, float] = {}  # seq -> monotonic time it was journaled
        # The last rounds, for tracing where a round's time goes (also logged at DEBUG).
        self.rounds: deque[dict[str, Any]] = deque(maxlen=500)
        self._trace: dict[str, Any] = {}
        self._warm = False  # the first context was built (or given up on): readiness stops waiting
        self._warm_since: float | None = None  # when readiness first found the data loaded

    # -- ingestion ------------------------------------------------------------------------
    def ingest(self, reading: Reading, team: str | None = None) -> list[EventResult]:
        """Check, resolve and journal the events of one request (durable on return)."""
        parsed = [e for e in reading.events if isinstance(e, Parsed)]
        results: dict[int, EventResult] = {}
        order: list[int] = []
        for n, event in enumerate(reading.events):
            order.append(n)
            if isinstance(event, Unusable):
                results[n] = EventResult(
                    event.index,
                    event.event_id,
                    event.status,
                    field=event.field,
                    reason=event.reason,
                )
        if self._history is None:
            self.rebase()
        leads = self._lead_lookup(parsed)
        with self._lock:
            known = self.journal.known([e.event_id for e in parsed])
            staged: dict[str, dict[str, Any]] = {}
            accepted: list[tuple[int, dict[str, Any]]] = []
            sent: dict[str, dict[str, Any]] = {}  # this request's accepted events, by id
            source = reading.source
            limits = self.limits()
            for n, event in enumerate(reading.events):
                if not isinstance(event, Parsed):
                    continue
                if event.event_id in known:
                    entry = sent.get(event.event_id) or self.journal.entry(event.event_id)
                    stored = entry if isinstance(entry, dict) else getattr(entry, "event", {})
                    status, field, why = resent(event.event_id, stored, event.to_json(), source)
                    results[n] = EventResult(event.index, event.event_id, status, None, field, why)
                    continue
                outcome = self._check(event, staged, limits, team, leads, source)
                if isinstance(outcome, EventResult):
                    results[n] = outcome
                    continue
                known.add(event.event_id)
                sent[event.event_id] = event.to_json()
                for row in outcome.get("deals", []):
                    staged[str(row["deal_id"])] = row
                for row in outcome.get("leads", []):
                    leads.staged[str(row["lead_id"])] = row
                accepted.append((n, {**event.to_json(), "rows": outcome}))
            seqs = self.journal.append([e for _, e in accepted], reading.source)
            for (n, event_json), seq in zip(accepted, seqs, strict=True):
                event = reading.events[n]
                rows = event_json["rows"]
                if seq:
                    self._leads.note(seq, rows.get("leads", []))
                ids = sorted(deal_ids(rows))
                results[n] = EventResult(
                    event.index,
                    event_json["event_id"],
                    "accepted" if seq else "duplicate",
                    seq=seq,
                    deal_id=ids[0] if ids else None,
                )
            top = max((seq for seq in seqs if seq), default=0)
            self._journaled_seq = max(self._journaled_seq, top)
            stamp = time.monotonic()
            if len(self._journaled_at) > 100_000:  # entries scored elsewhere (a rebase)
                self._journaled_at.clear()
            self._journaled_at.update({seq: stamp for seq in seqs if seq})
            self._last_ingest = stamp
            self._pending.update({deal: (top, row) for deal, row in staged.items()})
        self._wake.set()
        return [results[n] for n in order]

    def _lead_lookup(self, events: Sequence[Parsed]) -> _Leads:
        """The warehouse rows of the leads ``events`` name that have no journaled row pending
        (read before the ingestion lock is taken: the read may wait out a fold)."""
        folds = self._leads.folds
        ids = {str(e.fields.get("lead_id")) for e in events if e.table == "leads"}
        ids = {i for i in ids if i not in self._leads}
        return _Leads(self._warehouse_leads(ids), ids, folds)

    def _warehouse_leads(self, ids: set[str]) -> dict[str, dict[str, Any]]:
        try:
            return warehouse_leads(self.state.warehouse, ids)
        except WarehouseError as exc:
            raise ProblemError(
                503,
                f"a lead event is merged with the lead's row in the warehouse, which another "
                f"process holds ({exc}); send the events again shortly",
                field="body",
                headers={"Retry-After": "5"},
            ) from None

    def _lead_as_it_stands(self, lead_id: str, leads: _Leads) -> dict[str, Any] | None:
        """The lead's row: this request's, else its latest journaled event's, else the
        warehouse's (read again when a fold happened since the lookup)."""
        row = leads.staged.get(lead_id) or self._leads.get(lead_id)
        if row is not None:
            return dict(row)
        if lead_id not in leads.asked or leads.folds != self._leads.folds:
            leads.found.update(self._warehouse_leads({lead_id}))
            leads.asked.add(lead_id)
            leads.folds = self._leads.folds
        found = leads.found.get(lead_id)
        return None if found is None else dict(found)

    def _check(
        self,
        event: Parsed,
        staged: dict[str, dict[str, Any]],
        limits: Limits,
        team: str | None,
        leads: _Leads,
        source: str,
    ) -> dict[str, list[dict[str, Any]]] | EventResult:
        where = f"{BODY_KEY[event.table]}"
        problem = _occurred_problem(event.occurred_at, limits)
        if problem is not None:
            return EventResult(
                event.index, event.event_id, "rejected", field="occurred_at", reason=problem
            )
        deal_id = str(event.fields.get("deal_id", "")) if event.table != "leads" else ""
        current = staged.get(deal_id) or self._current(deal_id) if deal_id else None
        lead = None
        if event.table == "leads":
            lead = self._lead_as_it_stands(str(event.fields.get("lead_id")), leads)
        try:
            reps = self._history.reps if self._history is not None else None
            rows = resolve(event.to_json(), current, reps, current_lead=lead, source=source)
        except Unapplicable as exc:
            return EventResult(
                event.index,
                event.event_id,
                "rejected",
                field=f"{where}.{exc.field}",
                reason=exc.reason,
            )
        if team is not None and current is not None and current.get("team") not in (None, team):
            return EventResult(
                event.index,
                event.event_id,
                "rejected",
                field=f"{where}.deal_id",
                reason="this key sends events of its own team's deals only",
            )
        mine = {str(r["deal_id"]): r for r in rows.get("deals", [])}
        known = _Known(self, {**staged, **mine})
        attributes = self._history.attributes if self._history is not None else {}
        for table, table_rows in rows.items():
            for row in table_rows:
                _, problems = check_row(table, row, limits, known, attributes)
                if problems:
                    first = problems[0]
                    field_name = first.field
                    if table != event.table:
                        field_name = f"{table}.{field_name}"
                    return EventResult(
                        event.index,
                        event.event_id,
                        "rejected",
                        field=f"{where}.{field_name}",
                        reason=first.reason,
                    )
        return rows

    def pending_row(self, deal_id: str) -> dict[str, Any] | None:
        """The deal's newest row from events not yet in the served data (GET /v1/deals/{id}
        answers a deal an event closed by its status; ``serving.api.answers.deal_document``)."""
        pending = self._pending.get(deal_id)
        return None if pending is None else pending[1]

    def knows_deal(self, deal_id: str, staged: dict[str, Any]) -> bool:
        return deal_id in staged or deal_id in self._pending or deal_id in self._deal_pos

    def _current(self, deal_id: str) -> dict[str, Any] | None:
        """The deal's row as it stands (its latest journaled event's, else the history's)."""
        if deal_id in self._pending:
            return dict(self._pending[deal_id][1])
        loc = self._deal_pos.get(deal_id)
        if loc is None or self._history is None:
            return None
        record = self._history.deals.iloc[loc].to_dict()
        return {str(k): _raw(v) for k, v in record.items()}

    # -- the history the applier scores from ---------------------------------------------
    def rebase(self) -> None:
        """Start the history from the served data again when it was reloaded (a poll after a
        warehouse change): the data, plus every journal entry the warehouse read may lack.
        Built without the lock (ingestion goes on meanwhile), swapped in under it."""
        snap = self.state.snapshot()
        if snap.data is None or snap.data is self._data:
            return
        entries = self.journal.since_folded(snap.warehouse_stamp)
        self._trace["rebased"] = len(entries)
        history = snap.data.history
        typed = self._typed(entries)
        if typed:
            history = overlay(history, typed)
        positions = _positions(history)
        first = entries[0].seq if entries else None
        with self._lock:
            self._history, self._data, self._deal_pos = history, snap.data, positions
            self._history_seq = entries[-1].seq if entries else self._history_seq
            if first is not None:  # rows folded before the warehouse read are in the data
                self._pending = {d: p for d, p in self._pending.items() if p[0] >= first}
            else:
                self._pending = {}

    def _extend(self, entries: Sequence[Entry]) -> History:
        """The history with ``entries`` it lacks folded in (built unlocked, swapped locked)."""
        assert self._history is not None
        new = [e for e in entries if e.seq > self._history_seq]
        if not new:
            return self._history
        history = overlay(self._history, self._typed(new))
        # A round without deal rows keeps the deals frame (overlay reuses it): its positions
        # stand (a dict of every deal, not rebuilt each round).
        same = history.deals is self._history.deals
        positions = self._deal_pos if same else _positions(history)
        with self._lock:
            self._history, self._deal_pos = history, positions
            self._history_seq = new[-1].seq
        return history

    def _typed(self, entries: Sequence[Entry]) -> dict[str, list[dict[str, Any]]]:
        limits = self.limits()
        out: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            for table, rows in (entry.rows or {}).items():
                if table not in HISTORY_TABLES:
                    continue
                for row in rows:
                    typed, _ = check_row(table, row, limits, None, None)
                    for name, value in row.items():
                        if name.startswith(ATTRIBUTE_PREFIX):
                            typed[name] = value
                    out.setdefault(table, []).append(typed)
        return out

    # -- the applier ------------------------------------------------------------------------
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()
        # The warehouse fold on its own thread: a slow or busy warehouse never holds up scores.
        self._folder = threading.Thread(target=self._fold_loop, name="events-fold", daemon=True)
        self._folder.start()

    def prepare(self, timeout: float = WARM_SECONDS) -> None:
        """Build the live feature context for the served data now (start-up, the data loaded
        in the foreground, before ``start``): the first events are then applied at the
        one-deal path's speed, not by ``build_features`` while the context is being built."""
        snap = self.state.snapshot()
        if not snap.ready or snap.data is None:
            return
        try:
            self.rebase()
            self._sync_context(snap).join(timeout)
        except Exception as exc:  # readiness and the rounds fall back to build_features
            log.warning("building the live feature context at start-up failed (%s)", exc)

    @property
    def warming(self) -> bool:
        """Whether ``/readyz`` should wait for the live feature context: the applier is running
        on loaded data and its first context is still being built (for at most WARM_SECONDS).
        Once built, failed or given up on, never again: a rebuild after a reload of the data
        does not take a serving server out of rotation."""
        if self._warm:
            return False
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False  # no applier (or a dead one): nothing to wait for
        context = self._context
        if context is not None and (context.usable or not context.building):
            self._warm = True  # built, or the build ended without one (failed)
            return False
        now = time.monotonic()
        if self._warm_since is None:
            self._warm_since = now
        if now - self._warm_since > WARM_SECONDS:
            self._warm = True
            log.warning("the live feature context is not built after %.0f s", WARM_SECONDS)
            return False
        return True

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._folder):
            if thread is not None:
                thread.join(timeout=30)
        if self._context is not None:
            self._context.join(timeout=30)  # a context build in flight
        self.journal.close()

    def _fold_loop(self) -> None:
        # Every fold_seconds once events stop coming; while they come (one within the last
        # fold_seconds) or the applier is behind, at most FOLD_DEFER times less often: a fold
        # is a fixed ~0.1-0.5 s of import work on the cores the scoring needs, and nothing
        # waits for it (the journal, not the warehouse, makes an event durable).
        while not self._stop.wait(min(self.fold_seconds, 0.25)):
            since = time.monotonic() - self._last_fold
            if since < self.fold_seconds:
                continue
            streaming = time.monotonic() - self._last_ingest < self.fold_seconds
            busy = streaming or self._scored_seq < self._journaled_seq
            if busy and since < FOLD_DEFER * self.fold_seconds:
                continue
            try:
                self.fold_now()
            except Exception as exc:  # retried at the next round; the journal keeps the rows
                self.errors += 1
                self.last_error = f"fold: {type(exc).__name__}"
                log.warning("folding events into the warehouse failed (%s)", exc)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self.step()
            except Exception as exc:  # the applier must outlive a bad batch; it retries
                self.errors += 1
                self.last_error = type(exc).__name__
                log.exception("applying events failed; retrying")
                self._stop.wait(1.0)

    def step(self) -> None:
        """One round: score what is new, re-publish after a new run, fold when due."""
        snap = self.state.snapshot()
        if not snap.ready or snap.models is None or snap.data is None:
            return
        started = time.monotonic()
        self._trace = {"t": round(time.time(), 3)}
        self.rebase()
        self._lap("rebase", started)
        entries = self.journal.after(self._scored_seq)
        self._sync_context(snap)
        if entries:
            seqs = [self._journaled_at.pop(e.seq, None) for e in entries]
            waited = [started - t for t in seqs if t is not None]
            self._trace.update(events=len(entries), wait=round(max(waited, default=0.0), 3))
            mark = time.monotonic()
            stages = self._stages_before(entries)
            history = self._extend(entries)
            self._lap("extend", mark)
            self._score(entries, snap, history, stages)
        mark = time.monotonic()
        self._publish()
        self._lap("publish_run", mark)
        if entries or self._trace.get("rebase", 0) > 0.01:
            self._trace["total"] = round(time.monotonic() - started, 3)
            self.rounds.append(self._trace)
            log.debug("round %s", json.dumps(self._trace))

    def _lap(self, name: str, since: float) -> float:
        """Record ``name``'s time in this round's trace (seconds since ``since``)."""
        now = time.monotonic()
        self._trace[name] = round(now - since, 3)
        return now

    def fold_now(self) -> int:
        """Import unfolded journal entries into the warehouse; the entries folded."""
        with self._fold_lock:
            self._last_fold = time.monotonic()
            entries = self.journal.unfolded()
            if not entries:
                return 0
            summary = fold(entries, self.state.warehouse, self.home / "rejects", self.limits())
            if summary is None:
                return 0
            self.journal.mark_folded([e.seq for e in entries])
            self._leads.folded(entries)
            log.debug(
                "fold %s",
                json.dumps(
                    {
                        "t": round(time.time(), 3),
                        "entries": len(entries),
                        "seconds": round(time.monotonic() - self._last_fold, 3),
                    }
                ),
            )
        rejected = sum(t.rejected for t in summary.tables.values())
        if rejected:
            log.warning(
                "%d event rows rejected by the import rules: %s", rejected, summary.rejects_file
            )
        return len(entries)

    def _stages_before(self, entries: Sequence[Entry]) -> dict[str, str | None]:
        """The stage before this round of each deal the round's deal rows touch (None when
        unknown: a new deal, or a history that already holds some of the round's rows)."""
        if self._history is None or min(e.seq for e in entries) <= self._history_seq:
            return {}
        stage = self._history.deals["stage"]
        out: dict[str, str | None] = {}
        for entry in entries:
            for row in (entry.rows or {}).get("deals", []):
                deal = str(row["deal_id"])
                loc = self._deal_pos.get(deal)
                if deal not in out:
                    out[deal] = None if loc is None else _raw(stage.iat[loc])
        return out

    def _score(
        self,
        entries: Sequence[Entry],
        snap: Snapshot,
        history: History,
        stages: dict[str, str | None] | None = None,
    ) -> None:
        assert snap.data is not None
        last = {}
        of_deal: dict[str, list[Entry]] = {}  # the round's events of each deal, in order
        for entry in entries:
            for deal in deal_ids(entry.rows or {}):
                last[deal] = entry
                of_deal.setdefault(deal, []).append(entry)
        stamps = [pd.Timestamp(e.occurred_at) for e in entries]
        stamps = [s.tz_convert(None) if s.tzinfo else s for s in stamps]
        # As of the latest event applied so far (never before an earlier round's: events sent
        # together are acknowledged in any order of their stamps, and a round whose as_of went
        # back would score on a history with rows after it — and cost the context a rebuild).
        latest = [snap.data.as_of, *stamps, *([self._as_of] if self._as_of is not None else [])]
        as_of = min(max(latest), max(_now(), snap.data.as_of))
        self._as_of = as_of
        wanted = [d for d in last if d in self._deal_pos]
        assert self._context is not None
        dirty = sorted(
            {
                str(row["deal_id"])
                for e in entries
                for row in (e.rows or {}).get("stage_history", [])
                if str(row["deal_id"]) in wanted
            }
        )
        mark = time.monotonic()
        features = self._context.rows(history, as_of, wanted, dirty)
        mark = self._lap("rows", mark)
        self._trace["path"] = self._context.last_path
        scored: list[LiveScore] = []
        if len(features):
            future = self.state.scorer.submit(features, snap.models, as_of, batchable=False)
            rows = future.result(timeout=60)
            mark = self._lap("score", mark)
            stamp = _now().isoformat()
            for found in rows.to_dict(orient="records"):
                deal = str(found["deal_id"])
                record = jsonable(found)
                entry = last[deal]
                previous = self._live.get(deal)
                point = {
                    "run_id": f"event:{entry.event_id}",
                    "event_id": entry.event_id,
                    "event_seq": entry.seq,
                    "event_type": entry.type,
                    "occurred_at": entry.occurred_at,
                    **{
                        k: record.get(k)
                        for k in (
                            "as_of",
                            "model_version",
                            "win_probability",
                            "score",
                            *EXPLAIN_COLUMNS,
                        )
                    },
                }
                scored.append(
                    LiveScore(
                        deal,
                        entry.seq,
                        entry.event_id,
                        stamp,
                        {
                            "record": record,
                            "point": point,
                            "previous": previous.score.row["point"]
                            if previous is not None
                            else None,
                            "earlier": _earlier(previous.score.row) if previous else [],
                            "event": describe_round(of_deal[deal], (stages or {}).get(deal)),
                        },
                    )
                )
        for score in scored:
            self._live[score.deal_id] = _Live(score)
        self._published = None  # publish the new answers
        self._publish()
        self._scored_seq = max(e.seq for e in entries)
        with self.scored:
            self.scored.notify_all()
        mark = self._lap("publish", mark)
        # After the answers are out: the records' input hashes (provenance, not in the
        # answer), the journal's copy (a crash before it rescores these entries at the next
        # start, to the same rows), the context for the next round.
        if scored:
            version = str(snap.model_version)
            hashes = input_hashes(_only(history, features.index), features.index, as_of, version)
            for score in scored:
                score.row["record"][HASH_COLUMN] = hashes.get(score.deal_id)
            self.journal.put_live(scored)
        self._saved_seq = self._scored_seq
        with self.scored:
            self.scored.notify_all()
        mark = self._lap("save", mark)
        self._context.refresh(history, as_of, wait=False)
        self._lap("refresh", mark)

    def _sync_context(self, snap: Snapshot) -> LiveContext:
        """The one-deal context for the served data. At start-up and after a reload of the
        data it is rebuilt on the builder thread (the rounds meanwhile are scored by
        ``build_features``), so no round waits for it; kept across a reload of the same
        feature spec (its costs measured so far stay)."""
        assert snap.data is not None and self._history is not None
        context = self._context
        if context is not None and self._context_data is snap.data:
            return context
        if context is None or list(context.spec) != list(snap.data.spec):
            context = LiveContext(snap.data.spec)
        # As of the last round's (events are stamped as they happen: the next round's is
        # about now); the context is moved to the round's as_of when nothing happens between.
        now = max(_now(), snap.data.as_of)
        as_of = self._as_of if self._as_of is not None else now
        context.start_rebuild(self._history, as_of)
        self._context, self._context_data = context, snap.data
        return context

    def _publish(self) -> None:
        """Put the live answers on top of the served run (again, after a new run)."""
        snap = self.state.snapshot()
        if snap.run is None or (snap.run is self._published and self._published is not None):
            return

        def update(run: RunView) -> RunView:
            answers = dict(run.answers)
            stale, todo = [], []
            for deal, live in list(self._live.items()):
                if live.answer is not None and live.base is run.info:
                    answers[deal] = live.answer  # published on this run: nothing to check
                elif self._covered(run, live.score):
                    stale.append(deal)
                else:
                    todo.append(live)
            for deal, answer in live_answers(run, [live.score for live in todo]).items():
                self._live[deal].answer, self._live[deal].base = answer, run.info
                answers[deal] = answer
            for deal in stale:
                self._live.pop(deal, None)
            if stale:
                self.journal.drop_live(stale)
            return replace(run, answers=answers)

        published = self.state.publish_run(update)  # the applier thread is _live's one writer
        self._published = published.run

    @staticmethod
    def _covered(run: RunView, live: LiveScore) -> bool:
        """Whether ``run`` scored the deal at the event's as-of or later."""
        record = live.row["record"]
        for info, frame in reversed(run.past):
            if info.run_id != run.info.run_id:
                continue
            if live.deal_id not in frame.index:
                return False
            run_as_of = pd.Timestamp(str(frame.loc[live.deal_id, "as_of"]))
            return bool(run_as_of >= pd.Timestamp(record["as_of"]))
        return False

    def wait_scored(self, seq: int, timeout: float, saved: bool = False) -> bool:
        """Block until the entry ``seq`` has been scored and published — and, with ``saved``,
        its live score written to the journal too (tests, benchmarks)."""
        end = time.monotonic() + timeout
        with self.scored:
            while (self._saved_seq if saved else self._scored_seq) < seq:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.scored.wait(left)
        return True

    def is_scored(self, seq: int) -> bool:
        return self._scored_seq >= seq

    def status(self) -> dict[str, Any]:
        return {
            **self.journal.counts(),
            "scored_seq": self._scored_seq,
            "live_deals": len(self._live),
            "errors": self.errors,
            "last_error": self.last_error,
        }


def _occurred_problem(text: str, limits: Limits) -> str | None:
    """Why an event's time is unusable (the import rules' reading and bounds), or None."""
    stamp = parse_timestamp(text)
    if stamp is None:
        return f"could not read {text!r} as timestamp; {event_hint('timestamp', text)}"
    if stamp < limits.earliest or stamp > limits.latest("occurred_at"):
        return (
            f"occurred_at {text} is not a plausible date (before {limits.earliest.date()} or "
            "more than a year from now)"
        )
    return None


@dataclass
class _Leads:
    """One request's leads: the warehouse rows looked up (``found``, for the ids ``asked``,
    before fold number ``folds``) and the rows of its own accepted events (``staged``)."""

    found: dict[str, dict[str, Any]]
    asked: set[str]
    folds: int
    staged: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Known:
    """Deal ids an event may refer to (the history's, journaled and this request's)."""

    live: LiveEvents
    staged: dict[str, Any]

    def __contains__(self, deal_id: object) -> bool:
        return self.live.knows_deal(str(deal_id), self.staged)


def _positions(history: History) -> dict[str, int]:
    ids = deal_id_array(history.deals).tolist()
    return {str(d): i for i, d in enumerate(ids)}


def describe(entry: Entry) -> str:
    """The event in a few words, for the score change's summary."""
    fields = entry.event.get("fields", {})
    detail = ""
    if entry.type == "deal.stage_changed" or "stage" in fields:
        detail = f" to stage {fields.get('stage')}"
    elif entry.type == "activity.logged":
        detail = f" ({fields.get('type')})"
    elif entry.type == "deal.updated" and _named(fields):
        detail = f" ({_cut(', '.join(_named(fields)), STAGE_CHARS)})"
    return f"{entry.type}{detail} at {entry.occurred_at} (event {entry.event_id})"


def _named(fields: dict[str, Any]) -> list[str]:
    """The fields an update sent (its deal id aside), as a change summary names them."""
    return sorted(k for k in fields if k != "deal_id")


# A deal's answer keeps a point per event since the run, the last EVENT_POINTS of them (the
# run's points come first); the earlier ones without their drivers (only the last two points'
# drivers are read, for the change's attribution), so a busy deal's answer stays small.
EVENT_POINTS = 20


def _earlier(row: dict[str, Any]) -> list[dict[str, Any]]:
    """The event points before ``row``'s previous one, for the next event's live row: the
    previous row's own earlier points and previous point, bounded, without drivers."""
    older = list(row.get("earlier") or [])
    if row.get("previous") is not None:
        older.append({k: v for k, v in row["previous"].items() if k not in EXPLAIN_COLUMNS})
    return older[-(EVENT_POINTS - 2) :]


def _since_run(runs: list[dict[str, Any]], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The event points a run has not covered (as_of after its latest point's): a run at the
    event's time or later supersedes it, as it does the live answer (``_covered``)."""
    if not runs or runs[-1].get("as_of") is None:
        return events
    try:
        ran = pd.Timestamp(str(runs[-1]["as_of"]))
        return [p for p in events if pd.Timestamp(str(p.get("as_of"))) > ran]
    except (TypeError, ValueError):
        return events


# A change summary names at most this many of a round's events of one deal (then "and N
# more"), each id cut to ID_CHARS: the summary stays a line, however large the round.
NAMED_EVENTS = 5
ID_CHARS = 40
STAGE_CHARS = 40


def _cut(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _what(entry: Entry, before: str | None) -> tuple[str, str | None]:
    """One event of a round in a few words, and the deal's stage after it."""
    fields = entry.event.get("fields", {})
    if entry.type == "deal.stage_changed" or "stage" in fields:
        stage = fields.get("stage")
        moved = f"{_cut(before, STAGE_CHARS)}->" if before not in (None, stage) else ""
        return f"stage {moved}{_cut(stage, STAGE_CHARS)}", stage
    if entry.type == "activity.logged":
        return str(_cut(fields.get("type"), STAGE_CHARS)), before
    named = _named(fields)
    if entry.type == "deal.updated" and named:
        return f"{entry.type} ({_cut(', '.join(named), STAGE_CHARS)})", before
    return entry.type, before


def describe_round(entries: Sequence[Entry], stage: str | None = None) -> str:
    """A deal's events of one round for its change summary: the event as ``describe`` puts
    it when there is one; else every event, in order and bounded — "2 events: stage
    Proposal->Negotiation (rv-1), call (rv-2)" (``stage``: the deal's stage before them)."""
    if len(entries) == 1:
        return describe(entries[0])
    parts = []
    for entry in entries:
        text, stage = _what(entry, stage)
        parts.append(f"{text} ({_cut(entry.event_id, ID_CHARS)})")
    more = len(parts) - NAMED_EVENTS
    shown = (
        parts[:NAMED_EVENTS] if more <= 0 else [*parts[: NAMED_EVENTS - 1], f"and {more + 1} more"]
    )
    last = entries[-1]
    return f"{len(entries)} events: {', '.join(shown)}; the last at {last.occurred_at}"


def _change(prev: dict[str, Any], cur: dict[str, Any], drivers: Any, event: str) -> ScoreChange:
    """What changed between the deal's previous point and its point after the event (the
    summary reads like ``serving.api.answers.score_change``'s, naming the event)."""
    p0, p1 = prev.get("win_probability"), cur.get("win_probability")
    dp = None if p0 is None or p1 is None else float(p1) - float(p0)
    s0, s1 = prev.get("score"), cur.get("score")
    summary = probability_move(p0, p1, dp)
    model_changed = prev.get("model_version") != cur.get("model_version")
    if model_changed:
        summary += f"; model version {prev.get('model_version')} to {cur.get('model_version')}"
    return ScoreChange(
        previous_run_id=str(prev["run_id"]),
        current_run_id=str(cur["run_id"]),
        win_probability_change=dp,
        score_change=None if s0 is None or s1 is None else int(s1) - int(s0),
        model_changed=bool(model_changed),
        as_of_changed=prev.get("as_of") != cur.get("as_of"),
        summary=f"{summary}; after {event}",
        drivers=drivers,
    )


def _attributions(pairs: dict[str, tuple[dict[str, Any], dict[str, Any]]]) -> dict[str, Any]:
    """Driver attribution of each deal's change, in one call for all of them."""
    if not pairs:
        return {}
    try:  # the pairs' dicts as they are: a few deals, where frames cost more than the values
        return attribute_pairs(pairs, top=None)
    except Exception:  # an attribution failure must not hold back the score
        log.warning("driver attribution failed for live scores")
        return {}


def live_answers(run: RunView, scores: Sequence[LiveScore]) -> dict[str, tuple[str | None, bytes]]:
    """``deal_id -> (team, encoded DealResponse)``: each deal's score after its latest event,
    on top of ``run`` (its runs' points, then the earlier event's, then this one's)."""
    points_of: dict[str, list[dict[str, Any]]] = {}
    pairs = {}
    for live in scores:
        points = run.history(live.deal_id, explained=True)
        events = list(live.row.get("earlier") or [])
        if live.row.get("previous") is not None:
            events.append(live.row["previous"])
        points += _since_run(points, events)
        points.append(live.row["point"])
        points_of[live.deal_id] = points
        if len(points) >= 2:
            pairs[live.deal_id] = (points[-2], points[-1])
    drivers = _attributions(pairs)
    out = {}
    for live in scores:
        points = points_of[live.deal_id]
        record = dict(live.row["record"])
        record.pop(HASH_COLUMN, None)
        change = None
        if live.deal_id in pairs:
            prev, cur = pairs[live.deal_id]
            change = _change(prev, cur, drivers.get(live.deal_id), live.row["event"])
        shown = [{k: v for k, v in p.items() if k not in EXPLAIN_COLUMNS} for p in points]
        answer = DealResponse(
            # the score is the event's, not the score run's: the same id as history[-1]
            run_id=str(points[-1].get("run_id") or run.info.run_id),
            score=ScoreRow(**record),
            history=[RunPoint(**p) for p in shown],
            change=change,
        )
        out[live.deal_id] = (record.get("team"), dumps(answer.model_dump(mode="json")).encode())
    return out

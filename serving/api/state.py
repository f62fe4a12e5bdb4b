"""What the server holds in memory, how it is refreshed, and the one thread that scores.

A ``Snapshot`` (models, data index, latest score run) is immutable: a request takes the current
one once and uses it to the end, so a hot swap (new champion, rollback, new score run) never
fails a request in flight. ``ServingState.poll_once`` checks the registry alias and the
``latest`` pointer and swaps in a new snapshot when either moved; when the registry or the
warehouse cannot be read it keeps what it has.

Scoring runs on one ``Scorer`` thread: LightGBM (and SHAP contributions) never run on two
threads at once, and concurrent requests are scored together in one call (micro-batching),
which is where the throughput under concurrency comes from. ``score_features`` works row by
row, so a row's score does not depend on the rows it is batched with.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.history import load_history
from salesml.scoring import Scorer as ScoringModel
from salesml.scoring.scorer import score_columns
from salesml.warehouse import connect, data_span
from serving.api import models as registry
from serving.api.schemas import ScoreRow
from serving.api.whatif import DataIndex, LiveRows, build_index, framed, position
from serving.changes import input_hashes
from serving.runs import HASH_COLUMN, RunInfo, RunStore, decode

log = logging.getLogger("salesml.api")


# -- the scoring thread ----------------------------------------------------------------------
@dataclass
class _Job:
    features: LiveRows | None  # None until ``build`` has run (on the scoring thread)
    models: Any
    as_of: pd.Timestamp
    batchable: bool
    future: Future[Any] = field(default_factory=Future)
    build: Callable[[], LiveRows] | None = None
    as_records: bool = False  # the result as ``records(rows)``, not a frame

    @property
    def rows(self) -> int:
        return 1 if self.features is None else len(self.features)

    def ids(self) -> set[Any]:
        """The deal ids of the job's rows (as the scored frame's index holds them)."""
        assert self.features is not None
        if isinstance(self.features, pd.DataFrame):
            return set(self.features.index)
        return {str(row.deal_id) for row in self.features}

    def ready(self) -> bool:
        """Build the features when the job carries a builder; False when that failed (the
        request gets the exception, e.g. a ``ProblemError`` for a what-if asked wrongly)."""
        if self.features is None and self.build is not None:
            try:
                self.features = self.build()
            except Exception as exc:
                self.future.set_exception(exc)
                return False
        return True


def _batches(jobs: list[_Job]) -> list[list[_Job]]:
    """Jobs scored together: same models and as_of, and no deal twice in one batch (two
    concurrent requests for one deal are scored apart: the frame's index must be unique)."""
    groups: dict[tuple[int, pd.Timestamp], list[tuple[list[_Job], set[Any]]]] = {}
    for job in jobs:
        assert job.features is not None
        batches = groups.setdefault((id(job.models), job.as_of), [])
        ids = job.ids()
        home = next((b for b in batches if not b[1] & ids), None)
        if home is None:
            batches.append(([job], ids))
        else:
            home[0].append(job)
            home[1].update(ids)
    return [batch for batches in groups.values() for batch, _ in batches]


class Scorer:
    """Scores on one thread; jobs waiting together are scored in one call."""

    def __init__(self, max_rows: int = 1024) -> None:
        self.max_rows = max_rows
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(
        self,
        features: pd.DataFrame | None,
        models: Any,
        as_of: pd.Timestamp,
        *,
        batchable: bool,
        build: Callable[[], LiveRows] | None = None,
        as_records: bool = False,
    ) -> Future[Any]:
        """Score ``features`` (or what ``build()`` gives, called on the scoring thread: a live
        answer's feature row is built where it is scored, with no hop through a thread pool).
        The future gives the score rows' frame, or with ``as_records`` their ``records`` (read
        once for the whole batch instead of once per request)."""
        if features is None and build is None:
            raise ValueError("give features or a build function")
        job = _Job(features, models, as_of, batchable, build=build, as_records=as_records)
        self._ensure_thread()
        self._queue.put(job)
        return job.future

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="scorer", daemon=True)
                self._thread.start()

    def close(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                self._queue.put(None)
                self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, rows = [job], job.rows
            while rows < self.max_rows:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._queue.put(None)
                    break
                jobs.append(more)
                rows += more.rows
            jobs = [j for j in jobs if j.ready()]
            for j in jobs:
                if not j.batchable:
                    self._score([j])
            for group in _batches([j for j in jobs if j.batchable]):
                self._score(group)

    @staticmethod
    def _score(jobs: list[_Job]) -> None:
        try:
            # One frame for the batch: the one-deal rows of live answers framed at once.
            features = framed([j.features for j in jobs if j.features is not None])
            n_rows = len(features)
            # Records are read straight from the columns; a frame is built only for the jobs
            # that want one (the same values: tests/serving/test_live_answers.py).
            columns = score_columns(features, jobs[0].models, jobs[0].as_of)
            listed = column_records(columns, n_rows) if any(j.as_records for j in jobs) else []
            rows = (
                pd.DataFrame(columns, index=pd.RangeIndex(n_rows))
                if not all(j.as_records for j in jobs)
                else None
            )
        except Exception as exc:  # handed to the requests, which answer 500 without details
            for j in jobs:
                j.future.set_exception(exc)
            return
        start = 0
        for j in jobs:
            n = j.rows
            if j.as_records:
                j.future.set_result(listed[start : start + n])
            else:
                assert rows is not None
                j.future.set_result(rows.iloc[start : start + n].reset_index(drop=True))
            start += n


# -- score runs in memory --------------------------------------------------------------------
@dataclass(frozen=True)
class RunView:
    """The latest run's rows, and a few earlier runs for each deal's history."""

    info: RunInfo
    rows: pd.DataFrame
    positions: pd.Index  # deal_id -> row
    past: list[tuple[RunInfo, pd.DataFrame]]  # oldest first, the latest included; indexed
    # GET /v1/deals/{id} answers already encoded: deal_id -> (team, JSON bytes). A view is
    # immutable, so an answer computed once holds for the view's lifetime.
    answers: dict[str, tuple[str | None, bytes]] = field(default_factory=dict, compare=False)

    def row(self, deal_id: str) -> dict[str, Any] | None:
        loc = position(self.positions, deal_id)
        if loc < 0:
            return None
        record = self.rows.iloc[loc].to_dict()
        for column in self.info.json_columns:
            if column in record:
                record[column] = decode(record[column])
        record.pop(HASH_COLUMN, None)
        out: dict[str, Any] = jsonable(record)
        return out

    def history(self, deal_id: str, explained: bool = False) -> list[dict[str, Any]]:
        """The deal's points across the runs kept, oldest first; with ``explained`` the last
        two also carry their ``drivers`` and ``drivers_base`` (for the change attribution)."""
        out = []
        for info, frame in self.past:
            loc = position(frame.index, deal_id)
            if loc < 0:
                continue
            point = jsonable(frame.iloc[loc].to_dict())
            if not explained:
                for column in EXPLAIN_COLUMNS:
                    point.pop(column, None)
            out.append({"run_id": info.run_id, **point})
        return out


HISTORY_COLUMNS = ("win_probability", "score", "model_version", "as_of")
EXPLAIN_COLUMNS = ("drivers", "drivers_base")  # kept for the last two runs only


def load_run_view(store: RunStore, keep: int) -> RunView | None:
    latest = store.latest()
    if latest is None:
        return None
    rows = store.read(latest)
    rows["deal_id"] = rows["deal_id"].astype(str)
    past = []
    earlier = [r for r in store.list_runs() if r.run_id != latest.run_id]
    runs = earlier[-(keep - 1) :] if keep > 1 else []
    kept = [*runs, latest]
    for n, info in enumerate(kept):
        frame = rows if info is latest else store.read(info)
        wanted = HISTORY_COLUMNS + (EXPLAIN_COLUMNS if n >= len(kept) - 2 else ())
        cols = [c for c in wanted if c in frame.columns]
        small = frame[["deal_id", *cols]].copy()
        small["deal_id"] = small["deal_id"].astype(str)
        past.append((info, small.drop_duplicates("deal_id").set_index("deal_id")))
    return RunView(latest, rows, pd.Index(rows["deal_id"]), past)


# -- encoded answers -------------------------------------------------------------------------
MEMO_MAX_ROWS = 250_000  # encoded answers kept per snapshot (about 2 kB each)
dumps = functools.partial(json.dumps, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""JSON exactly as FastAPI's ``JSONResponse`` renders it."""


def encode_score_row(record: dict[str, Any]) -> bytes:
    """One score row as the API answers it: validated by ``ScoreRow`` (which turns drivers and
    actions held as JSON text into arrays of objects), then JSON."""
    return dumps(ScoreRow(**record).model_dump(mode="json")).encode()


class ScoreMemo:
    """Encoded score rows of known open deals scored without overrides, for one (models, data)
    pair: what ``score_features(features.loc[[deal]], models, data.as_of)`` gives, computed once.

    A row comes from the latest score run when that run holds exactly this input — same model
    version, same as_of and the same ``input_hash`` (a hash of the deal's inputs and the model
    version, ``serving.changes``; the batch scores with the same ``score_features``) — else it
    is scored on the scoring thread on the first request and kept. A new model, a new run or
    new warehouse data makes a new snapshot and with it a new, empty memo.
    """

    def __init__(self, models: Any, data: DataIndex, run: RunView | None) -> None:
        self.models, self.data = models, data
        self.rows: dict[str, bytes] = {}
        self.run: RunView | None = None
        self.from_run: frozenset[str] = frozenset()
        version = registry.version_of(models)
        if run is None or HASH_COLUMN not in run.rows.columns or not len(data.features):
            return
        frame = run.rows
        same_as_of = (pd.to_datetime(frame["as_of"]) == data.as_of).to_numpy(dtype=bool)
        same_model = (frame["model_version"].astype(str) == version).to_numpy(dtype=bool)
        mine = input_hashes(data.history, data.features.index, data.as_of, version)
        theirs = mine.reindex(frame["deal_id"]).to_numpy(dtype=object)
        same_input = frame[HASH_COLUMN].to_numpy(dtype=object) == theirs
        keep = same_as_of & same_model & same_input
        self.run = run
        self.from_run = frozenset(frame["deal_id"][keep])

    def fits(self, models: Any, data: DataIndex) -> bool:
        return self.models is models and self.data is data

    def get(self, deal_id: str) -> bytes | None:
        hit = self.rows.get(deal_id)
        if hit is None and self.run is not None and deal_id in self.from_run:
            record = self.run.row(deal_id)
            if record is not None:
                hit = encode_score_row(record)
                self.put(deal_id, hit)
        return hit

    def put(self, deal_id: str, encoded: bytes) -> None:
        if len(self.rows) < MEMO_MAX_ROWS:
            self.rows[deal_id] = encoded


# -- JSON-safe values ------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [jsonable(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, pd.Timestamp):
        return None if pd.isna(value) else value.isoformat()
    if value is pd.NaT or value is pd.NA:
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _priced(snap: Snapshot) -> Snapshot:
    """``snap`` with its models priced by its data's list prices (``serving.chunk.priced``:
    a deal without an amount has the expected revenue its product's list price gives)."""
    if not isinstance(snap.models, ScoringModel) or snap.data is None:
        return snap
    models = snap.models.priced(snap.data.list_prices)
    return snap if models is snap.models else replace(snap, models=models)


def column_records(columns: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """``records(pd.DataFrame(columns))`` without the frame (``score_columns``' output: arrays
    of ``n`` values, or one value for every row). A live answer's row pays ~1 ms for building
    the frame and reading it back."""
    if not columns:
        return [{} for _ in range(n)]
    names = list(columns)
    values = [_column_values(columns[name], n) for name in names]
    return [jsonable(dict(zip(names, row, strict=True))) for row in zip(*values, strict=True)]


def _column_values(column: Any, n: int) -> list[Any]:
    """The values a frame's column built from ``column`` gives to ``tolist`` (before
    ``jsonable``): datetimes as ``Timestamp``/``NaT``, scalars repeated."""
    if isinstance(column, np.ndarray):
        if column.dtype.kind == "M":
            return list(pd.DatetimeIndex(column).tolist())
        if column.ndim != 1 or len(column) != n:
            raise ValueError(f"a column of {column.shape} values for {n} rows")
        return list(column.tolist())
    if isinstance(column, pd.Index | pd.Series | pd.api.extensions.ExtensionArray):
        return list(column.tolist())
    if isinstance(column, np.datetime64):
        column = pd.Timestamp(column)
    return [column] * n


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """``rows.to_dict(orient="records")``, JSON-safe. Read column by column: on the one row of
    a live answer, ``to_dict`` costs more than the JSON (and runs on the event loop)."""
    if rows.shape[1] == 0:
        return [{} for _ in range(len(rows))]
    names = [str(c) for c in rows.columns]
    columns = [rows.iloc[:, i].tolist() for i in range(rows.shape[1])]
    return [jsonable(dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]


# -- the state -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Snapshot:
    models: Any | None = None
    model_version: str | None = None
    data: DataIndex | None = None
    run: RunView | None = None
    warehouse_stamp: float | None = None
    memo: ScoreMemo | None = None

    @property
    def ready(self) -> bool:
        return self.models is not None and self.data is not None and self.run is not None


class ServingState:
    """The current snapshot, how to refresh it, and caches of registry and KPI answers."""

    def __init__(self, home: Path, alias: str, history_runs: int = 10) -> None:
        self.home = home
        self.alias = alias
        self.history_runs = history_runs
        self.store = RunStore(home)
        self.scorer = Scorer()
        self._snapshot = Snapshot()
        self._swap_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.versions: list[dict[str, Any]] = []
        self.kpi_cache: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.kpi_lock = threading.Lock()
        self.on_swap: Callable[[Snapshot], None] | None = None
        # Fills a new snapshot's caches ahead of the first requests, on its own thread:
        # ``warmer(state, snapshot)`` (serving.api.answers.warm).
        self.warmer: Callable[[ServingState, Snapshot], object] | None = None
        self._warming: threading.Thread | None = None
        self.registry_errors = 0
        self.last_error: str | None = None

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def _swap(self, snap: Snapshot) -> None:
        with self._swap_lock:
            self._snapshot = snap
        if self.on_swap is not None:
            self.on_swap(snap)

    def publish_run(self, update: Callable[[RunView], RunView | None]) -> Snapshot:
        """Swap in the run view ``update(current view)`` gives (``None``: keep it), under the
        refresh lock so a poll in flight cannot undo it (``serving.api.live``: scores of deals
        that CRM events changed)."""
        with self._refresh_lock:
            snap = self._snapshot
            if snap.run is None:
                return snap
            view = update(snap.run)
            if view is not None and view is not snap.run:
                snap = replace(snap, run=view)
                self._swap(snap)
            return snap

    # refreshing --------------------------------------------------------------------------
    def poll_once(self) -> Snapshot:
        """Check the registry and the latest run; swap in what changed. Never raises."""
        with self._refresh_lock:
            snap = self._snapshot
            snap = self._refresh_models(snap)
            snap = self._refresh_data(snap)
            snap = _priced(snap)
            if snap is not self._snapshot:
                if snap.models is not None and snap.data is not None:
                    memo = snap.memo
                    if (
                        memo is None
                        or not memo.fits(snap.models, snap.data)
                        or (memo.run is not snap.run)
                    ):
                        try:
                            snap = replace(snap, memo=ScoreMemo(snap.models, snap.data, snap.run))
                        except Exception as exc:  # the memo is an optimisation only
                            log.warning("no score memo for this snapshot (%s)", type(exc).__name__)
                            snap = replace(snap, memo=None)
                self._swap(snap)
                self._warm(snap)
            return snap

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _warm(self, snap: Snapshot) -> None:
        warmer = self.warmer
        if warmer is None or not snap.ready:
            return

        def run() -> None:
            try:
                warmer(self, snap)
            except Exception as exc:  # warming is an optimisation only
                log.warning("could not warm the answers of this snapshot (%s)", type(exc).__name__)

        self._warming = threading.Thread(target=run, name="warm", daemon=True)
        self._warming.start()

    def _refresh_models(self, snap: Snapshot) -> Snapshot:
        try:
            version = registry.registry_version(self.alias)
        except Exception as exc:
            self.registry_errors += 1
            self.last_error = f"registry: {type(exc).__name__}"
            log.warning(
                "registry unreachable; keeping model version %s (%s)",
                snap.model_version,
                type(exc).__name__,
            )
            return snap
        if version == snap.model_version and snap.models is not None:
            return snap
        try:
            models = registry.load_models(self.alias)
        except Exception as exc:
            self.last_error = f"model load: {type(exc).__name__}"
            log.warning(
                "cannot load %s@%s: %s", registry.MODEL_NAME, self.alias, type(exc).__name__
            )
            return snap
        log.info(
            "serving model version %s (was %s)", registry.version_of(models), snap.model_version
        )
        with contextlib.suppress(Exception):
            self.versions = registry.list_versions()
        return replace(snap, models=models, model_version=registry.version_of(models))

    def _refresh_data(self, snap: Snapshot) -> Snapshot:
        try:
            latest = self.store.latest()
        except Exception as exc:
            self.last_error = f"score runs: {type(exc).__name__}"
            return snap
        try:
            stamp = self.warehouse.stat().st_mtime
        except FileNotFoundError:
            stamp = None
        run_moved = latest is not None and (
            snap.run is None
            or snap.run.info.run_id != latest.run_id
            or snap.run.info.created_at != latest.created_at
        )
        data_moved = snap.data is None or stamp != snap.warehouse_stamp or run_moved
        if not run_moved and not data_moved:
            return snap
        out = snap
        if run_moved:
            try:
                view = load_run_view(self.store, self.history_runs)
                out = replace(out, run=view)
                log.info("serving score run %s", view.info.run_id if view else None)
            except Exception as exc:
                self.last_error = f"score run: {type(exc).__name__}"
                log.warning("cannot read the latest score run (%s)", type(exc).__name__)
        if data_moved and stamp is not None:
            try:
                con = connect(self.warehouse, read_only=True)
                try:
                    # The data's as-of, never after the clock (like every command's default).
                    history = load_history(con, data_span(con, datetime.now(UTC)))
                finally:
                    con.close()
                out = replace(out, data=build_index(history), warehouse_stamp=stamp)
                with self.kpi_lock:
                    self.kpi_cache.clear()
            except Exception as exc:
                self.last_error = f"warehouse: {type(exc).__name__}"
                log.warning(
                    "cannot read the warehouse; keeping the data loaded (%s)", type(exc).__name__
                )
        return out

    # background polling ------------------------------------------------------------------
    def start(self, poll_seconds: float, load_now: bool) -> None:
        if load_now:
            self.poll_once()
        if poll_seconds <= 0 and load_now:
            return
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll_loop, args=(poll_seconds, not load_now), name="poller", daemon=True
        )
        self._poller.start()

    def _poll_loop(self, poll_seconds: float, first_now: bool) -> None:
        if first_now:
            self.poll_once()
        if poll_seconds <= 0:
            return
        while not self._stop.wait(poll_seconds if self._snapshot.ready else min(poll_seconds, 5)):
            self.poll_once()

    def stop(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=10)
        if self._warming is not None:
            self._warming.join(timeout=10)
        self.scorer.close()

    def wait_ready(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._snapshot.ready:
                return True
            time.sleep(0.05)
        return self._snapshot.ready

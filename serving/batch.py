"""Batch scoring: every deal open at a date, scored by the champion, written as a score run.

``run_batch`` is the nightly job behind ``salesml score``: features for the open deals (every
history table read once for all of them, then assembled slice by slice of deal ids, each slice
scored and written before the next is assembled, so what the parent holds does not grow with
the deal count beyond a few numbers per deal), a hash per deal of its inputs and the model
version,
then scoring — of every deal, or with ``changed=True`` only of the deals whose hash differs
from the latest run's (the others are copied) — through the local engine or Spark, and finally
one immutable score run (``serving.runs``). Both engines call ``serving.chunk.score_chunk``,
which calls
``salesml.scoring.score_features``: the same rows whichever engine ran.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from features.build import build_feature_slices, open_deal_ids
from features.history import History
from salesml.errors import ConfigError
from salesml.explain import treeshap
from salesml.scoring import SCORE_COLUMNS, score_features
from salesml.settings import Settings
from serving import runs
from serving.changes import hash_text, input_hash_codes, parse_hash_text
from serving.changes import positions as changes_positions
from serving.chunk import model_version, priced, score_chunk
from serving.runs import HASH_COLUMN, RunInfo, RunStore, to_storable

__all__ = [
    "SCORE_COLUMNS",
    "BatchResult",
    "combine_rows",
    "plan_incremental",
    "run_batch",
    "score_in_chunks",
    "write_scores",
]

Engine = Literal["local", "spark"]
Progress = Callable[[str], None]


# Rows a worker scores at once: its peak is ~0.35 GB (model, libraries) plus ~23 KB a row
# (drivers, actions and their JSON), measured 0.81 GB at 20,000 (docs/benchmarks.md).
CHUNK_ROWS = 10_000
# Open deals whose feature rows are assembled at once (from values computed once for every
# open deal, ``features.build.build_feature_slices``); a slice is held until it is scored.
FEATURE_ROWS = 100_000
PARALLEL_FROM = 20_000  # fewer deals: one process (a worker takes seconds to start)


def batch_workers() -> int:
    """Worker processes for local scoring: ``SALESML_WORKERS``, else one per core."""
    configured = Settings().workers
    return configured if configured is not None else max(1, os.cpu_count() or 1)


_WORKER: dict[str, Any] = {}  # the model of a worker process (set by the pool initializer)


def _start_worker(model: Any, threads: int) -> None:
    """Pool initializer: keep the model and use ``threads`` threads in the numeric kernels."""
    _WORKER["model"] = model
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    threadpool_limits(limits=threads)  # LightGBM's OpenMP threads
    treeshap.limit_threads(threads)  # the SHAP kernels' threads


def _score_part(
    features: pd.DataFrame, as_of: pd.Timestamp, hashes: pd.Series | None
) -> pd.DataFrame:
    rows = score_chunk(features, _WORKER["model"], as_of, hashes)
    del features
    release_memory()
    return rows


def release_memory() -> None:
    """Hand the heap freed by a slice's Python objects back to the system: glibc keeps it
    otherwise, and a worker (or the parent) would stay at its largest slice for good."""
    gc.collect()
    pa.default_memory_pool().release_unused()  # Arrow's own allocator keeps freed blocks too
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, loaded once per process (None where there is no glibc)."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def score_in_chunks(
    features: pd.DataFrame,
    model: Any,
    as_of: pd.Timestamp,
    hashes: pd.Series | None = None,
    chunk_rows: int = CHUNK_ROWS,
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> pd.DataFrame:
    """Every row of ``score_stream`` in one frame (for callers that want them together)."""
    parts = list(score_stream(features, model, as_of, hashes, chunk_rows, workers, parallel_from))
    if not parts:
        return score_chunk(features, model, as_of, hashes)
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def score_stream(
    features: pd.DataFrame,
    model: Any,
    as_of: pd.Timestamp,
    hashes: pd.Series | None = None,
    chunk_rows: int = CHUNK_ROWS,
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> Iterator[pd.DataFrame]:
    """``score_chunk`` over slices of at most ``chunk_rows`` deals, in ``workers`` processes,
    yielded slice by slice in the order of ``features``.

    Slices bound the memory (drivers and actions build several working copies of their rows: a
    million deals at once would need tens of GB), and so does the stream: at most one slice
    per worker (plus one) is in flight, and the caller writes each slice before the next is
    scored, so the scored rows never accumulate. Drivers, actions and their JSON are Python
    work that one process does on one core, so large batches are scored by ``batch_workers``
    processes (one per core: this one and a pool of the others), each with its share of the
    cores for the numeric kernels. The rows are the same, in the same order, whatever the
    number of workers.
    """
    yield from score_frames(
        [features], len(features), model, as_of, hashes, chunk_rows, workers, parallel_from
    )


def score_frames(
    frames: Iterable[pd.DataFrame],
    total: int,
    model: Any,
    as_of: pd.Timestamp,
    hashes: pd.Series | None = None,
    chunk_rows: int = CHUNK_ROWS,
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> Iterator[pd.DataFrame]:
    """``score_stream`` of the rows of ``frames`` (``total`` rows in all), taken one frame at
    a time: a frame is only read when the slices before it are in flight, so the caller may
    build each as it is asked for (``features.build.build_feature_slices``) and only one is
    held at a time. Each worker is sent its slice of rows, never a whole frame."""
    n = total
    workers = min(batch_workers() if workers is None else max(1, workers), max(1, n))
    parallel = n >= parallel_from and workers > 1
    # Even slices in parallel: every worker gets work even below workers × chunk_rows.
    size = min(chunk_rows, -(-n // workers)) if parallel else chunk_rows
    if n == 0:
        return
    if n <= size or not parallel:
        for frame in frames:
            for start in range(0, len(frame), size):
                part = frame.iloc[start : start + size]
                yield score_chunk(part, model, as_of, _part_hashes(hashes, part.index))
                release_memory()
        return
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    # The parent is one of the ``workers``: it scores every ``workers``-th slice itself
    # (between writing the others), so one process fewer holds the libraries and the model.
    with ProcessPoolExecutor(
        max_workers=min(workers - 1, -(-n // size)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(model, threads),
    ) as pool:
        pending: deque[Future[pd.DataFrame]] = deque()
        count = 0
        for frame in frames:
            for start in range(0, len(frame), size):
                part = frame.iloc[start : start + size]
                part_hashes = _part_hashes(hashes, part.index)
                if count % workers == workers - 1:
                    pending.append(_scored_here(part, model, as_of, part_hashes, threads))
                else:
                    pending.append(pool.submit(_score_part, part, as_of, part_hashes))
                count += 1
                del part
                if len(pending) > workers:
                    yield pending.popleft().result()
            del frame
        while pending:
            yield pending.popleft().result()


def _scored_here(
    part: pd.DataFrame, model: Any, as_of: pd.Timestamp, hashes: pd.Series | None, threads: int
) -> Future[pd.DataFrame]:
    """``score_chunk`` of ``part`` in this process, with a worker's share of the cores, as a
    finished future (it queues with the workers' slices, in order)."""
    from threadpoolctl import threadpool_limits

    done: Future[pd.DataFrame] = Future()
    with threadpool_limits(limits=threads):
        treeshap.limit_threads(threads)
        try:
            done.set_result(score_chunk(part, model, as_of, hashes))
        finally:
            treeshap.limit_threads(0)  # no limit: what the process had before
    release_memory()
    return done


@dataclass(frozen=True)
class BatchResult:
    """A written run: its manifest, and how many rows were scored and copied. ``rows`` reads
    them back (sorted by deal_id): a run is written without holding its rows."""

    run: RunInfo
    store: RunStore
    rescored: int
    copied: int

    @property
    def rows(self) -> pd.DataFrame:
        return self.store.read(self.run).sort_values("deal_id", ignore_index=True)


DEFAULT_MAX_AGE_DAYS = 7


def run_batch(
    history: History,
    model: Any,
    as_of: pd.Timestamp,
    store: RunStore,
    *,
    run_id: str,
    changed: bool = False,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
    engine: Engine = "local",
    master: str | None = None,
    progress: Progress | None = None,
    part_rows: int = 250_000,
    publish: bool = True,
    feature_rows: int = FEATURE_ROWS,
) -> BatchResult:
    """Score the deals open at ``as_of`` and write run ``run_id``; with ``publish``, then move
    ``LATEST`` to it (forward in as-of only, ``RunStore.advance_latest``). A caller with more
    outputs to write passes ``publish=False`` and advances ``LATEST`` once they are written.

    With ``changed=True`` only the deals whose inputs changed since the latest run (see
    ``serving.changes``), or whose row there is older than ``max_age_days``, are scored; the
    other rows are copied from that run as they are.
    """
    say = progress or (lambda _msg: None)
    runs.check_run_id(run_id)
    version = model_version(model)
    model = priced(model, history)
    if max_age_days < 0:
        raise ConfigError(f"--max-age must be 0 days or more, got {max_age_days:g}")
    if engine not in ("local", "spark"):
        raise ConfigError(f"unknown engine {engine!r}; use local or spark")
    with store.writing():
        say("finding the open deals")
        open_ids = open_deal_ids(history, as_of)
        say(f"hashing the inputs of {len(open_ids):,} open deals")
        # 8 bytes a deal for the whole run; their text is made slice by slice, when written.
        hashes = input_hash_codes(history, open_ids, as_of, version)
        plan = CopyPlan.none()
        previous = store.latest() if changed else None
        if previous is not None:
            say(f"comparing with run {previous.run_id}")
            plan = plan_copy(store, previous, hashes, as_of, max_age_days)
        keep = plan.deals
        release_memory()  # the hashing's and the plan's working copies
        n_scored = len(open_ids) - len(keep)  # keep: open deals only (their hashes matched)
        say("building the first feature slice")
        slices = _feature_slices(history, as_of, keep, feature_rows)
        head = [first] if (first := next(slices, None)) is not None else []
        json_columns = stored_json_columns(
            head[0] if head else pd.DataFrame(), model, as_of, previous
        )
        del first  # the slice is held by ``head`` until scored, then let go

        def frames() -> Iterator[pd.DataFrame]:
            if head:
                yield head.pop()
            yield from slices

        counts = {"scored": 0, "copied": 0}

        def write_parts(folder: Path) -> None:
            """Scored slices, then the copied rows, each written as it comes."""
            writer = runs.PartsWriter(folder, part_rows)
            say(f"scoring {n_scored:,} deals ({engine}), features built per slice")
            for part in _scored(frames(), n_scored, model, as_of, hashes, engine, master):
                writer.write(part)
                counts["scored"] += len(part)
            if previous is not None and len(keep):
                say(f"copying {len(keep):,} unchanged rows")
                for table in plan.tables(previous):
                    writer.write(table)
                    counts["copied"] += table.num_rows
            writer.close()
            say("checking the written run")

        info = store.write(
            run_id,
            write_parts,
            as_of=as_of,
            model_version=version,
            engine=engine,
            expected_deals=open_ids,
            rescored=n_scored,
            copied=len(keep),
            json_columns=json_columns,
            flip_latest=publish,
        )
    return BatchResult(info, store, counts["scored"], counts["copied"])


def _feature_slices(
    history: History, as_of: pd.Timestamp, keep: pd.Index, slice_deals: int
) -> Iterator[pd.DataFrame]:
    """The features of the open deals not in ``keep``, slice by slice (deal_id order), with
    string deal ids; the kept deals' rows are never built."""
    for frame in build_feature_slices(history, as_of, slice_deals, skip=keep):
        frame.index = frame.index.astype(str)
        yield frame
        del frame
        release_memory()  # the slice's working copies, before the next is built


def _part_hashes(hashes: pd.Series | None, index: pd.Index) -> pd.Series | None:
    """The stored hash text of the deals of ``index`` (absent ones: None), from ``hashes`` as
    text or as ``input_hash_codes``; made per slice, so the text is never held for a run."""
    if hashes is None:
        return None
    ids = pd.Index(index.astype(str))
    if hashes.dtype != np.uint64:
        return hashes.reindex(ids)
    position = hashes.index.get_indexer(ids)
    found = position >= 0
    text = np.full(len(ids), None, dtype=object)
    text[found] = hash_text(hashes.to_numpy()[position[found]])
    return pd.Series(text, index=ids, name=hashes.name)


def _scored(
    frames: Iterator[pd.DataFrame],
    total: int,
    model: Any,
    as_of: pd.Timestamp,
    hashes: pd.Series,
    engine: Engine,
    master: str | None,
) -> Iterator[pd.DataFrame]:
    if engine == "spark":
        from serving.spark import score_with_spark

        for features in frames:
            part_hashes = _part_hashes(hashes, features.index)
            yield score_with_spark(features, model, as_of, part_hashes, master=master)
        return
    yield from score_frames(frames, total, model, as_of, hashes)


@dataclass(frozen=True)
class CopyPlan:
    """Which rows of a previous run an incremental night copies: ``deals`` (their ids) and
    ``rows`` (one flag per row of that run, in its parts' and row groups' order)."""

    deals: pd.Index
    rows: np.ndarray

    @classmethod
    def none(cls) -> CopyPlan:
        return cls(pd.Index([], dtype=object), np.zeros(0, dtype=bool))

    def tables(self, run: RunInfo) -> Iterator[pa.Table]:
        """The copied rows of ``run``, one row group at a time (Arrow tables, as stored):
        each group's flags are a slice of ``rows``, so no deal id is matched again."""
        start = 0
        for path in runs.part_files(run.path / runs.SCORES):
            parquet = pq.ParquetFile(path)
            for group in range(parquet.num_row_groups):  # a row group per batch write
                n = parquet.metadata.row_group(group).num_rows
                flags = self.rows[start : start + n]
                start += n
                if not flags.any():
                    continue
                table = parquet.read_row_group(group)
                yield table if flags.all() else table.filter(pa.array(flags))
                del table
        if start != len(self.rows):
            raise runs.RunError(f"run {run.run_id} changed while its rows were copied")


def plan_copy(
    store: RunStore,
    previous: RunInfo,
    hashes: pd.Series,
    as_of: pd.Timestamp,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
) -> CopyPlan:
    """The rows of ``previous`` whose deal has the same input hash now (``hashes``: the
    current ones, as text or ``input_hash_codes``) and that were scored at most
    ``max_age_days`` before ``as_of`` (never after it): those rows are copied, every other
    deal is scored. The run's keys are compared in Arrow and numpy (no Python object a row)."""
    files = runs.part_files(previous.path / runs.SCORES)
    if HASH_COLUMN not in previous.columns or not files or not len(hashes):
        return CopyPlan.none()
    keys = pa.concat_tables(
        [pq.read_table(f, columns=["deal_id", HASH_COLUMN, "as_of"]) for f in files]
    )
    ids = pc.cast(keys.column("deal_id"), pa.string())
    position = changes_positions(ids, pd.Index(hashes.index))
    found = position >= 0
    if hashes.dtype == np.uint64:
        current, known = hashes.to_numpy(), np.ones(len(hashes), dtype=bool)
    else:  # stored text (a caller's own hashes; a missing one matches nothing)
        text = pa.array(hashes.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
        current, known = parse_hash_text(text)
    stored, valid = parse_hash_text(keys.column(HASH_COLUMN))
    at = np.maximum(position, 0)
    same = found & valid & known[at] & (stored == current[at])
    scored_at = pd.to_datetime(keys.column("as_of").to_pandas()).to_numpy("datetime64[us]")
    now = pd.Timestamp(as_of).as_unit("us").to_datetime64()
    age = (now - scored_at) / np.timedelta64(86_400_000_000, "us")
    with np.errstate(invalid="ignore"):
        fresh_enough = (age >= 0) & (age <= max_age_days)  # never rows from later; NaT: no
    rows = np.asarray(same & fresh_enough, dtype=bool)
    deals = pd.Index(ids.filter(pa.array(rows)).to_numpy(zero_copy_only=False), dtype=object)
    return CopyPlan(deals, rows)


def plan_copies(
    store: RunStore,
    previous: RunInfo,
    hashes: pd.Series,
    as_of: pd.Timestamp,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
) -> pd.Index:
    """The deals ``plan_copy`` copies (their ids)."""
    return plan_copy(store, previous, hashes, as_of, max_age_days).deals


def plan_incremental(
    store: RunStore,
    previous: RunInfo,
    hashes: pd.Series,
    as_of: pd.Timestamp,
    max_age_days: float = DEFAULT_MAX_AGE_DAYS,
) -> tuple[pd.Index, pd.DataFrame]:
    """Which deals to score and which rows of ``previous`` to copy.

    A deal of ``hashes`` (its current input hash) is copied when ``previous`` holds its row with
    the same hash, scored at most ``max_age_days`` before ``as_of`` (and not after it); every
    other deal is scored.
    Rows of deals no longer open are dropped.
    """
    keep = plan_copies(store, previous, hashes, as_of, max_age_days)
    copied = store.read_deals(previous, keep) if len(keep) else pd.DataFrame()
    return pd.Index(hashes.index).difference(keep, sort=False), copied


def combine_rows(scored: pd.DataFrame, copied: pd.DataFrame) -> pd.DataFrame:
    if len(copied) == 0:
        rows = scored
    elif len(scored) == 0:
        rows = copied
    else:
        rows = pd.concat([scored, copied[list(scored.columns)]], ignore_index=True)
    return rows.sort_values("deal_id", ignore_index=True)


def stored_json_columns(
    features: pd.DataFrame, model: Any, as_of: pd.Timestamp, previous: RunInfo | None = None
) -> list[str]:
    """The columns ``score_features`` fills with lists / dicts (stored as JSON text), found by
    scoring one row (or, with nothing to score, those of the run the rows were copied from)."""
    if len(features) == 0:
        return list(previous.json_columns) if previous is not None else []
    _, json_columns = to_storable(score_features(features.head(1), model, as_of))
    return json_columns


def write_scores(store: RunStore, run: RunInfo, out: Path) -> Path:
    """Export a run's rows (without ``input_hash``) to CSV or Parquet, by the file's extension,
    part by part: an export of any size in bounded memory. Written to a temporary file beside
    ``out`` first, so a failed export leaves no half file."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out must end in .csv or .parquet, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.partial")
    try:
        if suffix == ".csv":
            for n, part in enumerate(store.iter_parts(run)):
                export = part.drop(columns=[HASH_COLUMN], errors="ignore")
                export.to_csv(tmp, index=False, mode="w" if n == 0 else "a", header=n == 0)
            tmp.touch()
        else:
            writer = runs.PartsWriter(tmp.parent, part_rows=2**62, name=tmp.name)
            for part in store.iter_parts(run):
                writer.write(part.drop(columns=[HASH_COLUMN], errors="ignore"))
            writer.close()
        tmp.replace(out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out

"""Batch scoring: every deal open at a date, scored by the champion, written as a score run.

``run_batch`` is the nightly job behind ``salesml score``: features for every open deal (one
vectorised pass over the history), a hash per deal of its feature row and the model version,
then scoring — of every deal, or with ``changed=True`` only of the deals whose hash differs
from the latest run's (the others are copied) — through the local engine or Spark, and finally
one immutable score run (``serving.runs``). Both engines call ``serving.chunk.score_chunk``,
which calls
``salesml.scoring.score_features``: the same rows whichever engine ran.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from features.build import build_features, open_deal_ids
from features.history import History
from salesml.errors import ConfigError
from salesml.explain import treeshap
from salesml.scoring import SCORE_COLUMNS, score_features
from salesml.settings import Settings
from serving import runs
from serving.changes import input_hashes
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


CHUNK_ROWS = 50_000  # a worker scoring 100,000 deals peaked at 6.5 GB
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
    return score_chunk(features, _WORKER["model"], as_of, hashes)


def score_in_chunks(
    features: pd.DataFrame,
    model: Any,
    as_of: pd.Timestamp,
    hashes: pd.Series | None = None,
    chunk_rows: int = CHUNK_ROWS,
    workers: int | None = None,
    parallel_from: int = PARALLEL_FROM,
) -> pd.DataFrame:
    """``score_chunk`` over slices of at most ``chunk_rows`` deals, in ``workers`` processes.

    Slices bound the memory (drivers and actions build several working copies of their rows: a
    million deals at once would need tens of GB). Drivers, actions and their JSON are Python
    work that one process does on one core, so large batches are scored by a pool of worker
    processes (``batch_workers``, one per core), each with its share of the cores for the
    numeric kernels. The rows are the same, in the same order, whatever the number of workers.
    """
    n = len(features)
    workers = min(batch_workers() if workers is None else max(1, workers), max(1, n))
    parallel = n >= parallel_from and workers > 1
    # Even slices in parallel: every worker gets work even below workers × chunk_rows.
    size = min(chunk_rows, -(-n // workers)) if parallel else chunk_rows
    if n <= size:
        return score_chunk(features, model, as_of, hashes)
    slices = [features.iloc[start : start + size] for start in range(0, n, size)]
    if not parallel:
        return pd.concat(
            [score_chunk(part, model, as_of, hashes) for part in slices], ignore_index=True
        )
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=min(workers, len(slices)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(model, threads),
    ) as pool:
        futures = [
            pool.submit(
                _score_part,
                part,
                as_of,
                None if hashes is None else hashes.reindex(part.index.astype(str)),
            )
            for part in slices
        ]
        return pd.concat([f.result() for f in futures], ignore_index=True)


@dataclass(frozen=True)
class BatchResult:
    run: RunInfo
    rows: pd.DataFrame
    rescored: int
    copied: int


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
    with store.writing():
        say("finding the open deals")
        open_ids = open_deal_ids(history, as_of)
        hashes = input_hashes(history, open_ids, as_of, version)
        copied = pd.DataFrame()
        to_score = open_ids
        previous = store.latest() if changed else None
        if previous is not None:
            say(f"comparing with run {previous.run_id}")
            to_score, copied = plan_incremental(store, previous, hashes, as_of, max_age_days)
        say("building features")
        features = build_features(history, as_of)
        features.index = features.index.astype(str)
        if len(copied):
            features = features.loc[features.index.isin(to_score)]
        say(f"scoring {len(features):,} deals ({engine})")
        if engine == "local":
            scored = score_in_chunks(features, model, as_of, hashes)
        elif engine == "spark":
            from serving.spark import score_with_spark

            scored = score_with_spark(features, model, as_of, hashes, master=master)
        else:
            raise ConfigError(f"unknown engine {engine!r}; use local or spark")
        rows = combine_rows(scored, copied)
        json_columns = stored_json_columns(features, model, as_of, previous)
        say("writing the score run")
        info = store.write(
            run_id,
            lambda folder: runs.write_frame_parts(rows, folder, part_rows),
            as_of=as_of,
            model_version=version,
            engine=engine,
            expected_deals=open_ids,
            rescored=len(scored),
            copied=len(copied),
            json_columns=json_columns,
            flip_latest=publish,
        )
    return BatchResult(info, rows, len(scored), len(copied))


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
    if HASH_COLUMN not in previous.columns:
        return pd.Index(hashes.index), pd.DataFrame()
    keys = store.read(previous, columns=["deal_id", HASH_COLUMN, "as_of"])
    current = hashes.reindex(keys["deal_id"].astype(str)).to_numpy()
    age = (pd.Timestamp(as_of) - pd.to_datetime(keys["as_of"])).dt.total_seconds() / 86_400
    fresh_enough = ((age >= 0) & (age <= max_age_days)).to_numpy()  # never rows from later
    same = (keys[HASH_COLUMN].to_numpy() == current) & fresh_enough
    keep = pd.Index(keys["deal_id"].astype(str)[same])
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


def write_scores(rows: pd.DataFrame, out: Path) -> Path:
    """Write CSV or Parquet, by the file's extension."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out must end in .csv or .parquet, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    export = rows.drop(columns=[HASH_COLUMN], errors="ignore")
    if suffix == ".csv":
        export.to_csv(out, index=False)
    else:
        export.to_parquet(out, index=False)
    return out

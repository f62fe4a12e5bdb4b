"""Batch scoring: every deal open at a date, scored by the champion, written as a score run.

``run_batch`` is the nightly job behind ``salesml score``: features for every open deal (one
vectorised pass over the history), a hash per deal of its feature row and the model version,
then scoring — of every deal, or with ``changed=True`` only of the deals whose hash differs
from the latest run's (the others are copied) — through the local engine or Spark, and finally
one immutable score run (``serving.runs``). Both engines call ``score_chunk``, which calls
``serving.scoring.score_features``: the same rows whichever engine ran.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from features.build import build_features
from features.history import History
from salesml.errors import ConfigError
from serving import runs
from serving.runs import HASH_COLUMN, RunInfo, RunStore, row_hashes, to_storable
from serving.scoring import SCORE_COLUMNS, score_features

__all__ = [
    "SCORE_COLUMNS",
    "BatchResult",
    "run_batch",
    "score_chunk",
    "score_in_chunks",
    "score_open_deals",
    "write_scores",
]

Engine = Literal["local", "spark"]
Progress = Callable[[str], None]


def model_version(models: Any) -> str:
    """The version a models object reports (``LoadedModel.version`` today)."""
    return str(models.version)


def score_open_deals(history: History, model: Any, as_of: pd.Timestamp) -> pd.DataFrame:
    """One score row per deal open at ``as_of`` (see ``serving.scoring``), sorted by deal_id."""
    features = build_features(history, as_of)
    rows = score_features(features, model, as_of)
    return rows.sort_values("deal_id", ignore_index=True)


def score_chunk(
    features: pd.DataFrame, model: Any, as_of: pd.Timestamp, hashes: pd.Series | None = None
) -> pd.DataFrame:
    """Score rows of ``features`` as stored: nested columns as JSON text, plus ``input_hash``.

    The one function both engines run (Spark inside ``mapInPandas``). No rows in, no columns
    out (a model cannot score an empty frame).
    """
    if len(features) == 0:
        return pd.DataFrame()
    rows = score_features(features, model, as_of)
    stored, _ = to_storable(rows)
    if hashes is not None:
        stored[HASH_COLUMN] = hashes.reindex(features.index.astype(str)).to_numpy()
    return stored


CHUNK_ROWS = 100_000


def score_in_chunks(
    features: pd.DataFrame,
    model: Any,
    as_of: pd.Timestamp,
    hashes: pd.Series | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> pd.DataFrame:
    """``score_chunk`` over slices of ``chunk_rows`` deals: drivers and actions build several
    working copies of their rows, so a million deals at once would need tens of GB."""
    if len(features) <= chunk_rows:
        return score_chunk(features, model, as_of, hashes)
    parts = [
        score_chunk(features.iloc[start : start + chunk_rows], model, as_of, hashes)
        for start in range(0, len(features), chunk_rows)
    ]
    return pd.concat(parts, ignore_index=True)


@dataclass(frozen=True)
class BatchResult:
    run: RunInfo
    rows: pd.DataFrame
    rescored: int
    copied: int


def run_batch(
    history: History,
    model: Any,
    as_of: pd.Timestamp,
    store: RunStore,
    *,
    run_id: str,
    changed: bool = False,
    engine: Engine = "local",
    master: str | None = None,
    progress: Progress | None = None,
    part_rows: int = 250_000,
) -> BatchResult:
    """Score the deals open at ``as_of`` and write run ``run_id`` (then flip ``latest``)."""
    say = progress or (lambda _msg: None)
    runs.check_run_id(run_id)
    version = model_version(model)
    with store.writing():
        say("building features")
        features = build_features(history, as_of)
        features.index = features.index.astype(str)
        hashes = row_hashes(features, version)
        copied = pd.DataFrame()
        to_score = features
        if changed:
            previous = store.latest()
            if previous is not None and HASH_COLUMN in previous.columns:
                say(f"comparing with run {previous.run_id}")
                before = store.read(previous)
                before = before[before["deal_id"].isin(features.index)]
                same = (
                    before[HASH_COLUMN].to_numpy() == hashes.reindex(before["deal_id"]).to_numpy()
                )
                copied = before[same]
                to_score = features.drop(index=pd.Index(copied["deal_id"]))
        say(f"scoring {len(to_score):,} deals ({engine})")
        if engine == "local":
            scored = score_in_chunks(to_score, model, as_of, hashes)
        elif engine == "spark":
            from serving.spark import score_with_spark

            scored = score_with_spark(to_score, model, as_of, hashes, master=master)
        else:
            raise ConfigError(f"unknown engine {engine!r}; use local or spark")
        rows = _combine(scored, copied)
        json_columns = stored_json_columns(features, model, as_of)
        say("writing the score run")
        info = store.write(
            run_id,
            lambda folder: runs.write_frame_parts(rows, folder, part_rows),
            as_of=as_of,
            model_version=version,
            engine=engine,
            expected_deals=pd.Index(features.index),
            rescored=len(scored),
            copied=len(copied),
            json_columns=json_columns,
        )
    return BatchResult(info, rows, len(scored), len(copied))


def _combine(scored: pd.DataFrame, copied: pd.DataFrame) -> pd.DataFrame:
    if len(copied) == 0:
        rows = scored
    elif len(scored) == 0:
        rows = copied
    else:
        rows = pd.concat([scored, copied[list(scored.columns)]], ignore_index=True)
    return rows.sort_values("deal_id", ignore_index=True)


def stored_json_columns(features: pd.DataFrame, model: Any, as_of: pd.Timestamp) -> list[str]:
    """The columns ``score_features`` fills with lists / dicts (stored as JSON text), found by
    scoring one row."""
    if len(features) == 0:
        return []
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

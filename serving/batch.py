"""Batch scoring: every deal open at a date, scored by the champion bundle."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.build import build_features
from features.history import History
from salesml.errors import ConfigError
from salesml.tracking import LoadedModel
from serving.scoring import SCORE_COLUMNS, score_features

__all__ = ["SCORE_COLUMNS", "score_open_deals", "write_scores"]


def score_open_deals(history: History, model: LoadedModel, as_of: pd.Timestamp) -> pd.DataFrame:
    """One score row per deal open at ``as_of`` (see ``serving.scoring``), sorted by deal_id."""
    features = build_features(history, as_of)
    rows = score_features(features, model, as_of)
    return rows.sort_values("deal_id", ignore_index=True)


def write_scores(rows: pd.DataFrame, out: Path) -> Path:
    """Write CSV or Parquet, by the file's extension."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"--out must end in .csv or .parquet, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        rows.to_csv(out, index=False)
    else:
        rows.to_parquet(out, index=False)
    return out

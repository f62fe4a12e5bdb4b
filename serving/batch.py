"""Batch scoring: every deal open at a date, scored by the champion bundle."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from features.build import build_features
from features.history import History
from salesml.errors import ConfigError
from salesml.tracking import LoadedModel

SCORE_COLUMNS = [
    "deal_id",
    "owner_id",
    "team",
    "win_probability",
    "score",
    "model_version",
    "as_of",
]


def score_open_deals(history: History, model: LoadedModel, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per deal open at ``as_of``: probability, 1–99 score, model version, as_of."""
    features = build_features(history, as_of)
    predicted = model.bundle.predict(features)
    rows = pd.DataFrame({"deal_id": features.index.astype(str)})
    for column in ("owner_id", "team"):
        rows[column] = features[column].astype("object").to_numpy() if column in features else None
    rows["win_probability"] = predicted["win_probability"].to_numpy()
    rows["score"] = predicted["score"].to_numpy()
    rows["model_version"] = model.version
    rows["as_of"] = as_of
    return rows[SCORE_COLUMNS].sort_values("deal_id", ignore_index=True)


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

"""One scoring function for every caller: the nightly batch, the API and the report.

``score_features`` turns point-in-time feature rows (``features.build.build_features``) into
score rows with every column a CRM plugin shows. The batch (local or Spark) and the API call it
with the same models, so they return identical rows.
"""

from __future__ import annotations

import pandas as pd

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


def score_features(features: pd.DataFrame, model: LoadedModel, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per row of ``features`` (indexed by deal_id), in ``SCORE_COLUMNS`` order."""
    predicted = model.bundle.predict(features)
    rows = pd.DataFrame({"deal_id": features.index.astype(str)})
    for column in ("owner_id", "team"):
        rows[column] = features[column].astype("object").to_numpy() if column in features else None
    rows["win_probability"] = predicted["win_probability"].to_numpy()
    rows["score"] = predicted["score"].to_numpy()
    rows["model_version"] = model.version
    rows["as_of"] = as_of
    return rows[SCORE_COLUMNS]

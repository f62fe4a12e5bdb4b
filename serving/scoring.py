"""One scoring function for every caller: the nightly batch, the API and the report.

``score_features`` turns point-in-time feature rows (``features.build.build_features``) into
score rows with every column a CRM plugin shows. The batch (local or Spark) and the API call it
with the same models, so they return identical rows.
"""

from __future__ import annotations

import numpy as np
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
# Why and what next: the top drivers (JSON list: feature, concept, value, contribution in
# probability points, text), the recommended actions (JSON list: action, reason,
# expected_impact) and the points the drivers start from (see docs/drivers.md, docs/actions.md).
EXPLAIN_COLUMNS = ["drivers", "actions", "drivers_base"]
DRIVERS_SHOWN = 5
# Close timing (when the bundle carries a timing model): probabilities of closing *won* within
# the window, the expected close date given a win and its 80 % interval in days, and win
# probability × amount.
TIMING_COLUMNS = [
    "p_close_30d",
    "p_close_60d",
    "p_close_90d",
    "p_close_this_month",
    "p_close_this_quarter",
    "expected_close_date",
    "days_to_close_low",
    "days_to_close_high",
    "expected_revenue",
]


def score_features(features: pd.DataFrame, model: LoadedModel, as_of: pd.Timestamp) -> pd.DataFrame:
    """One row per row of ``features`` (indexed by deal_id): ``SCORE_COLUMNS``,
    ``EXPLAIN_COLUMNS`` (empty for a constant base-rate model) and, with a timing model,
    ``TIMING_COLUMNS``."""
    explain = model.bundle.booster is not None
    predicted = model.bundle.predict(features, explain=explain, top=DRIVERS_SHOWN)
    rows = pd.DataFrame({"deal_id": features.index.astype(str)})
    for column in ("owner_id", "team"):
        rows[column] = features[column].astype("object").to_numpy() if column in features else None
    probability = predicted["win_probability"].to_numpy()
    rows["win_probability"] = probability
    rows["score"] = predicted["score"].to_numpy()
    rows["model_version"] = model.version
    rows["as_of"] = as_of
    rows = rows[SCORE_COLUMNS]
    for column in EXPLAIN_COLUMNS:
        rows[column] = predicted[column].to_numpy() if column in predicted else None
    timing = getattr(model.bundle, "timing", None)
    if timing is None or len(features) == 0:
        return rows
    amount = (
        pd.to_numeric(features["amount"], errors="coerce").to_numpy(dtype=float)
        if "amount" in features
        else np.full(len(features), np.nan)
    )
    columns = timing.predict(features, as_of, probability, amount)
    for column in TIMING_COLUMNS:
        rows[column] = columns[column].to_numpy()
    return rows

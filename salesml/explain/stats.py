"""What is typical for won deals: fitted at training time, stored in the bundle, read at scoring.

Nothing here looks at the deals being scored: ``fit_explainer`` runs on the training snapshots
(rows labelled won / lost), and the explanation of a deal compares its value with these numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

EXPLAINER_VERSION = 1
STAGE_FEATURES = (
    "days_in_stage",
    "activities_total",
    "activities_30d",
    "days_to_expected_close",
)
MIN_ROWS = 5  # a statistic from fewer won rows is not stored


def _quantiles(values: pd.Series) -> dict[str, float] | None:
    clean = pd.to_numeric(values, errors="coerce").dropna()
    if len(clean) < MIN_ROWS:
        return None
    q = np.quantile(clean.to_numpy(dtype=float), [0.25, 0.5, 0.75, 0.9])
    return {"p25": float(q[0]), "median": float(q[1]), "p75": float(q[2]), "p90": float(q[3])}


def fit_explainer(
    frame: pd.DataFrame,
    features: list[str],
    kinds: Mapping[str, str],
    meta: Mapping[str, Mapping[str, Any]],
    stage_column: str = "stage",
    label_column: str = "label_won",
) -> dict[str, Any]:
    """Statistics of won deals for driver texts and action thresholds.

    Args:
        frame: Training snapshots with the features, ``label_column`` (1 won, 0 lost) and
            ``stage_column`` (the stage at the snapshot's as_of).
        features: The model's features.
        kinds: feature → ``"numeric"`` | ``"categorical"``.
        meta: feature → ``{"concept", "actionable", "description"}`` (from the feature spec).

    Returns:
        A JSON-ready dict stored as ``WinBundle.explainer``.
    """
    labelled = frame[frame[label_column].notna()]
    won = labelled[labelled[label_column] == 1]
    overall = float(labelled[label_column].mean()) if len(labelled) else float("nan")
    typical: dict[str, Any] = {}
    for name in features:
        if kinds[name] == "numeric":
            q = _quantiles(won[name])
            if q is not None:
                typical[name] = q
            continue
        levels = won[name].astype("object").dropna().astype(str)
        if levels.empty:
            continue
        rates = labelled.groupby(labelled[name].astype("object").astype(str), observed=True)[
            label_column
        ].agg(["mean", "size"])
        typical[name] = {
            "mode": str(levels.value_counts().index[0]),
            "win_rate": {
                str(k): float(r["mean"]) for k, r in rates.iterrows() if r["size"] >= MIN_ROWS
            },
        }
    by_stage: dict[str, dict[str, Any]] = {}
    if stage_column in won:
        for stage, rows in won.groupby(won[stage_column].astype("object"), observed=True):
            stats = {n: q for n in STAGE_FEATURES if n in rows and (q := _quantiles(rows[n]))}
            if stats:
                by_stage[str(stage)] = stats
    order: list[str] = []
    if stage_column in won and "age_days" in won:
        ages = won.groupby(won[stage_column].astype("object"), observed=True)["age_days"].median()
        order = [str(s) for s in ages.sort_values(kind="stable").index]
    return {
        "version": EXPLAINER_VERSION,
        "features": {
            n: {
                "concept": str(meta[n]["concept"]),
                "actionable": bool(meta[n]["actionable"]),
                "description": str(meta[n].get("description", "")),
            }
            for n in features
        },
        "win_rate": overall,
        "won": typical,
        "won_by_stage": by_stage,
        "stage_order": order,
        "rows": {"labelled": len(labelled), "won": len(won)},
    }

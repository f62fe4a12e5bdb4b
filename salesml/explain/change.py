"""Why did my score change: attribute each deal's change between two score runs to its drivers.

Pure function of two score-row frames (``deal_id``, ``win_probability``, ``model_version``,
``drivers`` — JSON text as ``Scorer.predict(explain=True)`` writes — and optionally
``drivers_base``). Per deal and concept the change is the new contribution minus the old (a
concept absent from a run's top drivers counts 0 there); what the listed concepts do not
explain is "Other drivers". When the model version differs the base moves too ("Model change"),
and the concept changes then mix new data with the new model's weighting, which the output
flags (``model_changed``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

MODEL_CHANGE = "Model change"
OTHER = "Other drivers"


def _drivers(text: Any) -> dict[str, float]:
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return {}
    items = json.loads(text) if isinstance(text, str) else text
    return {str(d["concept"]): float(d["contribution"]) for d in items}


def _attributed(d: Mapping[Any, Any], with_base: bool, top: int | None) -> dict[str, Any]:
    """One deal's row of ``attribute_change`` from its merged record (``<column>_old`` and
    ``<column>_new``; ``drivers_base_*`` read when ``with_base``)."""
    change = (d["win_probability_new"] - d["win_probability_old"]) * 100
    model_changed = str(d["model_version_old"]) != str(d["model_version_new"])
    before, after = _drivers(d["drivers_old"]), _drivers(d["drivers_new"])
    parts = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in dict.fromkeys([*after, *before])}
    items = sorted(parts.items(), key=lambda kv: -abs(kv[1]))
    kept = items if top is None else items[:top]
    attribution = [{"driver": k, "change_points": v} for k, v in kept]
    explained = sum(v for _, v in kept)
    if model_changed and with_base:
        base = float(d["drivers_base_new"]) - float(d["drivers_base_old"])
        attribution.append({"driver": MODEL_CHANGE, "change_points": base})
        explained += base
    rest = change - explained
    if abs(rest) > 1e-9:
        label = MODEL_CHANGE if model_changed and not with_base else OTHER
        attribution.append({"driver": label, "change_points": rest})
    return {
        "deal_id": d["deal_id"],
        "old_probability": d["win_probability_old"],
        "new_probability": d["win_probability_new"],
        "change_points": change,
        "model_changed": model_changed,
        "attribution": attribution,
    }


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def attribute_pairs(
    pairs: dict[str, tuple[dict[str, Any], dict[str, Any]]], top: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """``deal_id -> attribution`` of each deal's (old row, new row) pair (dicts with the
    columns of ``attribute_change``'s frames): ``attribute_change`` of the frames those rows
    make, without the frames — a few pairs, where the DataFrame work costs more than the
    values. As there: ``drivers_base`` is read only when every row has one, and a pair
    without both probabilities is left out."""
    with_base = all(
        not _missing(row.get("drivers_base")) for pair in pairs.values() for row in pair
    )
    out = {}
    for deal, (old, new) in pairs.items():
        if _missing(old.get("win_probability")) or _missing(new.get("win_probability")):
            continue
        merged: dict[str, Any] = {"deal_id": deal}
        for column in ("win_probability", "model_version", "drivers", "drivers_base"):
            merged[f"{column}_old"], merged[f"{column}_new"] = old.get(column), new.get(column)
        for side in ("old", "new"):
            merged[f"win_probability_{side}"] = float(merged[f"win_probability_{side}"])
        out[deal] = _attributed(merged, with_base, top)["attribution"]
    return out


def attribute_change(old: pd.DataFrame, new: pd.DataFrame, top: int | None = 3) -> pd.DataFrame:
    """One row per deal in both runs.

    Returns columns ``deal_id, old_probability, new_probability, change_points,
    model_changed, attribution`` where ``attribution`` is a list of ``{"driver",
    "change_points"}`` ordered by absolute change (``top`` of them plus the remainder), whose
    sum is ``change_points``.
    """
    cols = ["deal_id", "win_probability", "model_version", "drivers"]
    extra = ["drivers_base"] if "drivers_base" in old and "drivers_base" in new else []
    both = old[cols + extra].merge(
        new[cols + extra], on="deal_id", suffixes=("_old", "_new"), validate="one_to_one"
    )
    rows = [_attributed(d, bool(extra), top) for d in both.to_dict("records")]
    return pd.DataFrame(
        rows,
        columns=[
            "deal_id",
            "old_probability",
            "new_probability",
            "change_points",
            "model_changed",
            "attribution",
        ],
    )


def score_change(previous: dict[str, Any], current: dict[str, Any]) -> list[dict[str, Any]]:
    """One deal's attribution between two score rows (dicts with the columns above): a list of
    ``{"driver", "change_points"}`` summing to the change in probability points. Every concept
    among either row's top drivers is named (what ``salesml explain`` shows for each run);
    "Other drivers" is only what those concepts leave unexplained."""
    cols = ["win_probability", "model_version", "drivers", "drivers_base"]
    old = pd.DataFrame([{"deal_id": "deal", **{c: previous.get(c) for c in cols}}])
    new = pd.DataFrame([{"deal_id": "deal", **{c: current.get(c) for c in cols}}])
    if old["drivers_base"].isna().all() or new["drivers_base"].isna().all():
        old, new = old.drop(columns="drivers_base"), new.drop(columns="drivers_base")
    table = attribute_change(old, new, top=None)
    return list(table["attribution"].iloc[0]) if len(table) else []

"""Global and segment views of the drivers, and their change between two training runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from salesml.explain.drivers import Contributions, concepts_of, contributions

if TYPE_CHECKING:
    from salesml.bundle import WinBundle


def global_drivers(
    bundle: WinBundle,
    features: pd.DataFrame,
    by: str | None = None,
    level: str = "concept",
    contribution: Contributions | None = None,
) -> pd.DataFrame:
    """Mean absolute contribution (probability points) per concept or feature, best first.

    Args:
        by: ``None`` for one overall view, or a column of ``features`` to segment by
            (``"team"``, ``"owner_id"``, …).
        level: ``"concept"`` or ``"feature"``.

    Returns:
        Columns ``[segment,] driver, mean_abs_points, mean_points, rank, deals``.
    """
    c = contribution if contribution is not None else contributions(bundle, features)
    values = c.values if level == "feature" else c.by_concept(concepts_of(bundle))
    keys = (
        pd.Series("all", index=values.index)
        if by is None
        else features[by].astype("object").fillna("unknown").astype(str)
    )
    rows = []
    for segment, idx in values.groupby(keys.to_numpy(), sort=True).groups.items():
        part = values.loc[idx]
        mean_abs, mean = part.abs().mean(), part.mean()
        order = mean_abs.sort_values(ascending=False, kind="stable")
        for rank, driver in enumerate(order.index, start=1):
            rows.append(
                {
                    "segment": segment,
                    "driver": driver,
                    "mean_abs_points": float(mean_abs[driver]),
                    "mean_points": float(mean[driver]),
                    "rank": rank,
                    "deals": len(part),
                }
            )
    out = pd.DataFrame(rows)
    return out.drop(columns="segment") if by is None else out


def importance(frame: pd.DataFrame) -> dict[str, float]:
    """``driver → mean_abs_points`` of an overall ``global_drivers`` table."""
    return {
        str(k): float(v) for k, v in zip(frame["driver"], frame["mean_abs_points"], strict=True)
    }


def compare_importance(old: Mapping[str, float], new: Mapping[str, float]) -> pd.DataFrame:
    """How the global drivers moved between two runs (e.g. the last two training runs).

    Returns columns ``driver, old_points, new_points, change_points, old_rank, new_rank``,
    largest absolute change first; a driver missing from one run counts 0 there.
    """
    names = list(dict.fromkeys([*new, *old]))
    frame = pd.DataFrame(
        {
            "driver": names,
            "old_points": [float(old.get(n, 0.0)) for n in names],
            "new_points": [float(new.get(n, 0.0)) for n in names],
        }
    )
    frame["change_points"] = frame["new_points"] - frame["old_points"]
    frame["old_rank"] = frame["old_points"].rank(ascending=False, method="first").astype(int)
    frame["new_rank"] = frame["new_points"].rank(ascending=False, method="first").astype(int)
    order = np.argsort(-frame["change_points"].abs().to_numpy(), kind="stable")
    return frame.iloc[order].reset_index(drop=True)

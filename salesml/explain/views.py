"""Global and segment views of the drivers, and their change between two training runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from salesml.explain.drivers import Contributions, concepts_of, contributions

if TYPE_CHECKING:
    from salesml.models.win.bundle import WinBundle


STAGE_COLUMN = "current_stage"


def global_drivers(
    bundle: WinBundle,
    features: pd.DataFrame,
    by: str | None = None,
    level: str = "concept",
    contribution: Contributions | None = None,
) -> pd.DataFrame:
    """The drivers that matter most, overall or per segment, best first.

    Two measures per driver, in probability points:

    * ``mean_abs_points``: the mean absolute contribution. The stage a deal has reached leads it
      on any pipeline — later stages win more often — which says where deals are, not what
      makes the difference;
    * ``within_stage_points``: the mean absolute deviation of the contribution from its mean
      over the deals at the same stage (``current_stage``): how much the driver separates deals
      at the same point of the pipeline. Drivers are **ranked by this one** (by
      ``mean_abs_points`` when the rows carry no stage).

    Args:
        by: ``None`` for one overall view, or a column of ``features`` to segment by
            (``"team"``, ``"owner_id"``, …).
        level: ``"concept"`` or ``"feature"``.

    Returns:
        Columns ``[segment,] driver, within_stage_points, mean_abs_points, mean_points, rank,
        deals``.
    """
    c = contribution if contribution is not None else contributions(bundle, features)
    values = c.values if level == "feature" else c.by_concept(concepts_of(bundle))
    keys = (
        pd.Series("all", index=values.index)
        if by is None
        else features[by].astype("object").fillna("unknown").astype(str)
    )
    if STAGE_COLUMN in features:
        stage = features[STAGE_COLUMN].astype("object").fillna("unknown").astype(str)
    else:
        stage = None
    rows = []
    for segment, idx in values.groupby(keys.to_numpy(), sort=True).groups.items():
        part = values.loc[idx]
        mean_abs, mean = part.abs().mean(), part.mean()
        if stage is not None:
            at_stage = stage.loc[idx].to_numpy()
            spread = (part - part.groupby(at_stage).transform("mean")).abs().mean()
        else:
            spread = mean_abs
        order = spread.sort_values(ascending=False, kind="stable")
        for rank, driver in enumerate(order.index, start=1):
            rows.append(
                {
                    "segment": segment,
                    "driver": driver,
                    "within_stage_points": float(spread[driver]),
                    "mean_abs_points": float(mean_abs[driver]),
                    "mean_points": float(mean[driver]),
                    "rank": rank,
                    "deals": len(part),
                }
            )
    out = pd.DataFrame(rows)
    return out.drop(columns="segment") if by is None else out


def importance(frame: pd.DataFrame) -> dict[str, float]:
    """``driver → within_stage_points`` (the ranking measure) of an overall ``global_drivers``
    table."""
    return {
        str(k): float(v) for k, v in zip(frame["driver"], frame["within_stage_points"], strict=True)
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

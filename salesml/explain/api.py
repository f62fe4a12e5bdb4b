"""One call for the score-row columns: ``drivers``, ``actions`` (JSON text) and ``drivers_base``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesml.actions.engine import recommend
from salesml.explain.drivers import DEFAULT_TOP, contributions, explain, to_json

if TYPE_CHECKING:
    from salesml.models.win.bundle import WinBundle


def explain_arrays(
    bundle: WinBundle,
    features: pd.DataFrame,
    top: int | None = DEFAULT_TOP,
    matrix: np.ndarray | None = None,
    margin: np.ndarray | None = None,
) -> dict[str, Any]:
    """``explain_columns`` as plain values (``drivers``, ``actions``: a JSON text per row;
    ``drivers_base``: one float per row), without the frame; ``margin``: the rows'
    ``bundle.raw_score``, when the caller has it."""
    c = contributions(bundle, features, matrix=matrix, margin=margin)
    drivers = explain(bundle, features, top=top, contribution=c)
    actions = recommend(bundle, features, probability=c.probability, matrix=matrix)
    return {
        "drivers": to_json(drivers),
        "actions": to_json(actions),
        "drivers_base": np.full(len(features), c.base, dtype=np.float64),
    }


def explain_columns(
    bundle: WinBundle,
    features: pd.DataFrame,
    top: int | None = DEFAULT_TOP,
    matrix: np.ndarray | None = None,
) -> pd.DataFrame:
    """``drivers``, ``actions`` and ``drivers_base`` per row of ``features`` (same index);
    ``matrix``: their ``bundle.model_matrix``, when the caller has it."""
    return pd.DataFrame(explain_arrays(bundle, features, top, matrix), index=features.index)

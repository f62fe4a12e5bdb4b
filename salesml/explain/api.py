"""One call for the score-row columns: ``drivers``, ``actions`` (JSON text) and ``drivers_base``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from salesml.actions.engine import recommend
from salesml.explain.drivers import DEFAULT_TOP, contributions, explain, to_json

if TYPE_CHECKING:
    from salesml.models.win.bundle import WinBundle


def explain_columns(
    bundle: WinBundle, features: pd.DataFrame, top: int | None = DEFAULT_TOP
) -> pd.DataFrame:
    """``drivers``, ``actions`` and ``drivers_base`` per row of ``features`` (same index)."""
    c = contributions(bundle, features)
    drivers = explain(bundle, features, top=top, contribution=c)
    actions = recommend(bundle, features, probability=c.probability)
    return pd.DataFrame(
        {
            "drivers": to_json(drivers),
            "actions": to_json(actions),
            "drivers_base": c.base,
        },
        index=features.index,
    )

"""The plain peer every win model must beat on the user's own data, in the same run.

A default LightGBM (``LGBMClassifier``, 300 trees, nothing tuned) on the deal-table columns of
the same training snapshots: the deal's amount, stage and expected close date at the date
(stage history, or the deals table in a flat export where the leakage screen keeps them), its
profile fields and custom attributes. It is what anyone would try first on a CRM export; it is
calibrated on the validation period like the model, and served in the model's place when it
wins on the holdout. Columns the validation screen dropped as noise are left out of it too:
served, it must not be driven by them either.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.spec import Feature
from salesml.schemas import ATTRIBUTE_PREFIX
from salesml.settings import Settings

PEER_NAME = "plain_lightgbm"
PEER_TREES = 300
# The features that are deals-table columns (as of the snapshot date).
DEAL_TABLE_FEATURES = (
    "amount",
    "current_stage",
    "days_to_expected_close",
    "product",
    "lead_source",
    "deal_type",
    "sales_team",
    "region",
)


def peer_features(spec: Sequence[Feature]) -> list[str]:
    """The peer's columns: the deal-table features and the custom attributes of ``spec``."""
    return [
        f.name for f in spec if f.name in DEAL_TABLE_FEATURES or f.name.startswith(ATTRIBUTE_PREFIX)
    ]


def fit_peer(x: pd.DataFrame, y: np.ndarray, seed: int = 0) -> lgb.Booster:
    """A default ``LGBMClassifier`` with 300 trees on ``x`` (pandas categoricals as such)."""
    model = lgb.LGBMClassifier(
        n_estimators=PEER_TREES,
        random_state=seed,
        n_jobs=Settings().threads or None,
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
    )
    model.fit(x, y)
    booster: lgb.Booster = model.booster_
    return booster

"""The MLflow pyfunc for a saved scorer (models-from-code: this file *is* the model).

MLflow stores this file with the bundle folder as an artifact and executes it on load, so no
Python object is ever pickled. ``predict`` takes a DataFrame of features (as built by
``features.build.build_features``) and returns ``win_probability`` and ``score``; with the
params ``{"explain": true, "top": 5}`` also ``drivers``, ``actions`` and ``drivers_base``, exactly
as ``Scorer.predict(features, explain=True)`` (``top <= 0``: every driver).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from salesml.scoring.scorer import Scorer

BUNDLE_ARTIFACT = "bundle"


class WinBundleModel(PythonModel):
    """Loads the scorer's folder once; predicts with exactly ``Scorer.predict``."""

    scorer: Scorer

    def load_context(self, context: PythonModelContext) -> None:
        self.scorer = Scorer.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        options = params or {}
        top = options.get("top", 5)
        return self.scorer.predict(
            model_input,
            explain=bool(options.get("explain", False)),
            top=None if top is None or int(top) <= 0 else int(top),
        )


set_model(WinBundleModel())

"""The MLflow pyfunc for the revenue-forecast bundle (models-from-code: this file *is* the model).

MLflow stores this file with the bundle folder (``forecast.json``, Prophet models as JSON) and
executes it on load; nothing is pickled. ``predict`` takes rows of ``freq``, ``horizon``,
``as_of`` and optionally ``by`` and returns the forecast rows of the time-series side alone:
the pipeline component needs the warehouse's open deals, which ``salesml forecast`` and the API
add (``serving.forecast``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc.model import PythonModel, PythonModelContext

from salesml.models.revenue.bundle import ForecastBundle
from salesml.models.revenue.pipeline import PipelineForecast

BUNDLE_ARTIFACT = "forecast"


class ForecastBundleModel(PythonModel):
    """Loads the forecast bundle once; forecasts with ``ForecastBundle.forecast``."""

    bundle: ForecastBundle

    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = ForecastBundle.load(Path(context.artifacts[BUNDLE_ARTIFACT]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        empty = PipelineForecast(
            pd.DataFrame(columns=["dimension", "segment", "period_start", "expected"])
        )
        frames = []
        for row in model_input.to_dict("records"):
            by = row.get("by")
            frames.append(
                self.bundle.forecast(
                    str(row["freq"]),
                    int(row["horizon"]),
                    pd.Timestamp(row["as_of"]),
                    empty,
                    {},
                    by=None if by is None or pd.isna(by) else str(by),
                )
            )
        return pd.concat(frames, ignore_index=True)


set_model(ForecastBundleModel())

"""The baselines every win model is reported against, fitted on the same training data.

- ``base_rate``: the training win rate, for everyone.
- ``stage_probability``: the historical win rate of snapshots in the same stage (where the data
  has stages) — what a CRM's stage probability says.
- ``rep_win_rate``: the owner's trailing (shrunk) win rate at the snapshot date.
- ``logistic_regression``: a regularised logistic regression on the same features.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

Baseline = Callable[[pd.DataFrame], np.ndarray]
REP_RATE_PREFIX = "rep_win_rate"


def fit_baselines(
    train: pd.DataFrame, features: list[str], kinds: dict[str, str]
) -> dict[str, Baseline]:
    """Fit every applicable baseline on ``train``; returns name → predict function."""
    y = train["label_won"].to_numpy(dtype=float)
    rate = float(y.mean())
    baselines: dict[str, Baseline] = {"base_rate": lambda f: np.full(len(f), rate)}
    if "stage" in train.columns and train["stage"].notna().any():
        baselines["stage_probability"] = _stage_probability(train, rate)
    rep_columns = [c for c in features if c.startswith(REP_RATE_PREFIX)]
    if rep_columns:
        column = rep_columns[0]

        def rep_rate(f: pd.DataFrame) -> np.ndarray:
            values = pd.to_numeric(f[column], errors="coerce").to_numpy(dtype=float)
            return np.clip(np.where(np.isnan(values), rate, values), 1e-4, 1 - 1e-4)

        baselines["rep_win_rate"] = rep_rate
    model = _logistic(features, kinds).fit(train[features], y)
    baselines["logistic_regression"] = lambda f: model.predict_proba(f[features])[:, 1]
    return baselines


def _stage_probability(train: pd.DataFrame, rate: float, prior: float = 20.0) -> Baseline:
    """Win rate by stage, shrunk toward the overall rate (stages with few snapshots)."""
    grouped = train.groupby(train["stage"].astype("object"), observed=True)["label_won"]
    table = (grouped.sum() + prior * rate) / (grouped.count() + prior)

    def predict(f: pd.DataFrame) -> np.ndarray:
        stage = f["stage"].astype("object")
        return stage.map(table).astype(float).fillna(rate).to_numpy()

    return predict


def _logistic(features: list[str], kinds: dict[str, str]) -> Pipeline:
    numeric = [f for f in features if kinds[f] == "numeric"]
    categorical = [f for f in features if kinds[f] == "categorical"]
    transformers: list[tuple[str, object, list[str]]] = []
    if numeric:
        transformers.append(
            # keep_empty_features: a column with no value in this window becomes a constant 0
            # (no effect on the fit) instead of a dropped column and a raw sklearn warning
            # printed to the user on every train
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
                ),
                numeric,
            )
        )
    if categorical:
        encoder = OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20)
        to_text = _ToText()
        transformers.append(("cat", make_pipeline(to_text, encoder), categorical))
    return Pipeline(
        [
            ("prepare", ColumnTransformer(transformers)),
            ("model", LogisticRegression(C=1.0, max_iter=2000)),
        ]
    )


class _ToText:
    """Categoricals as strings with an explicit 'missing' (OneHotEncoder dislikes NaN mixes)."""

    def fit(self, x: pd.DataFrame, y: object = None) -> _ToText:
        return self

    def transform(self, x: pd.DataFrame) -> np.ndarray:
        return x.astype("object").where(x.notna(), "missing").astype(str).to_numpy()

    def fit_transform(self, x: pd.DataFrame, y: object = None) -> np.ndarray:
        return self.transform(x)

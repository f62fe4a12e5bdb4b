"""Plain pandas / scikit-learn peers for the ML benchmarks.

- ``pandas_snapshots``: the way one writes point-in-time snapshots with pandas alone — a loop
  over the weekly dates, filtering every event table to the date and aggregating per deal.
  It computes the core features (age, stage, amount and expected close at the date, activity
  counts in 7/30/90 days, days since the last activity, the rep's trailing win rate, the
  account's prior wins) plus the label, for the same deals and dates as ``build_snapshots``.
- ``sklearn_pipeline``: those features into a scikit-learn pipeline — one-hot encoding,
  ``HistGradientBoostingClassifier`` with early stopping, isotonic calibration on the period
  before a temporal holdout, and holdout metrics.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from features.history import History


def pandas_snapshots(history: History, dates: list[pd.Timestamp]) -> pd.DataFrame:
    """Snapshot rows of every deal open at each date, with the core features and label."""
    deals = history.deals
    stages = history.stage_history.sort_values("changed_at")
    acts = history.activities
    frames = []
    for as_of in dates:
        open_ = deals[
            (deals["created_at"] <= as_of)
            & (deals["closed_at"].isna() | (deals["closed_at"] > as_of))
        ]
        if open_.empty:
            continue
        row = pd.DataFrame({"deal_id": open_["deal_id"].to_numpy(), "as_of": as_of})
        row["owner_id"] = open_["owner_id"].to_numpy()
        row["age_days"] = (as_of - open_["created_at"]).dt.days.to_numpy()
        known = stages[stages["changed_at"] <= as_of].groupby("deal_id").last()
        row = row.merge(
            known[["stage", "amount", "expected_close_date"]],
            left_on="deal_id",
            right_index=True,
            how="left",
        )
        row["days_to_expected_close"] = (pd.to_datetime(row["expected_close_date"]) - as_of).dt.days
        past = acts[acts["occurred_at"] <= as_of]
        for days in (7, 30, 90):
            recent = past[past["occurred_at"] > as_of - pd.Timedelta(days=days)]
            row[f"activities_{days}d"] = (
                row["deal_id"].map(recent.groupby("deal_id").size()).fillna(0).to_numpy()
            )
        last = past.groupby("deal_id")["occurred_at"].max()
        row["days_since_last_activity"] = (
            (as_of - row["deal_id"].map(last)).dt.days if not last.empty else np.nan
        )
        closed = deals[
            (deals["closed_at"] <= as_of) & (deals["closed_at"] > as_of - pd.Timedelta(days=365))
        ]
        rate = closed.assign(won=closed["status"] == "won").groupby("owner_id")["won"].mean()
        row["rep_win_rate"] = row["owner_id"].map(rate)
        won_before = deals[(deals["status"] == "won") & (deals["closed_at"] <= as_of)]
        prior = won_before.groupby("account_id").size()
        accounts = open_.set_index("deal_id")["account_id"]
        row["account_won_deals"] = row["deal_id"].map(accounts).map(prior).fillna(0).to_numpy()
        for column in ("product", "lead_source", "deal_type", "team", "region"):
            if column in open_.columns:
                row[column] = open_[column].to_numpy()
        frames.append(row.drop(columns=["expected_close_date"]))
    snapshots = pd.concat(frames, ignore_index=True)
    outcome = deals.set_index("deal_id")
    snapshots["label_won"] = snapshots["deal_id"].map(
        outcome["status"].map({"won": 1.0, "lost": 0.0})
    )
    snapshots["closed_at"] = snapshots["deal_id"].map(outcome["closed_at"])
    return snapshots


def sklearn_pipeline(snapshots: pd.DataFrame) -> dict[str, Any]:
    """Fit and evaluate a calibrated gradient-boosting pipeline on a temporal split."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.frozen import FrozenEstimator
    from sklearn.metrics import brier_score_loss, roc_auc_score
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder

    labelled = snapshots[snapshots["label_won"].notna()].sort_values("as_of")
    categorical = [
        c
        for c in ("stage", "product", "lead_source", "deal_type", "team", "region")
        if c in labelled.columns
    ]
    numeric = [
        c
        for c in labelled.columns
        if c not in {*categorical, "deal_id", "as_of", "owner_id", "label_won", "closed_at"}
    ]
    x = labelled[numeric + categorical].copy()
    x[categorical] = x[categorical].astype("object").fillna("missing").astype(str)
    y = labelled["label_won"].to_numpy()
    n = len(x)
    train, calib = slice(0, int(n * 0.6)), slice(int(n * 0.6), int(n * 0.8))
    holdout = slice(int(n * 0.8), n)
    model = Pipeline(
        [
            (
                "prepare",
                ColumnTransformer(
                    [
                        (
                            "cat",
                            OneHotEncoder(handle_unknown="ignore", min_frequency=20),
                            categorical,
                        )
                    ],
                    remainder="passthrough",
                ),
            ),
            ("model", HistGradientBoostingClassifier(early_stopping=True, random_state=0)),
        ]
    )
    model.fit(x.iloc[train], y[train])
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method="isotonic")
    calibrated.fit(x.iloc[calib], y[calib])
    p = calibrated.predict_proba(x.iloc[holdout])[:, 1]
    return {
        "auc": float(roc_auc_score(y[holdout], p)),
        "brier": float(brier_score_loss(y[holdout], p)),
        "model": calibrated,
        "columns": numeric + categorical,
        "categorical": categorical,
    }


def sklearn_predict(result: dict[str, Any], rows: pd.DataFrame) -> np.ndarray:
    """Probabilities from a ``sklearn_pipeline`` result for feature rows."""
    x = rows[result["columns"]].copy()
    cats = result["categorical"]
    x[cats] = x[cats].astype("object").fillna("missing").astype(str)
    return np.asarray(result["model"].predict_proba(x)[:, 1])

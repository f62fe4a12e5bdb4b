"""Fit, calibrate and evaluate the win-probability model (no MLflow here: see ``tracking``).

LightGBM learns on the train period with early stopping on the validation period; calibrators
(Platt, isotonic, beta, Venn-Abers) are compared on the validation period and the best one is
kept. If the calibrated model does not beat the base rate on validation, the data carries too
little signal: the bundle becomes the base rate, flagged ``little_signal`` (better an honest
constant than invented confidence). Everything is then scored on the untouched holdout,
against the baselines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.build import build_snapshots, weekly_as_of_dates
from features.history import History
from features.spec import FEATURE_SPEC_VERSION, Feature, excluded_attributes, feature_spec
from salesml.actions import fit_action_stats
from salesml.explain import contributions, fit_explainer, global_drivers, importance
from salesml.models.calibration import select_calibrator
from salesml.models.contract import FeatureContract
from salesml.models.evaluation import binary_metrics, reliability_curve
from salesml.models.win.bundle import WinBundle
from salesml.settings import Settings
from training.data import TemporalSplit, temporal_split
from training.win.baselines import fit_baselines

# Directions sales teams take as given: recent activity never lowers a deal's chance, and a
# longer silence never raises it. LightGBM enforces them, so no explanation ever says otherwise.
MONOTONE = {
    "activities_7d": 1,
    "activities_30d": 1,
    "activities_90d": 1,
    "days_since_last_activity": -1,
}
# Validation log loss must improve on the base rate by this fraction to count as signal.
SIGNAL_MARGIN = 0.005
# Rows of the holdout on which the global driver importance is measured (logged to MLflow).
IMPORTANCE_ROWS = 20_000


@dataclass
class WinTrainingResult:
    """Everything a training run produced, for logging, the model card and the CLI."""

    bundle: WinBundle
    split: TemporalSplit
    holdout_metrics: dict[str, float | None]
    baseline_metrics: dict[str, dict[str, float | None]]
    reliability: dict[str, pd.DataFrame]
    calibrator_table: pd.DataFrame
    params: dict[str, Any]
    little_signal: bool
    booster_holdout_metrics: dict[str, float | None]
    excluded: dict[str, str] = field(default_factory=dict)
    holdout_predictions: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def beats_baselines(self) -> dict[str, bool]:
        """Per baseline: lower holdout log loss and Brier than it."""
        mine = self.holdout_metrics
        return {
            name: bool(
                (mine["log_loss"] or np.inf) < (m["log_loss"] or np.inf)
                and (mine["brier"] or np.inf) < (m["brier"] or np.inf)
            )
            for name, m in self.baseline_metrics.items()
        }


def lgb_params(n_rows: int, seed: int = 0) -> dict[str, Any]:
    """Conservative defaults that scale with the data (bigger leaves on bigger data)."""
    return {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 31,
        "min_data_in_leaf": int(max(20, n_rows // 400)),
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
        "max_cat_to_onehot": 8,
        "cat_smooth": 20.0,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": Settings().threads,  # 0: every core
        "verbosity": -1,
    }


def train_win_model(history: History, seed: int = 0) -> WinTrainingResult:
    """Train, calibrate and evaluate on ``history`` (already cut at the training date)."""
    spec = feature_spec(history)
    names = [f.name for f in spec]
    kinds: dict[str, str] = {f.name: f.kind for f in spec}
    snapshots = build_snapshots(history, weekly_as_of_dates(history))
    split = temporal_split(snapshots, history)
    vocab = _vocabularies(split.train, spec)
    params = lgb_params(len(split.train), seed)
    params["monotone_constraints"] = [MONOTONE.get(name, 0) for name in names]
    contract = FeatureContract(names, kinds, vocab)
    x_train, x_val = contract.matrix(split.train), contract.matrix(split.validation)
    y_train = split.train["label_won"].to_numpy(dtype=float)
    y_val = split.validation["label_won"].to_numpy(dtype=float)
    train_set = lgb.Dataset(x_train, y_train, free_raw_data=False)
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=2000,
        valid_sets=[lgb.Dataset(x_val, y_val, reference=train_set)],
        callbacks=[lgb.early_stopping(50, verbose=False)],
    )
    val_scores = np.asarray(booster.predict(x_val, raw_score=True), dtype=float)
    calibrator, table = select_calibrator(val_scores, y_val)
    chosen = table[table["chosen"]].iloc[0]
    base_rate = float(np.concatenate([y_train, y_val]).mean())
    # The strictest constant to beat: validation's own win rate.
    base_ll = _log_loss_constant(y_val, float(y_val.mean()))
    little_signal = not float(chosen["log_loss"]) < base_ll * (1 - SIGNAL_MARGIN)
    metadata = {
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "best_iteration": int(booster.best_iteration),
        "calibrator": calibrator.name,
        "little_signal": little_signal,
        "trained_to": f"{history.exported_at:%Y-%m-%d}",
        "data_window": split.window(),
    }
    explainer = fit_explainer_stats(pd.concat([split.train, split.validation]), spec)
    full = WinBundle(
        names, kinds, vocab, calibrator, booster, base_rate, dict(metadata), explainer=explainer
    )
    bundle = (
        full
        if not little_signal
        else WinBundle(
            names, kinds, vocab, calibrator, None, base_rate, dict(metadata), explainer=explainer
        )
    )
    if bundle.booster is not None and len(split.holdout):
        sample = split.holdout.sample(min(len(split.holdout), IMPORTANCE_ROWS), random_state=seed)
        c = contributions(bundle, sample)
        bundle.explainer["global"] = {
            "concepts": importance(global_drivers(bundle, sample, contribution=c)),
            "features": importance(global_drivers(bundle, sample, level="feature", contribution=c)),
            "rows": len(sample),
        }
    return _evaluate(bundle, full, split, names, kinds, table, params, little_signal, history)


def _evaluate(
    bundle: WinBundle,
    full: WinBundle,
    split: TemporalSplit,
    names: list[str],
    kinds: dict[str, str],
    table: pd.DataFrame,
    params: dict[str, Any],
    little_signal: bool,
    history: History,
) -> WinTrainingResult:
    y = split.holdout["label_won"].to_numpy(dtype=float)
    predicted = bundle.predict(split.holdout)["win_probability"].to_numpy()
    booster_p = full.predict(split.holdout)["win_probability"].to_numpy()
    reliability = {"model": reliability_curve(y, predicted)}
    baselines = fit_baselines(split.train, names, kinds)
    baseline_metrics = {}
    for name, predict in baselines.items():
        p = predict(split.holdout)
        baseline_metrics[name] = binary_metrics(y, p)
        reliability[name] = reliability_curve(y, p)
    holdout = split.holdout[["deal_id", "as_of", "label_won"]].copy()
    holdout["win_probability"] = predicted
    return WinTrainingResult(
        bundle=bundle,
        split=split,
        holdout_metrics=binary_metrics(y, predicted),
        baseline_metrics=baseline_metrics,
        reliability=reliability,
        calibrator_table=table,
        params=params,
        little_signal=little_signal,
        booster_holdout_metrics=binary_metrics(y, booster_p),
        excluded=excluded_attributes(history),
        holdout_predictions=holdout,
    )


def fit_explainer_stats(frame: pd.DataFrame, spec: list[Feature]) -> dict[str, Any]:
    """Won-deal statistics and action thresholds from labelled training snapshots."""
    meta = {
        f.name: {"concept": f.concept, "actionable": f.actionable, "description": f.description}
        for f in spec
    }
    kinds = {f.name: f.kind for f in spec}
    explainer = fit_explainer(frame, [f.name for f in spec], kinds, meta)
    explainer["actions"] = fit_action_stats(frame)
    return explainer


def _vocabularies(train: pd.DataFrame, spec: list[Feature]) -> dict[str, list[str]]:
    vocab = {}
    for f in spec:
        if f.kind == "categorical":
            values = train[f.name].dropna().astype(str)
            vocab[f.name] = sorted(values.unique().tolist())
    return vocab


def _log_loss_constant(y: np.ndarray, rate: float) -> float:
    rate = float(np.clip(rate, 1e-6, 1 - 1e-6))
    return float(-np.mean(y * np.log(rate) + (1 - y) * np.log(1 - rate)))

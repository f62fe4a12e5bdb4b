"""Feature screening on the validation period: a concept stays only when the model needs it.

The validation deals are split in two halves; a booster that stopped early on one half is
judged on the other, and the other way round (cross-fitting: rounds chosen on the judging rows
would flatter every feature, noise included), and the per-deal increases of both are pooled.
Only the features handed to the screen are judged (training screens custom attributes and
many-level categoricals; see ``training.win.fit.screened_features``).

A fitted booster is asked, concept by concept (the groups drivers are shown in: "Engagement",
"Deal size", each custom attribute…), how much worse its validation log loss gets when that
concept's features are shuffled across rows (permutation importance, all of a concept's
features with one permutation, so correlated siblings cannot cover for each other). The loss
increase is averaged per deal (a deal's weekly snapshots are not independent evidence) and
kept only when it is significantly above zero: a one-sided t-test over deals at a
family-wise level ``FAMILY_ALPHA`` over the concepts tested (Bonferroni), and never below
``t >= T_LIMIT``. What carries no signal on data the booster was not fitted on — a 30-level
noise category, a random number — is dropped before the model is refitted, so it can never
become a driver.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.stats import norm

# One-sided t statistic over deals a concept's validation loss increase must reach: at least
# T_LIMIT (p ≈ 0.02), and the Bonferroni bound of FAMILY_ALPHA over the concepts tested (with
# several noise fields, one of them passing by chance would otherwise be likely).
T_LIMIT = 2.0
FAMILY_ALPHA = 0.05
PERMUTATIONS = 3
MAX_ROWS = 20_000  # validation rows the screen reads (a random sample of deals beyond)
EPS = 1e-6


@dataclass(frozen=True)
class Fold:
    """A booster and the validation rows it did not stop early on (its judges)."""

    booster: lgb.Booster
    matrix: np.ndarray  # the rows as the booster reads them (FeatureContract.model_matrix)
    y: np.ndarray  # their outcomes (1 won, 0 lost)
    deal_ids: np.ndarray  # the deal of each row (the unit of the significance test)


def concept_screen(
    folds: Sequence[Fold],
    features: Sequence[str],
    concepts: Mapping[str, str],
    seed: int = 0,
    screened: Sequence[str] | None = None,
) -> dict[str, str]:
    """``{feature: why}`` for every feature to drop: those of concepts whose shuffling does not
    significantly raise the validation log loss, and those no booster splits on.

    Args:
        folds: cross-fitted boosters, each with the validation deals it is judged on (the
            per-deal loss increases of all folds are pooled into one test).
        features: the column names of every fold's ``matrix``.
        concepts: feature → concept.
        seed: for the row sample and the permutations.
        screened: the features that may be dropped (default: all); the others are kept
            whatever the test says.
    """
    rng = np.random.default_rng(seed)
    parts = [_sample(fold, rng, MAX_ROWS // max(1, len(folds))) for fold in folds]
    used = np.any([f.booster.feature_importance("split") > 0 for f in folds], axis=0)
    open_to = set(features if screened is None else screened)
    dropped = {
        name: "never used by the model"
        for name, u in zip(features, used, strict=True)
        if not u and name in open_to
    }
    by_concept: dict[str, list[int]] = {}
    for i, name in enumerate(features):
        if used[i] and name in open_to:
            by_concept.setdefault(concepts.get(name, name), []).append(i)
    limit = max(T_LIMIT, float(norm.ppf(1 - FAMILY_ALPHA / max(1, len(by_concept)))))
    groups = pd.factorize(np.concatenate([p[3] for p in parts]))[0]
    for concept, columns in by_concept.items():
        delta = np.concatenate(
            [_loss_increase(booster, x, y, columns, rng) for booster, x, y, _ in parts]
        )
        t = _t_over_deals(delta, groups)
        if t < limit:
            why = (
                f"no significant signal on the validation period (shuffling '{concept}' "
                f"changes the log loss by t = {t:.1f} over deals; {limit:.1f} needed)"
            )
            dropped |= {features[i]: why for i in columns}
    return dropped


def judged_log_loss(folds: Sequence[Fold]) -> float:
    """The folds' log loss on their judging rows, per deal (each deal's rows averaged), over
    the deals of all folds."""
    per_deal = []
    for fold in folds:
        loss = _row_loss(fold.booster, fold.matrix, fold.y)
        groups = pd.factorize(np.asarray(fold.deal_ids, dtype=object))[0]
        per_deal.append(np.bincount(groups, weights=loss) / np.bincount(groups))
    return float(np.mean(np.concatenate(per_deal)))


def _sample(
    fold: Fold, rng: np.random.Generator, max_rows: int
) -> tuple[lgb.Booster, np.ndarray, np.ndarray, np.ndarray]:
    """The fold's rows, or those of a random sample of its deals beyond ``max_rows``."""
    deals = pd.Index(np.asarray(fold.deal_ids, dtype=object))
    rows = np.arange(len(fold.y))
    if len(rows) > max_rows:
        unique = deals.unique()
        keep = rng.permutation(len(unique))[: max(1, int(len(unique) * max_rows / len(rows)))]
        rows = np.flatnonzero(deals.isin(unique[keep]))
    return fold.booster, fold.matrix[rows], fold.y[rows], deals[rows].to_numpy(dtype=object)


def _loss_increase(
    booster: lgb.Booster,
    x: np.ndarray,
    y: np.ndarray,
    columns: list[int],
    rng: np.random.Generator,
) -> np.ndarray:
    """Per row: the mean log-loss increase when ``columns`` are shuffled together."""
    base = _row_loss(booster, x, y)
    delta = np.zeros(len(y))
    for _ in range(PERMUTATIONS):
        shuffled = x.copy()
        shuffled[:, columns] = x[rng.permutation(len(y))][:, columns]
        delta += _row_loss(booster, shuffled, y) - base
    return delta / PERMUTATIONS


def _row_loss(booster: lgb.Booster, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(booster.predict(x), dtype=np.float64), EPS, 1 - EPS)
    loss: np.ndarray = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return loss


def _t_over_deals(delta: np.ndarray, groups: np.ndarray) -> float:
    """t statistic of the mean per-deal loss increase (0 when it cannot be measured)."""
    sums = np.bincount(groups, weights=delta)
    per_deal = sums / np.bincount(groups)
    if len(per_deal) < 3:
        return 0.0
    sd = float(per_deal.std(ddof=1))
    mean = float(per_deal.mean())
    if sd == 0.0:
        return np.inf if mean > 0 else 0.0
    return float(mean / (sd / np.sqrt(len(per_deal))))

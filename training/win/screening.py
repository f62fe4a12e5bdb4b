"""Feature screening on the validation period: a concept stays only when the model needs it.

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


def concept_screen(
    booster: lgb.Booster,
    matrix: np.ndarray,
    y: np.ndarray,
    deal_ids: Sequence[str] | np.ndarray,
    features: Sequence[str],
    concepts: Mapping[str, str],
    seed: int = 0,
    screened: Sequence[str] | None = None,
) -> dict[str, str]:
    """``{feature: why}`` for every feature to drop: those of concepts whose shuffling does not
    significantly raise the validation log loss, and those the booster never splits on.

    Args:
        booster: fitted on the training period; predicts probabilities from ``matrix``.
        matrix: the validation rows as the booster reads them (``FeatureContract.model_matrix``).
        y: their outcomes (1 won, 0 lost).
        deal_ids: the deal of each row (the unit of the significance test).
        features: the column names of ``matrix``.
        concepts: feature → concept.
        screened: the features that may be dropped (default: all); the others are kept
            whatever the test says.
    """
    rng = np.random.default_rng(seed)
    deals = pd.Index(np.asarray(deal_ids, dtype=object))
    rows = np.arange(len(y))
    if len(rows) > MAX_ROWS:
        unique = deals.unique()
        keep = rng.permutation(len(unique))[: max(1, int(len(unique) * MAX_ROWS / len(rows)))]
        rows = np.flatnonzero(deals.isin(unique[keep]))
    x, target, groups = matrix[rows], y[rows], pd.factorize(deals[rows])[0]
    base = _row_loss(booster, x, target)
    used = booster.feature_importance("split") > 0
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
    for concept, columns in by_concept.items():
        delta = np.zeros(len(target))
        for _ in range(PERMUTATIONS):
            shuffled = x.copy()
            order = rng.permutation(len(target))
            shuffled[:, columns] = x[order][:, columns]
            delta += _row_loss(booster, shuffled, target) - base
        t = _t_over_deals(delta / PERMUTATIONS, groups)
        if t < limit:
            why = (
                f"no significant signal on the validation period (shuffling '{concept}' "
                f"changes the log loss by t = {t:.1f} over deals; {limit:.1f} needed)"
            )
            dropped |= {features[i]: why for i in columns}
    return dropped


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

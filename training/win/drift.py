"""Calibration under drift, turned on by the data only where the trend is real.

A win rate that drifts with the deals' creation date (a rising market, a changing product)
leaves a model fitted at the as-of level with the matured deals, behind the deals it scores.
The drift candidate adds the creation date to the calibration,
``logit p = a + b * score + c * years`` (``c`` alone for the base rate), and serves it at the
as-of: a Platt calibrator (or a base rate) whose intercept carries the trend up to the as-of.

A trend fitted on one year points the wrong way the next wherever there is none (salesml/synth)
or where it turns (Maven), so the candidate has to earn its place in a nested temporal check
inside training (``drift_check``), the same test one period earlier:

- **fit** both calibrators on the validation period (out-of-sample scores of the training-period
  fit; outcomes known by the holdout's start, the inner as-of), the drift one served at that
  inner as-of;
- **judge** them on the deals created at or after the inner as-of whose outcome the export
  knows (the holdout's new creation cohort, matured: the holdout ends a maturity before the
  export), each deal once at its first snapshot — a new deal scored as it comes in, as the
  deals after the real as-of will be;
- **keep** the drift candidate only when its mean log loss per judged deal beats the plain
  calibrator's by more than ``MIN_T`` standard errors of the paired per-deal difference.

When kept, it is refitted on the validation and holdout periods (as the plain calibrator is)
and served at the as-of; the check's figures go to the bundle's metadata (``calibration_drift``)
and the model card either way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import expit
from sklearn.linear_model import LogisticRegression

from salesml.models.calibration import Calibrator, calibrator_from_params, select_calibrator

# The drift candidate is kept when its log-loss gain per judged deal exceeds this many of its
# standard errors (one-sided, about 2.3 % by chance when there is no gain).
MIN_T = 2.0
# Fewer judged deals than this (or either outcome under a tenth of it) and the check cannot
# tell a trend from noise: the plain calibrator stays.
MIN_JUDGED = 200
DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class DriftCheck:
    """The nested check's verdict and its evidence (all JSON-ready)."""

    adopted: bool
    judged_deals: int
    gain_per_deal: float | None  # plain log loss - drift log loss, mean over judged deals
    t: float | None  # gain / its standard error
    slope_per_year: float | None  # c of the candidate fitted in the check (log-odds / year)
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Trend:
    """``logit p = a + b * score + c * (years since origin)``; ``b`` is None for a base rate."""

    a: float
    b: float | None
    c: float
    origin: pd.Timestamp

    def logit(self, scores: np.ndarray | None, at: pd.Timestamp) -> np.ndarray | float:
        years = (at - self.origin).total_seconds() / 86400 / DAYS_PER_YEAR
        level = self.a + self.c * years
        if self.b is None or scores is None:
            return level
        return level + self.b * np.asarray(scores, dtype=float)

    def platt_at(self, at: pd.Timestamp) -> Calibrator:
        """The Platt calibrator this trend is at date ``at``."""
        assert self.b is not None
        return calibrator_from_params({"kind": "platt", "a": self.b, "b": self.logit(None, at)})

    def rate_at(self, at: pd.Timestamp) -> float:
        return float(expit(self.logit(None, at)))


def creation_dates(rows: pd.DataFrame) -> pd.Series:
    """Each snapshot's deal creation date (its as-of minus its age)."""
    return rows["as_of"] - pd.to_timedelta(rows["age_days"].to_numpy(dtype=float), unit="D")


def fit_trend(
    rows: pd.DataFrame, scores: np.ndarray | None, weights: np.ndarray | None = None
) -> Trend | None:
    """The drift candidate on labelled ``rows`` (``scores``: their raw model scores; None for
    a base rate). None when the score's coefficient comes out negative (a decreasing map)."""
    created = creation_dates(rows)
    origin = pd.Timestamp(created.min())
    years = ((created - origin).dt.total_seconds() / 86400 / DAYS_PER_YEAR).to_numpy(dtype=float)
    x = years[:, None] if scores is None else np.column_stack([scores, years])
    y = rows["label_won"].to_numpy(dtype=float)
    if len(np.unique(y)) < 2:
        return None
    model = LogisticRegression(C=1e4, max_iter=1000).fit(x, y, sample_weight=weights)
    coef = model.coef_[0]
    if scores is not None and coef[0] <= 0:
        return None
    b = None if scores is None else float(coef[0])
    return Trend(float(model.intercept_[0]), b, float(coef[-1]), origin)


def first_of_new_cohort(rows: pd.DataFrame, since: pd.Timestamp) -> np.ndarray:
    """Positions (in ``rows``) of the first snapshot of each deal created at or after
    ``since``: the deals a model fitted at ``since`` meets as new deals."""
    created = creation_dates(rows).to_numpy()
    order = np.lexsort((rows["as_of"].to_numpy(), rows["deal_id"].to_numpy()))
    deal_ids = rows["deal_id"].to_numpy()[order]
    first = order[np.r_[True, deal_ids[1:] != deal_ids[:-1]]]
    return np.sort(first[created[first] >= np.datetime64(since)])


def _log_loss_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.asarray(-(y * np.log(p) + (1 - y) * np.log(1 - p)), dtype=float)


def drift_check(
    older: pd.DataFrame,
    older_scores: np.ndarray | None,
    newer: pd.DataFrame,
    newer_scores: np.ndarray | None,
    inner_as_of: pd.Timestamp,
    plain_kind: str | None,
    plain_rate: float | None = None,
    older_weights: np.ndarray | None = None,
) -> DriftCheck:
    """The nested temporal check (module docstring). ``older``: the validation period's
    snapshots with ``older_scores``; ``newer``: the holdout's, scored by the same fit;
    ``plain_kind``: the plain calibrator's kind, or None for a base rate ``plain_rate``
    (``older`` and ``newer`` scores then None; ``older_weights``: each deal once)."""
    judged = first_of_new_cohort(newer, inner_as_of)
    y = newer["label_won"].to_numpy(dtype=float)[judged]
    won = int(y.sum())
    if len(judged) < MIN_JUDGED or min(won, len(y) - won) < MIN_JUDGED // 10:
        return DriftCheck(False, len(judged), None, None, None, "too few new deals to judge")
    y_older = older["label_won"].to_numpy(dtype=float)
    if plain_kind is None:
        trend = fit_trend(older, None, older_weights)
        assert plain_rate is not None
        p_plain = np.full(len(y), plain_rate)
        p_trend = np.full(len(y), trend.rate_at(inner_as_of) if trend else plain_rate)
    else:
        assert older_scores is not None and newer_scores is not None
        plain = select_calibrator(older_scores, y_older, candidates=(plain_kind,))[0]
        trend = fit_trend(older, older_scores)
        s = newer_scores[judged]
        p_plain = plain.predict(s)
        p_trend = trend.platt_at(inner_as_of).predict(s) if trend else p_plain
    if trend is None:
        return DriftCheck(False, len(judged), None, None, None, "no increasing trend fit")
    gain = _log_loss_rows(y, p_plain) - _log_loss_rows(y, p_trend)
    se = float(gain.std(ddof=1) / np.sqrt(len(gain)))
    t = float(gain.mean() / se) if se > 0 else 0.0
    adopted = t > MIN_T
    reason = (
        f"beats the plain calibrator on the newest matured cohort by {t:.1f} standard errors"
        if adopted
        else f"not better than the plain calibrator by {MIN_T} standard errors (t = {t:.1f})"
    )
    return DriftCheck(adopted, len(judged), float(gain.mean()), t, trend.c, reason)

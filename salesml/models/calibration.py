"""Calibrators: map a model's raw score (LightGBM log-odds margin) to a win probability.

Every calibrator has the same small interface (:class:`Calibrator`): ``fit(scores, y)`` learns
attributes ending in ``_`` and returns ``self``; ``predict(scores)`` gives probabilities clipped
to ``[1e-6, 1 - 1e-6]``; ``to_params()`` gives plain JSON-ready parameters (a ``kind`` and lists
of floats) that :func:`calibrator_from_params` turns back into a calibrator predicting bitwise
the same numbers. That is how the calibrator travels in the model bundle: no pickles.

Every calibrator is non-decreasing in the score: a higher score never gets a lower probability.
:func:`select_calibrator` picks one by cross-validated log loss on time-ordered data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.typing import ArrayLike
from scipy.special import expit

from salesml.errors import SalesmlError
from salesml.models.evaluation import brier_score, expected_calibration_error, log_loss

FloatArray = npt.NDArray[np.float64]
EPS = 1e-6  # predictions are clipped to [EPS, 1 - EPS]: never certain, always a finite log loss
SMALL_ROWS, SMALL_CLASS = 200, 20  # below either, select_calibrator prefers Platt


class CalibrationError(SalesmlError):
    """Calibration data or calibrator parameters are unusable; the message says how to fix it."""


class Calibrator(Protocol):
    """What every calibrator offers (structural type; see the module docstring)."""

    name: str

    def fit(self, scores: ArrayLike, y: ArrayLike) -> Self: ...
    def predict(self, scores: ArrayLike) -> FloatArray: ...
    def to_params(self) -> dict[str, Any]: ...


def _as_scores(scores: ArrayLike) -> FloatArray:
    try:
        s = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"scores must be numbers (raw model margins); {exc}") from exc
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise CalibrationError(f"scores must be one-dimensional; got shape {s.shape}")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise CalibrationError(
            f"scores must be finite; got {bad.size} NaN or infinite value(s), first at position "
            f"{bad[0]}; drop or impute those rows before calibrating"
        )
    return s


def _as_fit_data(scores: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    s = _as_scores(scores)
    labels = np.asarray(y).reshape(-1)
    if labels.size != s.size:
        raise CalibrationError(
            f"scores and y must have the same length; got {s.size} scores and {labels.size} labels"
        )
    if s.size == 0:
        raise CalibrationError("calibration needs at least one closed deal; got 0")
    bad = labels[~np.isin(labels, [0, 1])]
    if bad.size:
        raise CalibrationError(
            f"y must be 1 (won) or 0 (lost); got {bad.size} other value(s) such as {bad[0]!r}; "
            "map the outcome to 0/1 and leave open deals out"
        )
    t = labels.astype(np.float64)
    won = int(t.sum())
    if won in (0, t.size):
        raise CalibrationError(
            f"calibration needs both won and lost deals; got {won} won of {t.size}; "
            "use a longer history or pool more teams"
        )
    return s, t


def _floats(params: dict[str, Any], key: str) -> FloatArray:
    """One list of finite floats from a parameter dict, or a fix-it error."""
    try:
        values = np.asarray(params[key], dtype=np.float64).reshape(-1)
    except (KeyError, TypeError, ValueError) as exc:
        kind = params.get("kind")
        raise CalibrationError(
            f"calibrator parameters for {kind!r} lack a numeric {key!r}; "
            "pass the dict produced by to_params()"
        ) from exc
    if not np.isfinite(values).all():
        raise CalibrationError(f"calibrator parameter {key!r} must hold finite numbers only")
    return values


def _fit_logistic(
    features: FloatArray, target: FloatArray, ridge: float
) -> tuple[FloatArray, float]:
    """Newton's method on mean log loss (+ ``ridge / 2 * |w|^2``) of ``sigmoid(x @ w + c)``.

    Features are standardised while solving and the coefficients scaled back. Returns
    ``(w, c)``.
    """
    n, d = features.shape
    scale = features.std(axis=0)
    scale[scale == 0] = 1.0
    x = np.column_stack([features / scale, np.ones(n)])
    penalty = np.append(np.full(d, ridge), 0.0)  # the intercept is not shrunk

    def loss(theta: FloatArray) -> float:
        z = x @ theta
        return float(np.mean(np.logaddexp(0.0, z) - target * z) + 0.5 * (penalty * theta) @ theta)

    theta = np.zeros(d + 1)
    theta[-1] = np.log(target.mean() / (1 - target.mean()))
    current = loss(theta)
    for _ in range(200):
        p = expit(x @ theta)
        grad = x.T @ (p - target) / n + penalty * theta
        hessian = (x.T * (p * (1 - p))) @ x / n + np.diag(penalty)
        step = np.linalg.lstsq(hessian, grad, rcond=None)[0]
        shrink = 1.0
        while (trial := loss(theta - shrink * step)) > current and shrink > 1e-12:
            shrink /= 2  # backtrack until the loss does not rise
        if trial > current:
            break
        theta, current = theta - shrink * step, trial
        if np.abs(shrink * step).max() < 1e-12:
            break
    return theta[:-1] / scale, float(theta[-1])


def _fit_nonnegative(
    features: FloatArray, target: FloatArray, ridge: float = 0.0
) -> tuple[FloatArray, float]:
    """Logistic fit whose coefficients are all >= 0, which keeps the map non-decreasing.

    As Kull et al. (2017) do for beta calibration: while the fit has a negative coefficient,
    drop the first such feature and refit (no feature left: the intercept-only fit).
    """
    keep = list(range(features.shape[1]))
    coef = np.zeros(features.shape[1])
    while keep:
        w, c = _fit_logistic(features[:, keep], target, ridge)
        negative = np.flatnonzero(w < 0)
        if negative.size == 0:
            coef[keep] = w
            return coef, c
        del keep[int(negative[0])]
    return coef, float(np.log(target.mean() / (1 - target.mean())))


class _Base(ABC):
    """Shared plumbing: input checks, the clip, the not-fitted error, plain parameters.

    Learned attributes are floats (``_scalars``) or float arrays (``_arrays``); their
    parameter names drop the trailing ``_``.
    """

    name = "base"
    _scalars: tuple[str, ...] = ()
    _arrays: tuple[str, ...] = ()

    def _check_fitted(self) -> None:
        if any(not hasattr(self, attr) for attr in self._scalars + self._arrays):
            raise CalibrationError(
                f"{type(self).__name__} is not fitted; call fit(scores, y) first "
                "or build it with calibrator_from_params()"
            )

    def predict(self, scores: ArrayLike) -> FloatArray:
        """Calibrated win probabilities, clipped to ``[1e-6, 1 - 1e-6]``.

        Args:
            scores: Raw model scores (log-odds margins), one per deal.
        """
        self._check_fitted()
        return np.clip(self._probability(_as_scores(scores)), EPS, 1 - EPS)

    @abstractmethod
    def _probability(self, s: FloatArray) -> FloatArray:
        """Uncalibrated-to-calibrated map of each concrete calibrator."""

    def _params_consistent(self) -> bool:
        return True

    def to_params(self) -> dict[str, Any]:
        """Plain JSON-ready parameters: ``kind`` plus every learned value as floats."""
        self._check_fitted()
        params: dict[str, Any] = {"kind": self.name}
        params |= {a[:-1]: float(getattr(self, a)) for a in self._scalars}
        return params | {a[:-1]: getattr(self, a).tolist() for a in self._arrays}

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Self:
        """Rebuild a fitted calibrator from :meth:`to_params` output."""
        self = cls()
        for attr in cls._scalars:
            values = _floats(params, attr[:-1])
            if values.size != 1:
                raise CalibrationError(f"calibrator parameter {attr[:-1]!r} must be one number")
            setattr(self, attr, float(values[0]))
        for attr in cls._arrays:
            setattr(self, attr, _floats(params, attr[:-1]))
        if not self._params_consistent():
            raise CalibrationError(
                f"{cls.name} parameters have inconsistent lengths or unsorted breakpoints; "
                "pass the dict produced by to_params() unchanged"
            )
        return self


class IdentityCalibrator(_Base):
    """The uncalibrated baseline: ``sigmoid(score)``, as the model's own loss intends."""

    name = "identity"

    def fit(self, scores: ArrayLike, y: ArrayLike) -> Self:
        """Check the data (nothing is learned); returns ``self``."""
        _as_fit_data(scores, y)
        return self

    def _probability(self, s: FloatArray) -> FloatArray:
        return np.asarray(expit(s), dtype=np.float64)


class PlattCalibrator(_Base):
    """Platt scaling: ``sigmoid(a * score + b)`` fitted by logistic regression.

    Uses Platt's (1999) smoothed targets, ``(won + 1) / (won + 2)`` and ``1 / (lost + 2)``,
    which keep the fit finite on separable data. If the fit gives ``a < 0`` (the score ranks
    deals backwards) ``a`` is set to 0 and ``b`` refitted: the base rate, not a decreasing map.
    """

    name = "platt"
    _scalars = ("a_", "b_")
    a_: float
    b_: float

    def fit(self, scores: ArrayLike, y: ArrayLike) -> Self:
        """Learn ``a_`` and ``b_``; returns ``self``."""
        s, t = _as_fit_data(scores, y)
        won = t.sum()
        target = np.where(t == 1, (won + 1) / (won + 2), 1 / (t.size - won + 2))
        coef, self.b_ = _fit_nonnegative(s[:, None], target)
        self.a_ = float(coef[0])
        return self

    def _probability(self, s: FloatArray) -> FloatArray:
        return np.asarray(expit(self.a_ * s + self.b_), dtype=np.float64)


class IsotonicCalibrator(_Base):
    """Isotonic regression on the score, stored as breakpoints ``x_`` and values ``y_``.

    Predicts by linear interpolation between breakpoints and the end values beyond them, like
    scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``.
    """

    name = "isotonic"
    _arrays = ("x_", "y_")
    x_: FloatArray
    y_: FloatArray

    def fit(self, scores: ArrayLike, y: ArrayLike) -> Self:
        """Learn breakpoints ``x_`` and values ``y_``; returns ``self``."""
        from sklearn.isotonic import IsotonicRegression

        s, t = _as_fit_data(scores, y)
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(s, t)
        self.x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
        self.y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        return self

    def _probability(self, s: FloatArray) -> FloatArray:
        return np.interp(s, self.x_, self.y_)

    def _params_consistent(self) -> bool:
        return 0 < self.x_.size == self.y_.size and bool(np.all(np.diff(self.x_) > 0))


def _beta_features(s: FloatArray) -> FloatArray:
    """``ln p`` and ``-ln(1 - p)`` for ``p = sigmoid(s)``, computed stably from the margin."""
    return np.column_stack([-np.logaddexp(0.0, -s), np.logaddexp(0.0, s)])


class BetaCalibrator(_Base):
    """Beta calibration (Kull, Silva Filho & Flach 2017) on ``p = sigmoid(score)``.

    ``logit(q) = a ln p - b ln(1 - p) + c``, fitted by logistic regression on the two features.
    As in the paper, if the free fit gives ``a < 0`` it is refitted without the ``ln p``
    feature (``a = 0``); else if ``b < 0``, without ``ln(1 - p)`` (``b = 0``). The refit keeps
    its remaining coefficient at or above 0 the same way, so the map never decreases.
    """

    name = "beta"
    _scalars = ("a_", "b_", "c_")
    a_: float
    b_: float
    c_: float

    def fit(self, scores: ArrayLike, y: ArrayLike) -> Self:
        """Learn ``a_``, ``b_`` and ``c_``; returns ``self``."""
        s, t = _as_fit_data(scores, y)
        x = _beta_features(s)
        coef, c = _fit_nonnegative(x, t, ridge=1e-8)  # the ridge keeps separable data finite
        self.a_, self.b_, self.c_ = float(coef[0]), float(coef[1]), c
        return self

    def _probability(self, s: FloatArray) -> FloatArray:
        x = _beta_features(s)
        return np.asarray(expit(self.a_ * x[:, 0] + self.b_ * x[:, 1] + self.c_), np.float64)


_Stack = tuple[list[int], list[int], list[int], list[int]]


def _pava_stack(sums: list[int], weights: list[int]) -> _Stack:
    """Left-to-right pool-adjacent-violators, keeping every intermediate stack.

    Returns per block node its label sum, weight (integers, so means compare exactly) and the
    node below it, and per ``i`` the top node after the first ``i`` points (``-1``: none).
    """
    total_of: list[int] = []
    weight_of: list[int] = []
    below: list[int] = []
    tops, top = [-1], -1
    for point_sum, point_weight in zip(sums, weights, strict=True):
        total, weight = point_sum, point_weight
        while top >= 0 and total_of[top] * weight >= total * weight_of[top]:  # mean(top) >= mean
            total, weight, top = total + total_of[top], weight + weight_of[top], below[top]
        total_of.append(total)
        weight_of.append(weight)
        below.append(top)
        top = len(below) - 1
        tops.append(top)
    return total_of, weight_of, below, tops


def _venn_abers_grid(s: FloatArray, t: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Unique scores ``x`` and, per gap between them, the isotonic fit at an added point.

    ``p0[i]`` (``p1[i]``) is the fitted value at a test point labelled 0 (1) placed after the
    first ``i`` unique calibration scores. The fit's blocks coarsen the prefix's left-to-right
    PAVA blocks and the suffix's right-to-left ones, so the added point's block is found by
    merging it with neighbouring blocks while they violate the order. After the sort that is
    a handful of integer steps per gap in practice (the worst case is quadratic).
    """
    x, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=t).round().astype(np.int64).tolist()
    weights = counts.tolist()
    k = len(weights)
    ls, lw, lnext, ltops = _pava_stack(sums, weights)
    # right-to-left PAVA = left-to-right PAVA on the reversed, negated labels
    rs, rw, rnext, rtops = _pava_stack([-v for v in reversed(sums)], weights[::-1])
    grids: list[list[float]] = [[], []]
    for label in (0, 1):
        for i in range(k + 1):
            total, weight, lo, hi = label, 1, ltops[i], rtops[k - i]
            while True:
                if lo >= 0 and ls[lo] * weight > total * lw[lo]:
                    total, weight, lo = total + ls[lo], weight + lw[lo], lnext[lo]
                elif hi >= 0 and -rs[hi] * weight < total * rw[hi]:
                    total, weight, hi = total - rs[hi], weight + rw[hi], rnext[hi]
                else:
                    break
            grids[label].append(total / weight)
    return x, np.array(grids[0]), np.array(grids[1])


def _runs(x: FloatArray, grid: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Drop the breakpoints where a step function does not change value."""
    change = grid[1:] != grid[:-1]
    return x[change], np.concatenate([grid[:1], grid[1:][change]])


class VennAbersCalibrator(_Base):
    """Inductive Venn-Abers predictor (Vovk, Petej & Fedorova 2015).

    For a test score ``s``, ``p0``/``p1`` are the isotonic fits at ``s`` on the calibration set
    plus ``(s, 0)``/``(s, 1)``; the prediction is ``p1 / (1 - p0 + p1)``. Both depend only on
    where ``s`` falls among the calibration scores (a tie pools with the equal score, which
    gives ``p1`` of the gap below it and ``p0`` of the gap above it), so fitting stores them as
    step functions: breakpoints ``x0_``/``x1_`` and values ``p0_``/``p1_``. Predicting is two
    binary searches per score.
    """

    name = "venn_abers"
    _arrays = ("x0_", "p0_", "x1_", "p1_")
    x0_: FloatArray
    p0_: FloatArray
    x1_: FloatArray
    p1_: FloatArray

    def fit(self, scores: ArrayLike, y: ArrayLike) -> Self:
        """Learn the ``p0``/``p1`` step functions; returns ``self``."""
        x, p0, p1 = _venn_abers_grid(*_as_fit_data(scores, y))
        (self.x0_, self.p0_), (self.x1_, self.p1_) = _runs(x, p0), _runs(x, p1)
        return self

    def predict_interval(self, scores: ArrayLike) -> tuple[FloatArray, FloatArray]:
        """The multiprobability pair ``(p0, p1)`` for each score, unclipped; ``p0 <= p1``."""
        self._check_fitted()
        return self._interval(_as_scores(scores))

    def _interval(self, s: FloatArray) -> tuple[FloatArray, FloatArray]:
        p0 = self.p0_[np.searchsorted(self.x0_, s, side="right")]
        return p0, self.p1_[np.searchsorted(self.x1_, s, side="left")]

    def _probability(self, s: FloatArray) -> FloatArray:
        p0, p1 = self._interval(s)
        return p1 / (1.0 - p0 + p1)

    def _params_consistent(self) -> bool:
        return all(
            p.size == x.size + 1 and bool(np.all(np.diff(x) > 0))
            for x, p in ((self.x0_, self.p0_), (self.x1_, self.p1_))
        )


CALIBRATORS: dict[str, type[Any]] = {
    c.name: c
    for c in (
        IdentityCalibrator,
        PlattCalibrator,
        IsotonicCalibrator,
        BetaCalibrator,
        VennAbersCalibrator,
    )
}


def _new(kind: object) -> Calibrator:
    if kind not in CALIBRATORS:
        raise CalibrationError(
            f"unknown calibrator kind {kind!r}; expected one of {', '.join(sorted(CALIBRATORS))}"
        )
    calibrator: Calibrator = CALIBRATORS[str(kind)]()
    return calibrator


def calibrator_from_params(params: dict[str, Any]) -> Calibrator:
    """Rebuild a calibrator from :meth:`to_params` output (e.g. after a JSON round trip).

    Args:
        params: The plain parameters, with their ``kind``.

    Returns:
        A fitted calibrator whose predictions are bitwise those of the original.
    """
    _new(params.get("kind"))  # a fix-it error for an unknown kind
    calibrator: Calibrator = CALIBRATORS[params["kind"]].from_params(params)
    return calibrator


def select_calibrator(
    scores: ArrayLike,
    y: ArrayLike,
    candidates: Sequence[str] = ("platt", "isotonic", "beta", "venn_abers"),
    n_splits: int = 5,
    seed: int = 0,
) -> tuple[Calibrator, pd.DataFrame]:
    """Pick a calibrator by cross-validated log loss and refit it on all the data.

    The data are taken in time order, so the folds are contiguous blocks (no shuffling). Each
    candidate's out-of-fold predictions are pooled and scored; the lowest log loss wins, ties
    broken by Brier score, then ECE. With fewer than 200 rows or fewer than 20 deals of the
    rarer outcome, Platt scaling (two parameters) is chosen whatever the scores, when it is a
    candidate; the table's ``note`` says so.

    Args:
        scores: Raw model scores of the calibration deals, in time order.
        y: Outcomes, 1 = won, 0 = lost.
        candidates: Calibrator kinds to compare (see ``CALIBRATORS``).
        n_splits: Number of contiguous folds (at least 2).
        seed: Unused by the contiguous folds; kept so every selector shares one signature.

    Returns:
        The chosen calibrator fitted on all the data, and one row per candidate with columns
        ``candidate, log_loss, brier, ece, chosen, note``.
    """
    del seed  # contiguous folds involve no randomness
    s, t = _as_fit_data(scores, y)
    names = list(dict.fromkeys(candidates))
    if not names:
        raise CalibrationError("select_calibrator needs at least one candidate, e.g. 'platt'")
    for name in names:
        _new(name)
    if n_splits < 2:
        raise CalibrationError(f"n_splits must be at least 2, got {n_splits}")
    n, won = t.size, int(t.sum())
    rows: list[list[Any]] = []
    for name in names:
        oof = np.full(n, np.nan)
        for test in np.array_split(np.arange(n), n_splits):
            train = np.ones(n, dtype=bool)
            train[test] = False
            if test.size and 0 < t[train].sum() < train.sum():  # skip folds lacking a class
                oof[test] = _new(name).fit(s[train], t[train]).predict(s[test])
        ok = ~np.isnan(oof)
        metrics = (log_loss, brier_score, expected_calibration_error)
        rows.append([name, *(m(t[ok], oof[ok]) if ok.any() else np.nan for m in metrics)])
    table = pd.DataFrame(rows, columns=["candidate", "log_loss", "brier", "ece"])
    table["chosen"], table["note"] = False, ""
    ranked = table.dropna(subset=["log_loss"]).sort_values(
        ["log_loss", "brier", "ece"], kind="stable"
    )
    if (n < SMALL_ROWS or min(won, n - won) < SMALL_CLASS) and "platt" in names:
        winner = "platt"
        note = (
            f"small calibration set ({n} deals, {won} won, {n - won} lost): platt chosen for "
            "its fewest parameters; cross-validated scores are for information"
        )
    elif ranked.empty:
        winner, note = names[0], "no fold had both outcomes to train on: first candidate kept"
    else:
        winner = str(ranked["candidate"].iloc[0])
        note = f"lowest cross-validated log loss ({n_splits} contiguous folds)"
    chosen = table["candidate"] == winner
    table.loc[chosen, "chosen"], table.loc[chosen, "note"] = True, note
    return _new(winner).fit(s, t), table

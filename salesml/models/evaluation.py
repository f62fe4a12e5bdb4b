"""Evaluation of win probabilities: ranking, calibration and the reliability plot.

Binning follows scikit-learn's ``calibration_curve``: ``"uniform"`` bins split ``[0, 1]`` into
``n_bins`` equal widths; ``"quantile"`` (the default) puts the edges at quantiles of the
predictions, so bins hold about the same number of deals (ties can leave some bins empty). A
prediction equal to an inner edge falls in the lower bin. Empty bins are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.typing import ArrayLike

from salesml.errors import SalesmlError

FloatArray = npt.NDArray[np.float64]
Strategy = Literal["quantile", "uniform"]
LOG_LOSS_EPS = 1e-15  # log loss clips probabilities to [eps, 1 - eps] so it stays finite
WILSON_Z = 1.959963984540054  # two-sided 95 % normal quantile


class MetricsInputError(SalesmlError):
    """Outcomes or predictions cannot be evaluated; the message says how to fix them."""


def _check(y: ArrayLike, p: ArrayLike) -> tuple[FloatArray, FloatArray]:
    labels, probs = np.asarray(y).reshape(-1), np.asarray(p, dtype=np.float64).reshape(-1)
    if labels.size != probs.size:
        raise MetricsInputError(
            f"y and p must have the same length; got {labels.size} outcomes and "
            f"{probs.size} predictions"
        )
    if labels.size == 0:
        raise MetricsInputError("metrics need at least one deal; got 0")
    if not np.isin(labels, [0, 1]).all():
        raise MetricsInputError("y must be 1 (won) or 0 (lost); map the outcome to 0/1 first")
    if not (np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()):
        raise MetricsInputError(
            "p must be probabilities in [0, 1] without NaN; pass calibrated probabilities, "
            "not raw scores"
        )
    return labels.astype(np.float64), probs


def _bin_ids(p: FloatArray, n_bins: int, strategy: Strategy) -> npt.NDArray[np.intp]:
    if n_bins < 1:
        raise MetricsInputError(f"n_bins must be a positive number of bins, got {n_bins}")
    if strategy == "quantile":
        edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, n_bins + 1)
    else:
        raise MetricsInputError(f"strategy must be 'quantile' or 'uniform', got {strategy!r}")
    return np.searchsorted(edges[1:-1], p)


def reliability_curve(
    y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: Strategy = "quantile"
) -> pd.DataFrame:
    """Observed win rate against mean prediction, per bin, with a Wilson 95 % interval.

    Args:
        y: Outcomes, 1 = won, 0 = lost.
        p: Predicted win probabilities.
        n_bins: Number of bins.
        strategy: ``"quantile"`` (equal-mass bins) or ``"uniform"`` (equal-width bins).

    Returns:
        One row per non-empty bin: ``bin`` (its index), ``count``, ``mean_predicted``,
        ``observed_rate``, and ``lower``/``upper``, the Wilson score interval of the rate.
    """
    t, q = _check(y, p)
    ids = _bin_ids(q, n_bins, strategy)
    count = np.bincount(ids, minlength=n_bins).astype(np.float64)
    keep = count > 0
    n = count[keep]
    rate = np.bincount(ids, weights=t, minlength=n_bins)[keep] / n
    z2 = WILSON_Z**2
    centre = (rate + z2 / (2 * n)) / (1 + z2 / n)
    half = WILSON_Z / (1 + z2 / n) * np.sqrt(rate * (1 - rate) / n + z2 / (4 * n**2))
    return pd.DataFrame(
        {
            "bin": np.flatnonzero(keep),
            "count": n.astype(np.int64),
            "mean_predicted": np.bincount(ids, weights=q, minlength=n_bins)[keep] / n,
            "observed_rate": rate,
            "lower": np.maximum(centre - half, 0.0),
            "upper": np.minimum(centre + half, 1.0),
        }
    )


def expected_calibration_error(
    y: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: Strategy = "quantile"
) -> float:
    """Expected calibration error: ``sum over bins b of (n_b / n) * |rate_b - mean_p_b|``.

    ``rate_b`` is the observed win rate and ``mean_p_b`` the mean prediction of the ``n_b``
    deals in bin ``b`` (binning as described in the module docstring; equal-mass by default).
    0 is perfect; with finite data even true probabilities score a little above 0.

    Args:
        y: Outcomes, 1 = won, 0 = lost.
        p: Predicted win probabilities.
        n_bins: Number of bins.
        strategy: ``"quantile"`` (equal-mass bins) or ``"uniform"`` (equal-width bins).
    """
    curve = reliability_curve(y, p, n_bins, strategy)
    gap = (curve["observed_rate"] - curve["mean_predicted"]).abs()
    return float((curve["count"] * gap).sum() / curve["count"].sum())


def ece_floor(p: ArrayLike, draws: int = 200, seed: int = 0) -> float:
    """The median ECE a perfectly calibrated model with predictions ``p`` scores on
    ``len(p)`` deals: outcomes drawn from ``p`` itself (``draws`` times, seeded).

    ECE's bins hold few deals each, so their observed rates are noisy and even true
    probabilities score above 0; an ECE near this floor cannot be told from perfect
    calibration at this sample size (10 bins of 150 deals: about 0.03 around p = 0.5)."""
    _, q = _check(np.zeros(np.size(p)), p)
    rng = np.random.default_rng(seed)
    found = [expected_calibration_error(rng.random(q.size) < q, q) for _ in range(draws)]
    return float(np.median(found))


def ece_against_truth(
    truth: ArrayLike, p: ArrayLike, n_bins: int = 10, strategy: Strategy = "quantile"
) -> float:
    """ECE with the deals' true win probabilities in place of their outcomes (same bins as
    :func:`expected_calibration_error`): the calibration error itself, without the sampling
    noise of the outcomes, where the truth is known (generated histories)."""
    _, q = _check(np.zeros(np.size(p)), p)
    _, true_p = _check(np.zeros(np.size(truth)), truth)
    ids = _bin_ids(q, n_bins, strategy)
    count = np.bincount(ids, minlength=n_bins).astype(np.float64)
    gap = np.abs(
        np.bincount(ids, weights=true_p, minlength=n_bins)
        - np.bincount(ids, weights=q, minlength=n_bins)
    )
    return float(gap.sum() / count.sum())


def brier_score(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared difference between prediction and outcome (0 is perfect)."""
    t, q = _check(y, p)
    return float(np.mean((q - t) ** 2))


def log_loss(y: ArrayLike, p: ArrayLike) -> float:
    """Mean negative log-likelihood, with ``p`` clipped to ``[1e-15, 1 - 1e-15]``."""
    t, q = _check(y, p)
    q = np.clip(q, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return float(-np.mean(t * np.log(q) + (1 - t) * np.log1p(-q)))


def binary_metrics(y: ArrayLike, p: ArrayLike) -> dict[str, float | None]:
    """The standard scorecard of a win-probability model.

    Args:
        y: Outcomes, 1 = won, 0 = lost.
        p: Predicted win probabilities.

    Returns:
        Exactly the keys ``auc`` (ROC AUC), ``pr_auc`` (average precision), ``brier``,
        ``log_loss`` and ``ece`` (10 equal-mass bins). ``auc`` and ``pr_auc`` are ``None``
        when only one outcome occurs, since ranking is then undefined.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    t, q = _check(y, p)
    both = 0 < t.sum() < t.size
    return {
        "auc": float(roc_auc_score(t, q)) if both else None,
        "pr_auc": float(average_precision_score(t, q)) if both else None,
        "brier": brier_score(t, q),
        "log_loss": log_loss(t, q),
        "ece": expected_calibration_error(t, q),
    }


def plot_reliability(
    curves: Mapping[str, pd.DataFrame],
    path: Path,
    title: str,
    predictions: Mapping[str, ArrayLike] | None = None,
) -> Path:
    """Draw reliability curves of several models (or baselines) into one PNG.

    The top panel has the diagonal of perfect calibration and one line per curve, its markers
    sized by the bin's deal count and whiskers at the Wilson interval. The panel underneath is
    the distribution of predictions: a histogram of ``predictions[name]`` when given, otherwise
    the bin counts placed at each bin's mean prediction. Uses the Agg canvas directly, so no
    global matplotlib state (backend, pyplot figures) is touched.

    Args:
        curves: Model name to :func:`reliability_curve` output.
        path: Where to write the PNG; parent folders are created.
        title: The figure title.
        predictions: Optional model name to its raw predicted probabilities.

    Returns:
        ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise MetricsInputError("plot_reliability needs at least one curve to draw")
    fig = Figure(figsize=(6.4, 7.2), layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect")
    largest = max((float(c["count"].max()) for c in curves.values() if len(c)), default=1.0)
    edges = np.linspace(0.0, 1.0, 21)
    for name, curve in curves.items():
        x, rate = curve["mean_predicted"].to_numpy(), curve["observed_rate"].to_numpy()
        (line,) = top.plot(x, rate, linewidth=1.5, label=name)
        whiskers = np.vstack([rate - curve["lower"].to_numpy(), curve["upper"].to_numpy() - rate])
        # A rate of exactly 0 or 1 puts the Wilson bound a rounding error past it.
        whiskers = np.clip(whiskers, 0.0, None)
        top.errorbar(x, rate, yerr=whiskers, fmt="none", ecolor=line.get_color(), alpha=0.5)
        sizes = 20 + 180 * curve["count"].to_numpy() / largest
        top.scatter(x, rate, s=sizes, color=line.get_color(), alpha=0.8, edgecolors="white")
        if predictions is not None and name in predictions:
            values, weights = np.asarray(predictions[name], dtype=np.float64).reshape(-1), None
        else:
            values, weights = x, curve["count"].to_numpy()
        bottom.hist(values, bins=edges, weights=weights, histtype="step", color=line.get_color())
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed win rate", title=title)
    top.legend(loc="upper left")
    bottom.set(xlabel="predicted win probability", ylabel="deals")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def baselines_not_beaten(metrics: Mapping[str, Any]) -> list[str] | None:
    """The baselines a win model does not beat, from the metrics its training run logged.

    The model (``holdout_log_loss``, ``holdout_brier``) beats a baseline
    (``baseline_<name>_log_loss``, ``baseline_<name>_brier``) when it is lower on both, as
    ``training.win`` decides at training time; a figure the baseline lacks counts as beaten.
    Names in the order logged; ``None`` when the model's own figures are missing.
    """

    def value(name: str) -> float | None:
        found = metrics.get(name)
        if found is None:
            return None
        number = float(found)
        return None if math.isnan(number) else number

    log_loss, brier = value("holdout_log_loss"), value("holdout_brier")
    if log_loss is None or brier is None:
        return None
    mine = (log_loss, brier)
    names = [
        key.removeprefix("baseline_").removesuffix(suffix)
        for key in metrics
        for suffix in ("_log_loss", "_brier")
        if key.startswith("baseline_") and key.endswith(suffix)
    ]
    lost = []
    for name in dict.fromkeys(names):
        theirs = (value(f"baseline_{name}_log_loss"), value(f"baseline_{name}_brier"))
        if not all(
            m < (t if t is not None else math.inf) for m, t in zip(mine, theirs, strict=True)
        ):
            lost.append(name)
    return lost

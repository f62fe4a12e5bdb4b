"""Interval widths from a forecaster's own rolling-origin backtest errors: one rule for the blend
and for every standard forecaster served in its place.

The errors are log errors ``log((actual + c) / (forecast + c))``, one per (origin, step ahead).
A handful of origins gives a handful of errors per step: too few for a per-step quantile (the
95 % quantile of 16 errors is their maximum, so the 80 % and 95 % bounds of the far steps
nearly coincided), and nothing at all past the backtested steps. So the widths are
**normalised split-conformal**:

1. the error's scale grows with the step ahead as noise + drift, ``s(k)² = a + b·k`` (step
   ``k`` 1-based, ``a, b ≥ 0``), fitted by least squares to each step's squared mean absolute
   error (a mean of absolute errors: one wild origin moves it less than a mean of squares);
2. every error is divided by its step's scale and the standardised errors of **all** steps are
   pooled: one quantile is read from all of them, with the finite-sample ``(n + 1) / n``
   correction (the maximum when that level passes 1);
3. the half-width at step ``k`` is that quantile × ``s(k)`` — so past the backtested steps the
   table extends along the same ``a + b·k`` (``widened`` in the bundle refits it exactly);
4. the 95 % half-width is at least ``Z_RATIO`` × the 80 % one, the ratio of a normal error's
   quantiles: with few errors the empirical 95 % quantile is only their maximum, which says
   nothing about the tail beyond it.

The interval is centred on the forecast (log error 0): a biased forecaster gets a wider
interval rather than one beside its own point.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

LEVELS = {"lower_95": 0.025, "lower_80": 0.1, "upper_80": 0.9, "upper_95": 0.975}
# A normal error's 97.5 % ÷ 90 % quantile (1.53): the least the 95 % bound exceeds the 80 % one.
Z_RATIO = float(norm.ppf(0.975) / norm.ppf(0.9))


def noise_and_drift(squares: np.ndarray, k: np.ndarray | None = None) -> tuple[float, float]:
    """Non-negative least squares of ``squares ≈ a + b·k`` (``k`` defaults to 1 … n), in
    closed form."""
    squares = np.asarray(squares, dtype=float)
    k = np.arange(1, len(squares) + 1, dtype=float) if k is None else np.asarray(k, float)
    if len(squares) < 2:
        return 0.0, float(squares[0] / k[0]) if len(squares) else 0.0
    b, a = np.polyfit(k, squares, 1)
    if b < 0:
        return float(squares.mean()), 0.0
    if a < 0:
        return 0.0, float((k * squares).sum() / (k * k).sum())
    return float(a), float(b)


def step_scales(err: np.ndarray, step: np.ndarray, steps: int) -> np.ndarray:
    """``s(k) = √(a + b·k)`` for k = 1 … ``steps``, fitted to the squared mean absolute error
    of each step that has errors (0-based ``step``; k = step + 1)."""
    seen = np.unique(step)
    if len(seen) == 0:
        return np.zeros(steps)
    squares = np.array([float(np.mean(np.abs(err[step == s]))) ** 2 for s in seen])
    a, b = noise_and_drift(squares, seen + 1.0)
    grid = np.arange(1, steps + 1, dtype=float)
    return np.sqrt(np.maximum(a + b * grid, 0.0))


def conformal_quantile(values: np.ndarray, coverage: float) -> float:
    """The split-conformal ``coverage`` quantile of ``values`` (non-negative scores)."""
    n = len(values)
    if n == 0:
        return 0.0
    level = min(coverage * (n + 1) / n, 1.0)
    return float(np.quantile(values, level))


def step_widths(err: np.ndarray, step: np.ndarray, steps: int) -> list[dict[str, float]]:
    """Per step ahead (0 … ``steps`` − 1): the log bounds of the 80 % and 95 % intervals from
    log errors ``err`` at 0-based steps ``step`` (see the module's rule)."""
    err = np.asarray(err, dtype=float)
    step = np.asarray(step, dtype=int)
    keep = np.isfinite(err)
    err, step = err[keep], step[keep]
    zero = dict.fromkeys(LEVELS, 0.0)
    if len(err) == 0:
        return [dict(zero) for _ in range(steps)]
    width = max(steps, int(step.max()) + 1)
    scales = step_scales(err, step, width)
    scale_of = scales[np.clip(step, 0, width - 1)]
    ok = scale_of > 0
    if not ok.any():
        return [dict(zero) for _ in range(steps)]
    standard = np.abs(err[ok]) / scale_of[ok]
    q80 = conformal_quantile(standard, 0.8)
    q95 = max(conformal_quantile(standard, 0.95), Z_RATIO * q80)
    table = []
    for s in range(steps):
        half80, half95 = float(q80 * scales[s]), float(q95 * scales[s])
        table.append(
            {"lower_95": -half95, "lower_80": -half80, "upper_80": half80, "upper_95": half95}
        )
    return table

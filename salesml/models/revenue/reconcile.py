"""Coherent hierarchies: segment forecasts that add up to the total forecast, to the cent.

For each period the total forecast ``T`` is kept and the segment forecasts ``s_i`` (one
dimension: team, region or product) are adjusted to ``r_i`` with ``sum r_i = T``:

- ``"wls"`` (default, "WLS-var" / MinT with a diagonal covariance and the top level fixed):
  minimise ``sum (r_i - s_i)^2 / v_i`` subject to ``sum r_i = T`` and ``r_i >= 0`` (when
  ``T >= 0``). The solution is ``r_i = max(0, s_i + v_i * lam)`` with one ``lam`` found
  exactly (the active set is a prefix of the segments sorted by ``-s_i / v_i``). ``v_i`` is the
  segment's forecast variance read off its 80 % interval, ``((upper_80 - lower_80) / 2z)^2``,
  or ``max(s_i, 0)`` without intervals, which makes the adjustment proportional. Uncertain
  segments absorb more of the gap; a segment with a zero-width interval (e.g. a flat all-zero
  history) keeps its forecast.
- ``"proportional"``: ``r_i = T * max(s_i, 0) / sum max(s_j, 0)``; equal shares when every
  segment forecast is zero or negative.

Negative segment forecasts count as 0 under a non-negative total. A negative total (refunds)
drops the ``r_i >= 0`` constraint. Amounts are then rounded to cents with the largest-remainder
method: the total is rounded to cents ``C``, every segment is floored to cents and the ``C -
sum floor`` leftover cents go to the segments with the largest fractional cents, so the cents
add up exactly. Intervals are not summed: each segment's bounds move with its point, shifted
by ``r_i - s_i`` (``"wls"``) or scaled by ``r_i / s_i`` (``"proportional"``, shifted when
``s_i <= 0``), clipped at 0 and kept around the point, and rounded to cents.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from numpy.typing import ArrayLike

from salesml.errors import ConfigError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Method = Literal["wls", "proportional"]
METHODS: tuple[str, ...] = ("wls", "proportional")
Z80 = 1.2815515655446004
BOUNDS: tuple[str, ...] = ("lower_80", "upper_80", "lower_95", "upper_95")


def to_cents(values: ArrayLike) -> IntArray:
    """Amounts as whole cents (round half to even)."""
    return np.rint(np.asarray(values, dtype=np.float64) * 100.0).astype(np.int64)


def allocate_cents(total_cents: int, targets: ArrayLike, nonneg: bool = True) -> IntArray:
    """Whole cents per segment, close to ``targets`` (in cents), that sum to ``total_cents``.

    Largest remainder: floor every target, then hand the leftover cents one by one to the
    largest fractional parts (or take surplus cents from the smallest, never below 0 when
    ``nonneg``).
    """
    t = np.asarray(targets, dtype=np.float64).reshape(-1)
    n = t.size
    if n == 0:
        if total_cents != 0:
            raise ConfigError("cannot allocate a non-zero total to no segments")
        return np.zeros(0, dtype=np.int64)
    base = np.floor(t).astype(np.int64)
    frac = t - base
    left = int(total_cents - int(base.sum()))
    if left > 0:
        order = np.argsort(-frac, kind="stable")
        full, part = divmod(left, n)
        base += full
        base[order[:part]] += 1
    elif left < 0:
        order = np.argsort(frac, kind="stable")
        need = -left
        while need > 0:
            for i in order:
                if need == 0:
                    break
                if nonneg and base[i] <= 0:
                    continue
                base[i] -= 1
                need -= 1
            else:
                if need > 0 and nonneg and not (base > 0).any():
                    raise ConfigError("cannot take cents from segments that are all at 0")
    return base


def wls_weights(
    total: float, forecasts: ArrayLike, variances: ArrayLike | None = None
) -> FloatArray:
    """Real-valued WLS-var reconciliation of one period (see the module docstring)."""
    s = np.asarray(forecasts, dtype=np.float64).reshape(-1)
    n = s.size
    if n == 0:
        return s
    v = np.maximum(s, 0.0) if variances is None else np.asarray(variances, dtype=np.float64)
    v = np.where(np.isfinite(v) & (v > 0), v, 0.0)
    if v.max(initial=0.0) <= 0:
        v = np.full(n, 1.0)  # nothing to weigh by: share the gap equally
    v = np.maximum(v / float(v.max()), 1e-12)  # only ratios matter; zero: (almost) no move
    if total < 0:
        return np.asarray(s + v * (total - s.sum()) / v.sum(), dtype=np.float64)
    if total == 0:
        return np.zeros(n)
    breaks = -s / v  # segment i is positive once lam > breaks[i]
    order = np.argsort(breaks, kind="stable")
    s_sorted, v_sorted, b_sorted = s[order], v[order], breaks[order]
    s_cum, v_cum = np.cumsum(s_sorted), np.cumsum(v_sorted)
    lam = (total - s_cum[-1]) / v_cum[-1]
    for k in range(1, n + 1):
        cand = (total - s_cum[k - 1]) / v_cum[k - 1]
        upper = b_sorted[k] if k < n else np.inf
        if b_sorted[k - 1] < cand <= upper:
            lam = cand
            break
    return np.asarray(np.maximum(s + v * lam, 0.0), dtype=np.float64)


def proportional_weights(total: float, forecasts: ArrayLike) -> FloatArray:
    """``T * max(s_i, 0) / sum max(s, 0)``; equal shares when no segment is positive."""
    s = np.maximum(np.asarray(forecasts, dtype=np.float64).reshape(-1), 0.0)
    if s.size == 0:
        return s
    if s.sum() <= 0:
        return np.full(s.size, total / s.size)
    return np.asarray(total * s / s.sum(), dtype=np.float64)


def reconcile_period(
    total: float,
    forecasts: ArrayLike,
    variances: ArrayLike | None = None,
    method: str = "wls",
) -> IntArray:
    """Reconciled segment forecasts of one period, in whole cents summing to round(total)."""
    if method not in METHODS:
        raise ConfigError(f"unknown reconciliation {method!r}; use one of {', '.join(METHODS)}")
    total_c = int(to_cents(total))
    total_r = total_c / 100.0
    if method == "wls":
        real = wls_weights(total_r, forecasts, variances)
    else:
        real = proportional_weights(total_r, forecasts)
    return allocate_cents(total_c, real * 100.0, nonneg=total_c >= 0)


def reconcile(total: pd.DataFrame, segments: pd.DataFrame, method: str = "wls") -> pd.DataFrame:
    """Segment forecast rows adjusted so that, per period, they add up to the total's forecast.

    Args:
        total: rows with period_start and forecast (one row per period; the total forecast).
        segments: rows with period_start, segment, forecast and, optionally, lower_80,
            upper_80, lower_95, upper_95.
        method: ``"wls"`` or ``"proportional"``.

    Returns:
        ``segments`` with forecast (and bounds) reconciled and rounded to cents, plus
        ``base_forecast`` (the forecast before reconciliation). For every period,
        ``to_cents(forecast).sum() == to_cents(total forecast)``. Periods without segment rows
        are left out; a period in ``segments`` missing from ``total`` raises ``ConfigError``.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown reconciliation {method!r}; use one of {', '.join(METHODS)}")
    sums = total.groupby("period_start")["forecast"].sum()
    totals = {pd.Timestamp(str(k)): float(v) for k, v in sums.items()}
    has_bounds = all(b in segments.columns for b in BOUNDS)
    out = segments.copy().reset_index(drop=True)
    out["base_forecast"] = out["forecast"].astype("float64")
    new_point = np.zeros(len(out))
    for period, idx in out.groupby("period_start", sort=True).indices.items():
        key = pd.Timestamp(str(period))
        if key not in totals:
            raise ConfigError(f"no total forecast for period {period}; forecast the total first")
        s = out["base_forecast"].to_numpy(dtype=np.float64)[idx]
        variances = None
        if has_bounds and method == "wls":
            width = (out["upper_80"].to_numpy(dtype=np.float64) - out["lower_80"].to_numpy())[idx]
            variances = (np.maximum(width, 0.0) / (2 * Z80)) ** 2
        cents = reconcile_period(totals[key], s, variances, method)
        new_point[idx] = cents / 100.0
    base = out["base_forecast"].to_numpy(dtype=np.float64)
    out["forecast"] = new_point
    if has_bounds:
        scale = np.where(base > 0, new_point / np.where(base > 0, base, 1.0), 1.0)
        shift = new_point - base
        for col in BOUNDS:
            b = out[col].to_numpy(dtype=np.float64)
            moved = b * scale if method == "proportional" else b + shift
            if method == "proportional":
                moved = np.where(base > 0, moved, b + shift)
            if col.startswith("lower"):
                moved = np.minimum(np.maximum(moved, 0.0), new_point)
                if (new_point < 0).any():
                    moved = np.where(new_point < 0, np.minimum(b + shift, new_point), moved)
            else:
                moved = np.maximum(moved, new_point)
            out[col] = to_cents(moved) / 100.0
    return out

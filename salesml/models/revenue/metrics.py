"""Forecast accuracy: WAPE, MASE and interval coverage, with defined edge cases.

All three take array-likes of equal length and raise ``ForecastMetricsError`` on mismatched
lengths or NaN. Empty input gives NaN (nothing to score). A zero denominator gives NaN when the
numerator is also 0 (a forecast of nothing for nothing: undefined, shown as "—", never as a
perfect 0.000) and ``inf`` otherwise.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.typing import ArrayLike

from salesml.errors import SalesmlError

FloatArray = npt.NDArray[np.float64]


class ForecastMetricsError(SalesmlError, ValueError):
    """Actuals and forecasts cannot be compared; the message says why."""


def _vec(name: str, values: ArrayLike) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if np.isnan(arr).any():
        raise ForecastMetricsError(f"{name} contains NaN; drop or fill those periods first")
    return arr


def _same(**arrays: FloatArray) -> None:
    sizes = {k: v.size for k, v in arrays.items()}
    if len(set(sizes.values())) > 1:
        shown = ", ".join(f"{k}={n}" for k, n in sizes.items())
        raise ForecastMetricsError(f"inputs must have the same length; got {shown}")


def _ratio(num: float, den: float) -> float:
    if den == 0:
        return float("nan") if num == 0 else float("inf")
    return num / den


def wape(actual: ArrayLike, forecast: ArrayLike) -> float:
    """Weighted absolute percentage error: ``sum |a - f| / sum |a|``.

    0 is perfect; 1 is as bad as forecasting 0 everywhere. Empty: NaN. All actuals 0: NaN if
    the forecast is 0 too (undefined), else ``inf``.
    """
    a, f = _vec("actual", actual), _vec("forecast", forecast)
    _same(actual=a, forecast=f)
    if a.size == 0:
        return float("nan")
    return _ratio(float(np.abs(a - f).sum()), float(np.abs(a).sum()))


def mase(actual: ArrayLike, forecast: ArrayLike, train_history: ArrayLike, season: int) -> float:
    """Mean absolute scaled error: the forecast's MAE over the in-sample MAE of seasonal naive.

    The scale is ``mean |y_t - y_{t-season}|`` over ``train_history``; with ``season`` or fewer
    training values it uses lag 1 (naive). Fewer than 2 training values or empty actuals: NaN.
    A zero scale gives NaN for a perfect forecast (undefined) and ``inf`` otherwise.
    """
    if season < 1:
        raise ForecastMetricsError(f"season must be >= 1, got {season}")
    a, f = _vec("actual", actual), _vec("forecast", forecast)
    y = _vec("train_history", train_history)
    _same(actual=a, forecast=f)
    if a.size == 0 or y.size < 2:
        return float("nan")
    lag = season if y.size > season else 1
    scale = float(np.mean(np.abs(y[lag:] - y[:-lag])))
    return _ratio(float(np.mean(np.abs(a - f))), scale)


def coverage(actual: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of actuals inside their interval, bounds included. Empty input, or intervals
    that are all a single point equal to their actual (nothing was uncertain, so nothing was
    tested): NaN."""
    a, lo, hi = _vec("actual", actual), _vec("lower", lower), _vec("upper", upper)
    _same(actual=a, lower=lo, upper=hi)
    if a.size == 0:
        return float("nan")
    if np.any(lo > hi):
        raise ForecastMetricsError("some lower bounds exceed their upper bounds")
    if np.all(lo == hi) and np.all(a == lo):
        return float("nan")
    return float(np.mean((a >= lo) & (a <= hi)))

"""Per-series revenue forecasts: a tuned Prophet component with flagged baseline fallbacks.

``fit_series`` fits one series (won revenue per period, indexed by period start) and never
raises for a bad series: too little history, a flat or all-zero series, missing values, a
solver error or non-finite output all give a *baseline* model (seasonal naive, or the mean of
the last year) whose ``fallback_reason`` says why. ``SeriesModel.predict(h)`` gives the point
forecast with 80 % and 95 % intervals for the next ``h`` periods; ``to_json``/``from_json``
store a model as JSON (Prophet's own ``model_to_json`` inside, never a pickle) and a round
trip predicts exactly the same numbers.

How the Prophet component is tuned for revenue (docs/forecast-timeseries.md):

- log scale: ``log(y + c)`` with ``c`` = 1 % of the mean, so growth is multiplicative
  (compounding) and seasonal swings scale with the level; series with more than 10 % zero
  periods stay on the raw scale (additive), forecasts clipped at 0;
- a warm-up trim: an export's first periods hold only deals created after it starts, so a
  short leading run far below the typical level is left out of the fit;
- trend: linear on the log scale with few, strongly regularised changepoints;
- seasonality: Prophet's weekly/daily terms are off (periods are weeks or longer); yearly
  Fourier terms once the history covers two years; a quarter-end regressor (the share of the
  period's days in the last month of a quarter) carries the B2B quarter-end push from the
  first year on;
- intervals: Prophet's sampling is off (``uncertainty_samples = 0``, a MAP fit); intervals
  come from the in-sample residuals on the model scale, corrected for the fitted degrees of
  freedom and widened with the horizon, by the calibration factor ``interval_scale``.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from salesml.models.revenue.periods import (
    check_freq,
    period_range,
    season_length,
)

if TYPE_CHECKING:
    from prophet import Prophet

FloatArray = npt.NDArray[np.float64]
Method = Literal["prophet", "prophet_default", "seasonal_naive", "naive", "mean", "flat"]

MODEL_FORMAT = "salesml.models.revenue.series_model/1"
Z80 = 1.2815515655446004  # two-sided 80 % normal quantile
Z95 = 1.959963984540054  # two-sided 95 % normal quantile
# Fewest periods the Prophet component will fit; shorter series get the baseline.
MIN_PERIODS: dict[str, int] = {"week": 26, "month": 12, "quarter": 8}
# Most leading periods the warm-up trim may drop.
MAX_WARMUP: dict[str, int] = {"week": 26, "month": 6, "quarter": 2}
# Yearly Fourier order per period: at most (periods per year - 1) / 2 distinct terms.
YEARLY_ORDER: dict[str, int] = {"week": 6, "month": 4, "quarter": 1}
_LOGGERS = ("cmdstanpy", "prophet", "prophet.plot", "prophet.models", "prophet.forecaster")
FORECAST_COLUMNS: tuple[str, ...] = ("forecast", "lower_80", "upper_80", "lower_95", "upper_95")


@dataclass(frozen=True)
class ProphetSettings:
    """Knobs of the tuned Prophet component; the defaults were chosen on synthetic backtests."""

    transform: Literal["auto", "log", "none"] = "auto"
    max_zero_share_for_log: float = 0.10
    log_offset_share: float = 0.01
    yearly_min_years: float = 1.0  # month-of-year terms from this much history on
    yearly_fourier: bool = False  # Prophet's smooth yearly terms instead of/with month terms
    quarter_end: bool = True
    year_end: bool = True  # a December term (fiscal-year-end push) once yearly terms are on
    quarter_end_prior_scale: float = 1.0
    changepoint_prior_scale: float = 0.01
    changepoint_every: int | None = None  # periods per potential changepoint (None: per freq)
    seasonality_prior_scale: float = 0.05
    warmup_share: float = 0.5  # leading periods below this share of the median are warm-up
    interval_scale: float = 1.0  # calibration multiplier on the residual spread
    horizon_growth: float = 1.0  # variance grows as 1 + horizon_growth * k / n
    min_periods: dict[str, int] = field(default_factory=lambda: dict(MIN_PERIODS))


DEFAULT_SETTINGS = ProphetSettings()


@dataclass(frozen=True)
class ForecastResult:
    """A forecast for the ``h`` periods after the history, with 80 % and 95 % intervals."""

    period_start: pd.DatetimeIndex
    forecast: FloatArray
    lower_80: FloatArray
    upper_80: FloatArray
    lower_95: FloatArray
    upper_95: FloatArray
    method: str
    fallback_reason: str | None = None

    @property
    def is_fallback(self) -> bool:
        """True when a baseline stood in for the Prophet component."""
        return self.fallback_reason is not None

    def to_frame(self, segment: str = "total") -> pd.DataFrame:
        """Rows of period_start, segment, forecast, the four bounds, method, fallback_reason."""
        n = len(self.period_start)
        return pd.DataFrame(
            {
                "period_start": self.period_start,
                "segment": [segment] * n,
                "forecast": self.forecast,
                "lower_80": self.lower_80,
                "upper_80": self.upper_80,
                "lower_95": self.lower_95,
                "upper_95": self.upper_95,
                "method": [self.method] * n,
                "fallback_reason": [self.fallback_reason] * n,
            }
        )


@dataclass(frozen=True)
class SeriesModel:
    """A fitted series model (Prophet or a baseline) that predicts the periods after it."""

    freq: str
    method: str
    last_period: pd.Timestamp
    n_train: int
    fallback_reason: str | None = None
    # Prophet: the model as Prophet JSON, the scale it was fitted on and the residual spread.
    prophet_json: str | None = None
    transform: str = "none"
    offset: float = 0.0
    center: float = 0.0
    sigma: float = 0.0
    interval_scale: float = 1.0
    horizon_growth: float = 1.0
    calendar: tuple[str, ...] = ()
    # Baselines: the values they repeat and their absolute residual quantiles.
    baseline_values: tuple[float, ...] = ()
    half_width_80: float = 0.0
    half_width_95: float = 0.0
    step_growth: Literal["season", "step", "mean", "none"] = "none"
    # The fitted Prophet object, kept in memory after fit/load (not part of the JSON).
    live: Any = field(default=None, compare=False, repr=False)

    @property
    def is_fallback(self) -> bool:
        return self.fallback_reason is not None

    @property
    def is_prophet(self) -> bool:
        return self.prophet_json is not None or self.live is not None

    def prophet(self) -> Prophet:
        """The Prophet object (rebuilt from its JSON on first use after loading)."""
        if self.live is None:
            from prophet.serialize import model_from_json

            assert self.prophet_json is not None
            with quiet_prophet():
                object.__setattr__(self, "live", model_from_json(self.prophet_json))
        return self.live  # type: ignore[no-any-return]

    def future_periods(self, h: int) -> pd.DatetimeIndex:
        """Starts of the ``h`` periods after the history."""
        return period_range(self.last_period, h + 1, self.freq)[1:]

    def predict(self, h: int) -> ForecastResult:
        """Point forecast and 80 % / 95 % intervals for the next ``h`` periods."""
        periods = self.future_periods(h)
        if self.is_prophet:
            return _predict_prophet(self, periods)
        return _predict_baseline(self, periods)

    def to_json(self) -> str:
        """The model as a JSON document (Prophet JSON embedded; no pickles)."""
        doc: dict[str, Any] = {
            "format": MODEL_FORMAT,
            "freq": self.freq,
            "method": self.method,
            "last_period": self.last_period.isoformat(),
            "n_train": self.n_train,
            "fallback_reason": self.fallback_reason,
            "prophet": self.prophet_json
            if self.prophet_json is not None or self.live is None
            else _to_json(self.live),
            "transform": self.transform,
            "offset": self.offset,
            "sigma": self.sigma,
            "interval_scale": self.interval_scale,
            "horizon_growth": self.horizon_growth,
            "center": self.center,
            "calendar": list(self.calendar),
            "baseline_values": list(self.baseline_values),
            "half_width_80": self.half_width_80,
            "half_width_95": self.half_width_95,
            "step_growth": self.step_growth,
        }
        return json.dumps(doc)

    @classmethod
    def from_json(cls, text: str) -> SeriesModel:
        """Rebuild a model written by :meth:`to_json`."""
        doc = json.loads(text)
        if doc.get("format") != MODEL_FORMAT:
            raise ValueError(
                f"not a salesml series model (format {doc.get('format')!r}); "
                f"expected {MODEL_FORMAT}"
            )
        return cls(
            freq=check_freq(doc["freq"]),
            method=doc["method"],
            last_period=pd.Timestamp(doc["last_period"]),
            n_train=int(doc["n_train"]),
            fallback_reason=doc["fallback_reason"],
            prophet_json=doc["prophet"],
            transform=doc["transform"],
            offset=float(doc["offset"]),
            sigma=float(doc["sigma"]),
            interval_scale=float(doc["interval_scale"]),
            horizon_growth=float(doc["horizon_growth"]),
            center=float(doc["center"]),
            calendar=tuple(str(c) for c in doc["calendar"]),
            baseline_values=tuple(float(v) for v in doc["baseline_values"]),
            half_width_80=float(doc["half_width_80"]),
            half_width_95=float(doc["half_width_95"]),
            step_growth=doc["step_growth"],
        )


# --------------------------------------------------------------------------- public API


def fit_series(
    series: pd.Series, freq: str, settings: ProphetSettings = DEFAULT_SETTINGS
) -> SeriesModel:
    """Fit the tuned Prophet component to one revenue series; a flagged baseline on failure.

    Args:
        series: revenue per period, indexed by consecutive period starts (as from
            ``won_revenue_series``), oldest first.
        freq: ``"week"``, ``"month"`` or ``"quarter"``.
        settings: tuning knobs (defaults are the tuned ones).

    Never raises for the data: every failure is recorded in ``fallback_reason``.
    """
    freq = check_freq(freq)
    values, index = _clean(series)
    last = _last_period(index, freq)
    n = len(values)
    if n == 0:
        return _baseline(np.zeros(0), last, freq, "no history: the series is empty")
    missing = int(np.isnan(values).sum())
    if missing:
        filled = _fill_missing(values)
        return _baseline(filled, last, freq, f"history has {missing} missing value(s)")
    if np.all(values == values[0]):
        what = (
            "all-zero series" if values[0] == 0 else f"flat series (every period = {values[0]:g})"
        )
        return _flat(values, last, freq, what)
    trimmed = _trim_warmup(values, freq, settings)
    need = settings.min_periods.get(freq, MIN_PERIODS[freq])
    if len(trimmed) < need:
        # The baseline reads the trimmed history too: seasonal naive over an export's
        # warm-up months repeats their zeros a year later (Maven: January 2018 = January
        # 2017 = nothing closed yet), while the recent level is what the data supports.
        return _baseline(
            trimmed,
            last,
            freq,
            f"too little history: {len(trimmed)} {freq}(s) after warm-up, need {need}",
        )
    try:
        model = _fit_prophet(trimmed, index[n - len(trimmed) :], freq, last, settings)
        check = model.predict(max(1, season_length(freq) // 4))
        if not np.all(np.isfinite(np.column_stack(_arrays(check)))):
            raise FloatingPointError("non-finite forecast")
    except Exception as exc:  # a bad segment must not stop the run
        reason = f"prophet failed ({type(exc).__name__}: {_short(exc)})"
        return _baseline(trimmed, last, freq, reason)
    return model


def forecast_series(
    series: pd.Series, h: int, freq: str, settings: ProphetSettings = DEFAULT_SETTINGS
) -> ForecastResult:
    """Fit :func:`fit_series` and predict ``h`` periods."""
    return fit_series(series, freq, settings).predict(h)


def seasonal_naive(series: pd.Series, h: int, freq: str) -> ForecastResult:
    """Seasonal naive: each period repeats the same period one season (year) earlier.

    The season is 52 weeks, 12 months or 4 quarters. Leading zero periods (before anything was
    won) are not history. With less than one season of history it is the naive forecast (the
    last value). Intervals use quantiles of the absolute in-sample
    residuals (``y_t - y_{t-season}``, or ``y_t - y_{t-1}`` for naive), widened by the square
    root of the number of seasons (steps) ahead; lower bounds are clipped at 0.
    """
    freq = check_freq(freq)
    values, index = _clean(series)
    values = _fill_missing(values) if np.isnan(values).any() else values
    last = _last_period(index, freq)
    values = leading_zeros_dropped(values)  # nothing was sold yet: not a season to repeat
    model = _naive_model(values, last, freq, None)
    return model.predict(h)


def default_prophet_forecast(series: pd.Series, h: int, freq: str) -> ForecastResult:
    """Prophet with default settings (the benchmark and backtest peer).

    ``Prophet()`` as shipped: linear growth, automatic seasonalities, 1,000 uncertainty samples.
    The point is Prophet's ``yhat``; the 80 % and 95 % bounds are quantiles of one set of
    predictive samples. Failures fall back like :func:`fit_series` (flagged).
    """
    freq = check_freq(freq)
    values, index = _clean(series)
    last = _last_period(index, freq)
    periods = period_range(last, h + 1, freq)[1:]
    if len(values) < 2 or np.isnan(values).any():
        return _baseline(
            _fill_missing(values), last, freq, "prophet needs 2+ clean values"
        ).predict(h)
    try:
        with quiet_prophet():
            from prophet import Prophet

            m = Prophet()
            m.fit(pd.DataFrame({"ds": index, "y": values}))
            future = pd.DataFrame({"ds": periods})
            samples = m.predictive_samples(future)["yhat"]
            m.uncertainty_samples = 0
            point = m.predict(future)["yhat"].to_numpy(dtype=np.float64)
        q = np.quantile(samples, [0.025, 0.1, 0.9, 0.975], axis=1)
    except Exception as exc:
        reason = f"prophet failed ({type(exc).__name__}: {_short(exc)})"
        return _baseline(values, last, freq, reason).predict(h)
    return ForecastResult(periods, point, q[1], q[2], q[0], q[3], "prophet_default")


@contextmanager
def quiet_prophet() -> Iterator[None]:
    """Silence cmdstanpy's and Prophet's INFO chatter for the duration (levels restored)."""
    from cmdstanpy.utils import get_logger

    get_logger()  # cmdstanpy sets its level on first use: let it do so before we change it
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.disabled))
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


# --------------------------------------------------------------------------- Prophet


def _fit_prophet(
    y: FloatArray,
    index: pd.DatetimeIndex,
    freq: str,
    last: pd.Timestamp,
    settings: ProphetSettings,
) -> SeriesModel:
    n = len(y)
    zero_share = float(np.mean(y <= 0))
    transform = settings.transform
    if transform == "auto":
        log_ok = zero_share <= settings.max_zero_share_for_log and np.all(y >= 0)
        transform = "log" if log_ok else "none"
    offset, center = 0.0, 0.0
    if transform == "log":
        offset = max(settings.log_offset_share * float(np.mean(np.abs(y))), 1e-9)
        target = np.log(np.maximum(y, 0.0) + offset)
        center = float(np.median(target))  # Prophet's priors act on target / max|target|
        target = target - center
    else:
        target = y.astype(np.float64)
    years = n / season_length(freq)
    yearly = years >= settings.yearly_min_years
    calendar = calendar_columns(freq, settings.quarter_end, yearly, settings.year_end and yearly)
    every = settings.changepoint_every or {"week": 13, "month": 4, "quarter": 2}[freq]
    n_changepoints = max(0, min(25, int(0.8 * n) // every))

    with quiet_prophet():
        from prophet import Prophet

        m = Prophet(
            growth="linear",
            n_changepoints=n_changepoints,
            changepoint_prior_scale=settings.changepoint_prior_scale,
            seasonality_prior_scale=settings.seasonality_prior_scale,
            yearly_seasonality=False,
            weekly_seasonality=False,
            daily_seasonality=False,
            uncertainty_samples=0,
        )
        n_params = 2  # level and slope
        if settings.yearly_fourier and years >= settings.yearly_min_years:
            order = YEARLY_ORDER[freq]
            m.add_seasonality(name="yearly", period=365.25, fourier_order=order)
            n_params += 2 * order
        frame = pd.DataFrame({"ds": index, "y": target})
        features = calendar_features(index, freq, calendar)
        for name in calendar:
            prior = (
                settings.quarter_end_prior_scale
                if name in ("quarter_end", "year_end")
                else settings.seasonality_prior_scale
            )
            m.add_regressor(name, prior_scale=prior, standardize=False)
            frame[name] = features[name]
        n_params += len(calendar)
        m.fit(frame)
        fitted = prophet_yhat(m, index, features)
    resid = target - fitted
    if not np.all(np.isfinite(resid)):
        raise FloatingPointError("non-finite in-sample fit")
    dof = max(n - min(n_params, n // 2), 1)
    sigma = float(np.sqrt(np.sum(resid**2) / dof))
    return SeriesModel(
        freq=freq,
        method="prophet",
        last_period=last,
        n_train=n,
        live=m,
        transform=transform,
        offset=offset,
        center=center,
        sigma=sigma,
        interval_scale=settings.interval_scale,
        horizon_growth=settings.horizon_growth,
        calendar=calendar,
    )


def _to_json(m: Prophet) -> str:
    from prophet.serialize import model_to_json

    return str(model_to_json(m))


def _predict_prophet(model: SeriesModel, periods: pd.DatetimeIndex) -> ForecastResult:
    m = model.prophet()
    features = calendar_features(periods, model.freq, model.calendar)
    yhat = prophet_yhat(m, periods, features) + model.center
    steps = np.arange(1, len(periods) + 1, dtype=np.float64)
    spread = (
        model.interval_scale
        * model.sigma
        * np.sqrt(1.0 + model.horizon_growth * steps / max(model.n_train, 1))
    )
    if model.transform == "log":

        def back(z: FloatArray) -> FloatArray:
            return np.maximum(np.exp(z) - model.offset, 0.0)

    else:

        def back(z: FloatArray) -> FloatArray:
            return np.maximum(z, 0.0)

    return ForecastResult(
        period_start=periods,
        forecast=back(yhat),
        lower_80=back(yhat - Z80 * spread),
        upper_80=back(yhat + Z80 * spread),
        lower_95=back(yhat - Z95 * spread),
        upper_95=back(yhat + Z95 * spread),
        method=model.method,
        fallback_reason=model.fallback_reason,
    )


def calendar_columns(
    freq: str, quarter_end: bool, yearly: bool, year_end: bool = False
) -> tuple[str, ...]:
    """Names of the calendar regressors the component uses for ``freq``."""
    cols: list[str] = []
    if quarter_end and freq != "quarter":
        cols.append("quarter_end")
    if year_end:
        cols.append("year_end")
    if yearly:
        if freq == "quarter":
            cols += [f"q{q}" for q in range(1, 5)]
        else:
            cols += [f"m{mo:02d}" for mo in range(1, 13)]
    return tuple(cols)


def calendar_features(
    periods: pd.DatetimeIndex, freq: str, columns: tuple[str, ...]
) -> dict[str, FloatArray]:
    """Calendar regressors of each period: shares of its days in quarter-end months and in
    each month of the year (quarters: quarter-of-year indicators)."""
    out: dict[str, FloatArray] = {}
    if not columns:
        return out
    months = np.zeros((len(periods), 12), dtype=np.float64)
    if freq == "week":
        starts = pd.DatetimeIndex(periods).normalize()
        for offset in range(7):
            mo = np.asarray((starts + pd.Timedelta(days=offset)).month, dtype=np.int64)
            months[np.arange(len(starts)), mo - 1] += 1.0 / 7.0
    elif freq == "month":
        months[np.arange(len(periods)), np.asarray(periods.month, dtype=np.int64) - 1] = 1.0
    else:
        for k in range(3):
            mo = np.asarray(periods.month, dtype=np.int64) + k
            months[np.arange(len(periods)), mo - 1] = 1.0 / 3.0
    for name in columns:
        if name == "quarter_end":
            out[name] = months[:, [2, 5, 8, 11]].sum(axis=1)
        elif name == "year_end":
            out[name] = months[:, 11].copy()
        elif name.startswith("m"):
            out[name] = months[:, int(name[1:]) - 1].copy()
        elif name.startswith("q"):
            q = int(name[1:])
            out[name] = months[:, 3 * (q - 1) : 3 * q].sum(axis=1)
    return out


def prophet_yhat(m: Prophet, ds: pd.DatetimeIndex, features: dict[str, FloatArray]) -> FloatArray:
    """Prophet's point forecast ``yhat`` at ``ds`` (MAP parameters, no sampling).

    For the component's own models (linear trend, additive extra regressors, no built-in
    seasonality or holidays) it is computed directly from the fitted parameters, the same
    formula as ``Prophet.predict`` without its per-component DataFrame bookkeeping, which
    dominates the run time; any other model goes through ``Prophet.predict``.
    """
    simple = (
        not m.seasonalities
        and m.holidays is None
        and m.growth == "linear"
        and not m.logistic_floor
        and all(props["mode"] == "additive" for props in m.extra_regressors.values())
    )
    if not simple:
        frame = pd.DataFrame({"ds": ds, **{k: features[k] for k in m.extra_regressors}})
        with quiet_prophet():
            return np.asarray(m.predict(frame)["yhat"].to_numpy(), dtype=np.float64)
    if m.start is None or m.t_scale is None or m.y_scale is None or m.changepoints_t is None:
        raise ValueError("the Prophet model is not fitted")
    start, t_scale = pd.Timestamp(m.start), pd.Timedelta(m.t_scale)
    t = np.asarray((pd.DatetimeIndex(ds) - start) / t_scale, dtype=np.float64)
    k = float(np.nanmean(m.params["k"]))
    offset = float(np.nanmean(m.params["m"]))
    deltas = np.nanmean(m.params["delta"], axis=0)
    y_scale = float(m.y_scale)
    trend = m.piecewise_linear(t, deltas, k, offset, m.changepoints_t) * y_scale
    yhat = np.asarray(trend, dtype=np.float64)
    if m.extra_regressors:
        beta = np.nanmean(m.params["beta"], axis=0)
        cols = [
            (np.asarray(features[name], dtype=np.float64) - props["mu"]) / props["std"]
            for name, props in m.extra_regressors.items()
        ]
        yhat = yhat + np.column_stack(cols) @ beta * y_scale
    return yhat


def quarter_end_share(periods: pd.DatetimeIndex, freq: str) -> FloatArray:
    """Share of each period's days that fall in the last month of a calendar quarter."""
    if freq == "quarter":
        return np.full(len(periods), 1.0 / 3.0)
    return calendar_features(periods, freq, ("quarter_end",))["quarter_end"]


# --------------------------------------------------------------------------- baselines


def _baseline(values: FloatArray, last: pd.Timestamp, freq: str, reason: str) -> SeriesModel:
    """The flagged fallback: seasonal naive with a season of history, else the recent mean."""
    n = len(values)
    if n == 0:
        return SeriesModel(
            freq, "mean", last, 0, reason, baseline_values=(0.0,), step_growth="mean"
        )
    if np.all(values == values[0]):
        return _flat(values, last, freq, reason)
    season = season_length(freq)
    if n > season:
        return _naive_model(values, last, freq, reason)
    return _mean_model(values, last, freq, reason)


def _flat(values: FloatArray, last: pd.Timestamp, freq: str, reason: str) -> SeriesModel:
    level = float(values[0]) if len(values) else 0.0
    return SeriesModel(
        freq, "flat", last, len(values), reason, baseline_values=(level,), step_growth="none"
    )


def _naive_model(
    values: FloatArray, last: pd.Timestamp, freq: str, reason: str | None
) -> SeriesModel:
    season = season_length(freq)
    n = len(values)
    if n >= season:
        repeat = values[-season:]
        resid = values[season:] - values[:-season]
        method, growth = "seasonal_naive", "season"
    else:
        repeat = values[-1:] if n else np.zeros(1)
        resid = np.diff(values)
        method, growth = "naive", "step"
    if len(resid) == 0:
        scale = abs(float(repeat[-1]))  # nothing to learn the spread from: +-100 %
        hw80, hw95 = Z80 * scale, Z95 * scale
    else:
        hw80, hw95 = (float(v) for v in np.quantile(np.abs(resid), [0.8, 0.95]))
    return SeriesModel(
        freq,
        method,
        last,
        n,
        reason,
        baseline_values=tuple(float(v) for v in repeat),
        half_width_80=hw80,
        half_width_95=hw95,
        step_growth=growth,  # type: ignore[arg-type]
    )


def _mean_model(values: FloatArray, last: pd.Timestamp, freq: str, reason: str) -> SeriesModel:
    recent = values[-season_length(freq) :]
    level = float(np.mean(recent))
    resid = recent - level
    inflate = math.sqrt(1.0 + 1.0 / len(recent))
    if len(recent) < 2:
        hw80, hw95 = Z80 * abs(level), Z95 * abs(level)
    else:
        hw80, hw95 = (float(v) * inflate for v in np.quantile(np.abs(resid), [0.8, 0.95]))
    return SeriesModel(
        freq,
        "mean",
        last,
        len(values),
        reason,
        baseline_values=(level,),
        half_width_80=hw80,
        half_width_95=hw95,
        step_growth="mean",
    )


def _predict_baseline(model: SeriesModel, periods: pd.DatetimeIndex) -> ForecastResult:
    h = len(periods)
    repeat = np.asarray(model.baseline_values, dtype=np.float64)
    step = np.arange(h)
    point = repeat[step % len(repeat)] if len(repeat) else np.zeros(h)
    if model.step_growth == "season":
        widen = np.sqrt(step // len(repeat) + 1.0)
    elif model.step_growth == "step":
        widen = np.sqrt(step + 1.0)
    else:
        widen = np.ones(h)
    hw80, hw95 = model.half_width_80 * widen, model.half_width_95 * widen
    return ForecastResult(
        period_start=periods,
        forecast=point.astype(np.float64),
        lower_80=np.maximum(point - hw80, 0.0),
        upper_80=point + hw80,
        lower_95=np.maximum(point - hw95, 0.0),
        upper_95=point + hw95,
        method=model.method,
        fallback_reason=model.fallback_reason,
    )


# --------------------------------------------------------------------------- helpers


def _clean(series: pd.Series) -> tuple[FloatArray, pd.DatetimeIndex]:
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    index = pd.DatetimeIndex(series.index)
    return values, index


def _last_period(index: pd.DatetimeIndex, freq: str) -> pd.Timestamp:
    if len(index) == 0:
        return pd.Timestamp("1970-01-01")
    return pd.Timestamp(period_range(index[-1], 1, freq)[0])


def _fill_missing(values: FloatArray) -> FloatArray:
    if len(values) == 0 or not np.isnan(values).any():
        return values
    s = pd.Series(values).interpolate(limit_direction="both")
    return np.asarray(s.fillna(0.0).to_numpy(), dtype=np.float64)


def leading_zeros_dropped(values: FloatArray) -> FloatArray:
    """The series from its first non-zero period on (all of it when every period is 0)."""
    nz = np.flatnonzero(values != 0)
    return values[nz[0] :] if len(nz) else values


def _trim_warmup(values: FloatArray, freq: str, settings: ProphetSettings) -> FloatArray:
    """Drop leading zeros and the ramp-up at the start of a CRM history.

    The first periods of an export only hold deals created after it starts, so won revenue
    ramps up for about one sales cycle. Within the first ``MAX_WARMUP`` periods, everything
    up to the last period whose (4-week smoothed, for weeks) value is below ``warmup_share`` x
    the series' median is left out of the fit.
    """
    nz = np.flatnonzero(values != 0)
    if len(nz) == 0:
        return values
    values = values[nz[0] :]
    window = 4 if freq == "week" else 1
    smooth = pd.Series(values).rolling(window, min_periods=1).mean().to_numpy()
    level = float(np.median(smooth))
    if level <= 0:
        return values
    head = smooth[: min(MAX_WARMUP[freq], len(values) // 4)]
    low = np.flatnonzero(head < settings.warmup_share * level)
    return values[low[-1] + 1 :] if len(low) else values


def _arrays(result: ForecastResult) -> list[FloatArray]:
    return [result.forecast, result.lower_80, result.upper_80, result.lower_95, result.upper_95]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:200] if text else "no message"


def with_settings(settings: ProphetSettings, **changes: Any) -> ProphetSettings:
    """A copy of ``settings`` with some fields changed (for tuning and tests)."""
    return replace(settings, **changes)

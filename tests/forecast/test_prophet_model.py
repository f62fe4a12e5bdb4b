"""The Prophet component: JSON round trip, fallbacks, baselines."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest

from salesml.models.revenue import prophet_model as pm
from salesml.models.revenue.periods import period_range
from salesml.models.revenue.prophet_model import (
    ForecastResult,
    SeriesModel,
    default_prophet_forecast,
    fit_series,
    seasonal_naive,
)


def revenue(n: int, freq: str = "month", seed: int = 0) -> pd.Series:
    """Growing revenue with a quarter-end push and noise."""
    rng = np.random.default_rng(seed)
    index = period_range("2022-01-01", n, freq)
    qend = pm.quarter_end_share(index, freq)
    t = np.arange(n) / pm.season_length(freq)
    values = 100_000 * np.exp(0.2 * t) * (1 + 0.8 * qend) * rng.lognormal(0, 0.15, n)
    return pd.Series(values, index=index)


def check_result(result: ForecastResult, h: int) -> None:
    assert len(result.period_start) == h
    for arr in (result.forecast, result.lower_80, result.upper_80, result.lower_95):
        assert arr.shape == (h,)
        assert np.isfinite(arr).all()
    assert (result.lower_95 <= result.lower_80 + 1e-9).all()
    assert (result.lower_80 <= result.forecast + 1e-9).all()
    assert (result.forecast <= result.upper_80 + 1e-9).all()
    assert (result.upper_80 <= result.upper_95 + 1e-9).all()
    assert (result.lower_95 >= 0).all()


def test_prophet_fits_and_json_round_trip_is_identical() -> None:
    series = revenue(36)
    model = fit_series(series, "month")
    assert model.method == "prophet" and not model.is_fallback
    assert "quarter_end" in model.calendar
    result = model.predict(6)
    check_result(result, 6)
    assert list(result.period_start) == list(period_range("2025-01-01", 6, "month"))
    # the quarter-end push is learned: March beats February
    assert result.forecast[2] > 1.3 * result.forecast[1]
    text = model.to_json()
    doc = json.loads(text)
    assert doc["prophet"] is not None and "pickle" not in text
    again = SeriesModel.from_json(text)
    twin = again.predict(6)
    for name in pm.FORECAST_COLUMNS:
        np.testing.assert_array_equal(getattr(result, name), getattr(twin, name))
    assert again.to_json() == text


def test_weekly_series_fits_and_is_quiet(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    model = fit_series(revenue(120, "week", seed=3), "week")
    assert model.method == "prophet"
    check_result(model.predict(13), 13)
    assert not [r for r in caplog.records if r.name.startswith(("cmdstanpy", "prophet"))]
    assert logging.getLogger("cmdstanpy").level != logging.ERROR  # levels restored


def test_too_short_falls_back_flagged() -> None:
    model = fit_series(revenue(8), "month")
    assert model.is_fallback and model.method == "mean"
    assert "too little history" in (model.fallback_reason or "")
    result = model.predict(3)
    assert result.is_fallback and result.fallback_reason == model.fallback_reason
    check_result(result, 3)
    np.testing.assert_allclose(result.forecast, revenue(8).mean())
    # the baseline also survives a JSON round trip
    twin = SeriesModel.from_json(model.to_json()).predict(3)
    np.testing.assert_array_equal(twin.upper_95, result.upper_95)


def test_all_zero_and_flat_fall_back_flagged() -> None:
    index = period_range("2022-01-01", 30, "month")
    zero = fit_series(pd.Series(0.0, index=index), "month")
    assert zero.method == "flat" and zero.fallback_reason == "all-zero series"
    result = zero.predict(4)
    assert (result.forecast == 0).all() and (result.upper_95 == 0).all()
    flat = fit_series(pd.Series(5.0, index=index), "month")
    assert flat.is_fallback and "flat series" in (flat.fallback_reason or "")
    assert (flat.predict(2).forecast == 5.0).all()
    empty = fit_series(pd.Series([], dtype=float, index=pd.DatetimeIndex([])), "month")
    assert empty.is_fallback and "empty" in (empty.fallback_reason or "")


def test_missing_values_fall_back_flagged() -> None:
    series = revenue(30)
    series.iloc[5] = np.nan
    model = fit_series(series, "month")
    assert model.is_fallback and "missing" in (model.fallback_reason or "")
    assert model.method == "seasonal_naive"
    check_result(model.predict(3), 3)


def test_solver_error_falls_back_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    from prophet import Prophet

    def boom(self: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("Error during optimization! (forced)")

    monkeypatch.setattr(Prophet, "fit", boom)
    model = fit_series(revenue(36), "month")
    assert model.is_fallback and model.method == "seasonal_naive"
    assert "RuntimeError" in (model.fallback_reason or "")
    assert "forced" in (model.fallback_reason or "")
    check_result(model.predict(3), 3)
    peer = default_prophet_forecast(revenue(36), 3, "month")
    assert peer.is_fallback and "RuntimeError" in (peer.fallback_reason or "")


def test_non_finite_prophet_output_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    real = pm._predict_prophet

    def nan_predict(model: SeriesModel, periods: pd.DatetimeIndex) -> ForecastResult:
        out = real(model, periods)
        out.forecast[:] = np.nan
        return out

    monkeypatch.setattr(pm, "_predict_prophet", nan_predict)
    model = fit_series(revenue(36), "month")
    assert model.is_fallback and "non-finite" in (model.fallback_reason or "")


def test_seasonal_naive_repeats_last_season() -> None:
    index = period_range("2023-01-01", 16, "quarter")
    values = np.arange(16, dtype=float) * 10 + np.tile([0.0, 5.0, 1.0, 20.0], 4)
    result = seasonal_naive(pd.Series(values, index=index), 6, "quarter")
    assert result.method == "seasonal_naive" and not result.is_fallback
    np.testing.assert_array_equal(result.forecast, np.r_[values[-4:], values[-4:-2]])
    # residuals y_t - y_{t-4} are all 40: intervals +-40, wider by sqrt(2) in the 2nd season
    np.testing.assert_allclose(result.upper_80[:4] - result.forecast[:4], 40.0)
    np.testing.assert_allclose(result.upper_80[4:] - result.forecast[4:], 40.0 * np.sqrt(2))
    assert result.period_start[0] == pd.Timestamp("2027-01-01")


def test_seasonal_naive_short_history_is_naive() -> None:
    index = period_range("2025-01-06", 10, "week")
    values = np.array([1.0, 3, 2, 5, 4, 6, 5, 8, 7, 9])
    result = seasonal_naive(pd.Series(values, index=index), 3, "week")
    assert result.method == "naive"
    np.testing.assert_array_equal(result.forecast, [9.0, 9.0, 9.0])
    assert result.lower_80[2] < result.lower_80[0]  # widening with the step


def test_default_prophet_peer_runs() -> None:
    result = default_prophet_forecast(revenue(36), 4, "month")
    assert result.method == "prophet_default" and not result.is_fallback
    assert len(result.forecast) == 4 and np.isfinite(result.upper_95).all()
    assert (result.lower_95 <= result.upper_95).all()


def test_calendar_features() -> None:
    weeks = pd.DatetimeIndex(["2025-03-24", "2025-03-31", "2025-04-07"])
    qend = pm.quarter_end_share(weeks, "week")
    np.testing.assert_allclose(qend, [1.0, 1 / 7, 0.0])
    months = period_range("2025-01-01", 12, "month")
    feats = pm.calendar_features(months, "month", pm.calendar_columns("month", True, True, True))
    assert feats["quarter_end"].sum() == 4 and feats["year_end"][11] == 1.0
    assert feats["m05"][4] == 1.0 and feats["m05"].sum() == 1.0


@pytest.mark.parametrize("freq", ["week", "month", "quarter"])
def test_fast_yhat_matches_prophet_predict(freq: str) -> None:
    n = {"week": 120, "month": 36, "quarter": 12}[freq]
    model = fit_series(revenue(n, freq, seed=5), freq)
    assert model.method == "prophet"
    m = model.prophet()
    periods = period_range("2022-01-01", n, freq).append(model.future_periods(8))
    feats = pm.calendar_features(periods, freq, model.calendar)
    frame = pd.DataFrame({"ds": periods, **{k: feats[k] for k in model.calendar}})
    expected = m.predict(frame)["yhat"].to_numpy()
    np.testing.assert_allclose(pm.prophet_yhat(m, periods, feats), expected, rtol=1e-10, atol=1e-10)

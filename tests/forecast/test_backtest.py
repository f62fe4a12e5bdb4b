"""Rolling-origin backtests and training on a won-only order history (no pipeline)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import training.revenue.fit as tf
from features.history import History
from salesml.models.revenue.bundle import ForecastBundle
from salesml.models.revenue.periods import period_range, period_start
from salesml.models.revenue.pipeline import PipelineForecast, simulate
from tests.helpers.history import synthetic_workspace


@pytest.fixture(scope="module")
def won_only(tmp_path_factory: pytest.TempPathFactory) -> History:
    """A shop's order export: won deals only (no open, no lost deals, so no pipeline)."""
    history = synthetic_workspace(tmp_path_factory, deals=3000, seed=7).history
    deals = history.deals[history.deals["status"] == "won"].reset_index(drop=True)
    # One tiny team with a single order: its series cannot carry Prophet (a flagged fallback).
    complete = deals[deals["closed_at"] < period_start(history.exported_at, "month")]
    deals.loc[complete["created_at"].idxmax(), "team"] = "Pop-up"
    keep = set(deals["deal_id"])
    return replace(
        history,
        deals=deals,
        stage_history=history.stage_history[history.stage_history["deal_id"].isin(keep)],
        activities=history.activities[history.activities["deal_id"].isin(keep)],
    )


@pytest.fixture(scope="module")
def trained(won_only: History) -> tf.ForecastTrainingResult:
    saved = dict(tf.MAX_ORIGINS)
    tf.MAX_ORIGINS["month"] = 6  # fewer origins: a unit-test budget
    try:
        return tf.train_forecast(won_only, freqs=("month",))
    finally:
        tf.MAX_ORIGINS.update(saved)


def test_won_only_history_trains_on_the_series_alone(trained: tf.ForecastTrainingResult) -> None:
    fm = trained.bundle.model("month")
    assert fm.components == ("pipeline", "new_deals", "series")
    assert fm.weights == [[0.0, 0.0, 1.0]] * tf.HORIZON["month"]
    assert trained.bundle.metadata["has_pipeline"] is False
    assert (trained.records["pipeline"] == 0).all()
    np.testing.assert_allclose(trained.records["blend"], trained.records["series"])


def test_metrics_shape_and_cross_fitted_coverage(trained: tf.ForecastTrainingResult) -> None:
    month = trained.metrics["month"]
    assert {"pipeline", "series", "blend", "seasonal_naive", "prophet_default"} <= set(month)
    blend = month["blend"]
    for name in ("wape_total", "wape_segments", "coverage_80_all", "coverage_95_all"):
        assert blend[name] is not None and np.isfinite(blend[name])
    assert trained.records["origin"].nunique() == 6
    assert blend["coverage_95_all"] >= blend["coverage_80_all"]


def test_fallbacks_are_flagged_never_raised(trained: tf.ForecastTrainingResult) -> None:
    assert any("Pop-up" in name for name in trained.fallbacks)
    assert all(reason for reason in trained.fallbacks.values())


def test_won_only_bundle_forecasts_with_an_empty_pipeline(
    trained: tf.ForecastTrainingResult, tmp_path: Path
) -> None:
    as_of = pd.Timestamp("2026-07-03")
    periods = pd.date_range("2026-07-01", periods=3, freq="MS")
    empty = simulate(
        np.zeros((0, 3)), np.zeros(0), {"team": np.array([], dtype=object)}, periods, 10
    )
    assert isinstance(empty, PipelineForecast)
    out = trained.bundle.forecast("month", 3, as_of, empty, {}, by="team")
    total = out[out["segment"] == "total"]
    assert len(total) == 3 and (total["forecast"] > 0).all()
    assert (total["lower_80"] <= total["forecast"]).all()
    assert "Pop-up" in set(out["segment"])
    trained.bundle.save(tmp_path / "fc")
    again = ForecastBundle.load(tmp_path / "fc").forecast("month", 3, as_of, empty, {}, "team")
    pd.testing.assert_frame_equal(out, again)


@pytest.mark.parametrize("by", [None, "team", "region", "product"])
def test_fitted_bundle_rows_hold_their_point_inside_the_intervals(
    trained: tf.ForecastTrainingResult, by: str | None
) -> None:
    """lower_95 ≤ lower_80 ≤ forecast ≤ upper_80 ≤ upper_95 on every row, and the learnt
    log-error bounds straddle 0, so the point is inside before any clipping."""
    fm = trained.bundle.model("month")
    for table in fm.log_errors.values():
        for q in table:
            assert q["lower_95"] <= q["lower_80"] <= 0.0 <= q["upper_80"] <= q["upper_95"]
    as_of = pd.Timestamp("2026-07-03")
    periods = pd.date_range("2026-07-01", periods=3, freq="MS")
    empty = simulate(
        np.zeros((0, 3)), np.zeros(0), {"team": np.array([], dtype=object)}, periods, 10
    )
    out = trained.bundle.forecast("month", 3, as_of, empty, {"total|total": 500.0}, by=by)
    assert len(out) >= 3
    ordered = out[["lower_95", "lower_80", "forecast", "upper_80", "upper_95"]].to_numpy()
    assert np.all(np.diff(ordered, axis=1) >= -1e-9)
    assert (out["lower_95"] >= 0).all()


def test_origins_are_period_starts_with_a_complete_horizon(won_only: History) -> None:
    anchor = tf.backtest_anchor(won_only)
    for freq in ("week", "month", "quarter"):
        origins = tf.origins_for(won_only, freq, anchor)
        assert origins and len(origins) <= tf.MAX_ORIGINS[freq]
        last = period_start(won_only.exported_at, freq)
        for o in origins:
            assert o >= anchor and period_start(o, freq) == o
            assert period_range(o, tf.HORIZON[freq] + 1, freq)[-1] <= last

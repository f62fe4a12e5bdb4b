"""Blend weights, cross-fitted intervals and the forecast bundle (fast: synthetic records)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesml.models.revenue.bundle import FORECAST_JSON, ForecastBundle, FreqModel, key
from salesml.models.revenue.pipeline import PipelineForecast, simulate
from salesml.models.revenue.prophet_model import fit_series
from salesml.models.revenue.reconcile import to_cents
from training.revenue.fit import (
    BLEND_COMPONENTS,
    _purged,
    apply_blend,
    backtest_metrics,
    blend_bounds,
    blend_weights,
    cross_fitted_blend,
    error_offsets,
    fit_blend,
    log_error_quantiles,
    new_deal_shares,
)

SEGMENTS = {"team": ["A", "B", "C"]}


def records(
    w_pipe: float = 0.4,
    w_series: float = 0.7,
    origins: int = 12,
    noise: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """Backtest-like records where actual = w_pipe·pipeline + w_series·series (+ noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    starts = pd.date_range("2025-01-01", periods=origins, freq="MS")
    for origin in starts:
        periods = pd.date_range(origin, periods=3, freq="MS")
        for dim, seg, level in [("total", "total", 3000.0)] + [
            ("team", s, 1000.0) for s in SEGMENTS["team"]
        ]:
            for step, period in enumerate(periods):
                pipe = level * rng.uniform(0.2, 1.2)
                series = level * rng.uniform(0.5, 1.5)
                actual = (w_pipe * pipe + w_series * series) * np.exp(noise * rng.normal())
                rows.append(
                    {
                        "freq": "month",
                        "origin": origin,
                        "step": step,
                        "period_start": period,
                        "dimension": dim,
                        "segment": seg,
                        "actual": actual,
                        "pipeline": pipe,
                        "series": series,
                        "series_lower_80": series * 0.8,
                        "series_upper_80": series * 1.2,
                        "seasonal_naive": series,
                        "scale": level,
                        "train_values": np.full(12, level),
                    }
                )
    return pd.DataFrame(rows)


TWO = ("pipeline", "series")


def test_blend_weights_are_non_negative_and_learned() -> None:
    weights = blend_weights(records(0.4, 0.7), 3, TWO)
    assert len(weights) == 3
    for w_pipe, w_series in weights:
        assert w_pipe >= 0 and w_series >= 0
        assert w_pipe == pytest.approx(0.4, abs=0.05)
        assert w_series == pytest.approx(0.7, abs=0.05)
    # A useless pipeline gets (near) zero weight, never a negative one.
    weights = blend_weights(records(0.0, 1.0), 3, TWO)
    assert all(w[0] < 0.05 and w[0] >= 0 for w in weights)


def test_the_new_deals_component_is_learned_next_to_the_others() -> None:
    frame = records(0.0, 0.0, noise=0.0)
    rng = np.random.default_rng(4)
    frame["new_deals"] = frame["series"] * rng.uniform(0.1, 0.5, len(frame))
    frame["actual"] = frame["pipeline"] + frame["new_deals"]
    assert BLEND_COMPONENTS == ("pipeline", "new_deals", "series")
    for w_pipe, w_new, w_series in blend_weights(frame, 3):
        assert w_pipe == pytest.approx(1.0, abs=1e-6)
        assert w_new == pytest.approx(1.0, abs=1e-6)
        assert w_series == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(apply_blend(frame, blend_weights(frame, 3)), frame["actual"])


def test_new_deal_shares_count_revenue_from_deals_created_shortly_before() -> None:
    deals = pd.DataFrame(
        {
            "status": ["won", "won", "won", "lost"],
            "created_at": pd.to_datetime(["2026-03-03", "2026-02-10", "2025-11-20", "2026-03-01"]),
            "closed_at": pd.to_datetime(["2026-03-20", "2026-03-25", "2026-03-28", "2026-03-02"]),
            "amount": [100.0, 300.0, 600.0, 5000.0],
            "team": ["A", "A", "B", "A"],
        }
    )
    shares = new_deal_shares(deals, "month", pd.Timestamp("2026-04-01"), 3)
    # Step 0: created in the month it closed (100 of 1000); step 1: one month before or later.
    assert shares[key("total", "total")] == pytest.approx([0.1, 0.4, 0.4])
    assert shares[key("team", "A")] == pytest.approx([0.25, 1.0, 1.0])
    assert shares[key("team", "B")] == pytest.approx([0.0, 0.0, 0.0])
    # Revenue closed at or after the end is not known yet.
    assert new_deal_shares(deals, "month", pd.Timestamp("2026-03-01"), 3) == {}


def test_without_pipeline_the_series_alone_carries_the_forecast() -> None:
    frame = records()
    frame["pipeline"] = 0.0
    assert blend_weights(frame, 3) == [[0.0, 0.0, 1.0]] * 3
    blend = apply_blend(frame, blend_weights(frame, 3))
    np.testing.assert_allclose(blend, frame["series"])


def test_purged_training_set_leaves_out_overlapping_origins() -> None:
    frame = records(origins=6)
    origin = frame["origin"].unique()[2]
    kept = frame.loc[_purged(frame, origin), "origin"].unique()
    # Horizon 3: the two origins on each side share forecast periods with it.
    assert set(pd.DatetimeIndex(kept)) == set(pd.DatetimeIndex(frame["origin"].unique()[[5]]))


def test_cross_fitted_blend_is_out_of_sample() -> None:
    frame = records(noise=0.2)
    scored = cross_fitted_blend(frame, 3)
    origin = frame["origin"].unique()[5]
    # Changing the actuals of one origin must not change that origin's own blend or bounds.
    changed = frame.copy()
    changed.loc[changed["origin"] == origin, "actual"] *= 5.0
    rescored = cross_fitted_blend(changed, 3)
    mask = (frame["origin"] == origin).to_numpy()
    for col in ("blend", "blend_lower_80", "blend_upper_80", "blend_lower_95", "blend_upper_95"):
        np.testing.assert_allclose(scored.loc[mask, col], rescored.loc[mask, col])
    # ...but it changes other origins' (which learned on it).
    assert not np.allclose(scored.loc[~mask, "blend"], rescored.loc[~mask, "blend"])


def test_cross_fitted_coverage_is_reported_and_sensible() -> None:
    frame = records(noise=0.3, origins=16, seed=3)
    metrics = backtest_metrics(cross_fitted_blend(frame, 3))
    blend = metrics["month"]["blend"]
    assert set(blend) >= {"wape_total", "wape_segments", "coverage_80_all", "coverage_95_all"}
    assert blend["coverage_80_all"] is not None and 0.6 <= blend["coverage_80_all"] <= 0.97
    assert blend["coverage_95_all"] is not None and blend["coverage_95_all"] >= 0.8
    assert metrics["month"]["blend"]["wape_total"] < metrics["month"]["series"]["wape_total"]


def test_fit_blend_bounds_are_ordered() -> None:
    _, offsets, quantiles = fit_blend(records(noise=0.3), 3)
    assert set(offsets) == {"total", "segment"}
    for table in quantiles.values():
        for q in table:
            assert q["lower_95"] <= q["lower_80"] <= q["upper_80"] <= q["upper_95"]


def test_interval_of_a_biased_blend_contains_its_point() -> None:
    """A blend 40 % too low: the interval must still hold the point (it widens instead of
    sitting beside it, as one centred on the median error would)."""
    frame = records(noise=0.1)
    blend = frame["actual"].to_numpy() * 0.6
    offsets = error_offsets(frame)
    quantiles = log_error_quantiles(frame, blend, offsets, 3)
    for table in quantiles.values():
        for q in table:
            assert q["lower_95"] <= q["lower_80"] <= 0.0 <= q["upper_80"] <= q["upper_95"]
    groups = np.where(frame["dimension"] == "total", "total", "segment")
    bounds = blend_bounds(blend, groups, frame["step"].to_numpy(), offsets, quantiles)
    assert (bounds["lower_95"] <= bounds["lower_80"]).all()
    assert (bounds["lower_80"] <= blend).all() and (blend <= bounds["upper_80"]).all()
    assert (bounds["upper_80"] <= bounds["upper_95"]).all()
    # ...and, being wide enough for the bias, it still covers most actuals.
    actual = frame["actual"].to_numpy()
    inside = (bounds["lower_80"] <= actual) & (actual <= bounds["upper_80"])
    assert inside.mean() >= 0.75


def test_cross_fitted_bounds_contain_the_blend() -> None:
    scored = cross_fitted_blend(records(noise=0.3, seed=5), 3)
    for lo, hi in (("blend_lower_95", "blend_lower_80"), ("blend_lower_80", "blend")):
        assert (scored[lo] <= scored[hi] + 1e-9).all()
    for lo, hi in (("blend", "blend_upper_80"), ("blend_upper_80", "blend_upper_95")):
        assert (scored[lo] <= scored[hi] + 1e-9).all()


# --- the bundle ---------------------------------------------------------------------------


def _series(level: float, n: int = 30, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2023-07-01", periods=n, freq="MS")
    growth = 1.02 ** np.arange(n)
    return pd.Series(level * growth * np.exp(0.15 * rng.normal(size=n)), index=idx)


@pytest.fixture(scope="module")
def bundle() -> ForecastBundle:
    series = {key("total", "total"): _series(9000.0)}
    for dim, names in {"team": ["A", "B", "C"], "region": ["EU", "NA"], "product": ["X"]}.items():
        for i, name in enumerate(names):
            series[key(dim, name)] = _series(9000.0 / len(names), seed=i + 1)
    series[key("product", "New")] = _series(0.0, n=3)  # too little / flat: a fallback
    models = {name: fit_series(s, "month") for name, s in series.items()}
    quantiles = [
        {"lower_95": -0.5, "lower_80": -0.3, "upper_80": 0.25, "upper_95": 0.4} for _ in range(3)
    ]
    fm = FreqModel(
        "month",
        models,
        [[0.5, 0.6], [0.4, 0.7], [0.3, 0.8]],
        {"total": quantiles, "segment": quantiles},
        {"total": 100.0, "segment": 50.0},
    )
    return ForecastBundle({"month": fm}, {"X": 100.0}, 50.0, {"trained_to": "2025-12-31"})


def _pipeline(periods: pd.DatetimeIndex) -> PipelineForecast:
    rng = np.random.default_rng(0)
    n = 40
    probs = rng.uniform(0, 0.2, size=(n, len(periods)))
    amounts = rng.uniform(100, 1000, size=n)
    segments = {
        "team": rng.choice(["A", "B", "C"], n),
        "region": rng.choice(["EU", "NA"], n),
        "product": rng.choice(["X", "New"], n),
    }
    return simulate(probs, amounts, segments, periods, draws=50)


def _forecast(b: ForecastBundle, by: str | None) -> pd.DataFrame:
    as_of = pd.Timestamp("2026-01-10")
    periods = pd.date_range("2026-01-01", periods=3, freq="MS")
    return b.forecast("month", 3, as_of, _pipeline(periods), {"total|total": 1234.5}, by)


@pytest.mark.parametrize("by", ["team", "region", "product"])
def test_segments_sum_to_the_total_to_the_cent(bundle: ForecastBundle, by: str) -> None:
    out = _forecast(bundle, by)
    assert list(out.columns) == [
        "period_start",
        "segment",
        "forecast",
        "lower_80",
        "upper_80",
        "lower_95",
        "upper_95",
    ]
    for _, rows in out.groupby("period_start"):
        total = rows[rows["segment"] == "total"]["forecast"]
        parts = rows[rows["segment"] != "total"]["forecast"]
        assert len(total) == 1 and len(parts) == len(bundle.segments("month", by))
        assert int(to_cents(parts).sum()) == int(to_cents(total).sum())
    assert (out["lower_95"] <= out["lower_80"]).all()
    assert (out["lower_80"] <= out["forecast"]).all()
    assert (out["forecast"] <= out["upper_80"]).all()
    assert (out["upper_80"] <= out["upper_95"]).all()


def test_json_round_trip_gives_identical_forecasts(bundle: ForecastBundle, tmp_path: Path) -> None:
    bundle.save(tmp_path / "fc")
    loaded = ForecastBundle.load(tmp_path / "fc")
    for by in (None, "team", "product"):
        pd.testing.assert_frame_equal(_forecast(bundle, by), _forecast(loaded, by))


def test_fallback_segments_are_flagged_and_still_forecast(bundle: ForecastBundle) -> None:
    model = bundle.model("month").series[key("product", "New")]
    assert model.fallback_reason
    out = _forecast(bundle, "product")
    assert np.isfinite(out[["forecast", "lower_80", "upper_95"]].to_numpy()).all()
    assert "New" in set(out["segment"])


def test_new_deals_forecast_a_share_of_the_series(bundle: ForecastBundle) -> None:
    """[pipeline, new deals, series] weights [0, 1, 0] with a 40 % new-deal share forecast
    exactly what series weights [0, 0, 0.4] do."""
    fm = bundle.model("month")
    shares = {name: [0.4, 0.4, 0.4] for name in fm.series}
    three = ("pipeline", "new_deals", "series")
    new = FreqModel(
        "month", fm.series, [[0.0, 1.0, 0.0]] * 3, fm.log_errors, fm.offset, three, shares
    )
    scaled = FreqModel("month", fm.series, [[0.0, 0.0, 0.4]] * 3, fm.log_errors, fm.offset, three)
    a = ForecastBundle({"month": new}, bundle.list_prices, bundle.fallback_amount)
    b = ForecastBundle({"month": scaled}, bundle.list_prices, bundle.fallback_amount)
    pd.testing.assert_frame_equal(_forecast(a, "team"), _forecast(b, "team"))


def test_bundles_saved_before_the_new_deals_component_still_load(
    bundle: ForecastBundle, tmp_path: Path
) -> None:
    path = bundle.save(tmp_path / "fc")
    doc = json.loads((path / FORECAST_JSON).read_text(encoding="utf-8"))
    for fm in doc["freqs"].values():
        del fm["components"], fm["new_shares"]
    (path / FORECAST_JSON).write_text(json.dumps(doc), encoding="utf-8")
    loaded = ForecastBundle.load(path)
    assert loaded.model("month").components == ("pipeline", "series")
    pd.testing.assert_frame_equal(_forecast(bundle, "team"), _forecast(loaded, "team"))


def test_a_period_length_the_bundle_lacks_is_refused_with_the_choices(
    bundle: ForecastBundle,
) -> None:
    from salesml.models.revenue.bundle import MissingFrequencyError

    with pytest.raises(MissingFrequencyError, match=r"no 'week' model \(it has month\)"):
        bundle.model("week")

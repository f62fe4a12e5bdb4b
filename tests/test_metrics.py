"""Evaluation metrics: arithmetic done by hand on tiny arrays, then against scikit-learn.

The running example has four deals, two lost then two won:
``y = [0, 0, 1, 1]`` and ``p = [0.1, 0.4, 0.35, 0.8]``.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, roc_auc_score

from salesml.errors import SalesmlError
from salesml.models.evaluation import (
    MetricsInputError,
    binary_metrics,
    brier_score,
    ece_against_truth,
    ece_floor,
    expected_calibration_error,
    log_loss,
    plot_reliability,
    reliability_curve,
)

Y = [0, 0, 1, 1]
P = [0.1, 0.4, 0.35, 0.8]


def test_brier_by_hand() -> None:
    # errors 0.1, 0.4, 0.65, 0.2 -> squares 0.01 + 0.16 + 0.4225 + 0.04 = 0.6325; / 4
    assert brier_score(Y, P) == pytest.approx(0.158125, abs=1e-15)


def test_log_loss_by_hand() -> None:
    # -(ln 0.9 + ln 0.6 + ln 0.35 + ln 0.8) / 4
    # = (0.1053605 + 0.5108256 + 1.0498221 + 0.2231436) / 4 = 1.8891518 / 4
    assert log_loss(Y, P) == pytest.approx(0.47228795, abs=1e-8)


def test_log_loss_clips_certain_mistakes_to_a_finite_value() -> None:
    # p = 0 for a won deal is clipped to 1e-15: -ln(1e-15) = 15 ln 10 = 34.538776
    assert log_loss([1], [0.0]) == pytest.approx(15 * math.log(10))
    assert log_loss([0, 1], [0.0, 1.0]) == pytest.approx(0.0, abs=1e-12)


def test_ece_uniform_bins_by_hand() -> None:
    # bins [0, 0.5] and (0.5, 1]
    # low: p 0.1, 0.4, 0.35 -> mean 0.85 / 3 = 0.28333; won 1 of 3 = 0.33333; gap 0.05
    # high: p 0.8 -> won 1 of 1; gap 0.2
    # ECE = 3/4 * 0.05 + 1/4 * 0.2 = 0.0375 + 0.05 = 0.0875
    assert expected_calibration_error(Y, P, n_bins=2, strategy="uniform") == pytest.approx(0.0875)


def test_ece_quantile_bins_by_hand() -> None:
    # median edge = (0.35 + 0.4) / 2 = 0.375
    # low: p 0.1, 0.35 (y 0, 1) -> mean 0.225, rate 0.5, gap 0.275
    # high: p 0.4, 0.8 (y 0, 1) -> mean 0.6, rate 0.5, gap 0.1
    # ECE = 0.5 * 0.275 + 0.5 * 0.1 = 0.1875
    assert expected_calibration_error(Y, P, n_bins=2) == pytest.approx(0.1875)


def test_ece_is_zero_when_every_bin_rate_matches_its_prediction() -> None:
    # a quarter of the 0.25 deals and three quarters of the 0.75 deals are won
    y = [1, 0, 0, 0, 1, 1, 1, 0]
    p = [0.25] * 4 + [0.75] * 4
    for strategy in ("quantile", "uniform"):
        assert expected_calibration_error(y, p, strategy=strategy) == pytest.approx(0, abs=1e-15)


def test_ece_of_true_probabilities_is_near_zero() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(100_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, np.clip(p + 0.1, 0, 1)) > 0.08  # and sees a shift


def test_ece_floor_is_what_true_probabilities_score_at_this_sample_size() -> None:
    # 1,500 deals in 10 bins of 150 around p = 0.5: each bin's rate has a standard deviation
    # of 0.041, and E|N(0, s)| = 0.8 s, so even the truth scores about 0.03.
    p = np.random.default_rng(1).uniform(0.3, 0.7, 1500)
    floor = ece_floor(p)
    assert 0.025 < floor < 0.04
    assert ece_floor(np.tile(p, 16)) < floor / 3  # 16 times the deals: a quarter of the noise


def test_ece_against_truth_is_the_gap_per_bin_without_outcome_noise() -> None:
    truth = np.random.default_rng(2).uniform(0.1, 0.9, 1000)
    assert ece_against_truth(truth, truth) == 0.0
    assert ece_against_truth(truth, np.clip(truth + 0.05, 0, 1)) == pytest.approx(0.05, abs=0.003)
    # By hand: two equal-mass bins, p {0.1, 0.35} and {0.4, 0.8}, truth 0.2 and 0.5 in each.
    assert ece_against_truth([0.2, 0.5, 0.2, 0.5], P, n_bins=2) == pytest.approx(
        0.5 * abs(0.2 - 0.225) + 0.5 * abs(0.5 - 0.6)
    )


def test_binary_metrics_has_exactly_the_promised_keys_and_hand_values() -> None:
    metrics = binary_metrics(Y, P)
    assert list(metrics) == ["auc", "pr_auc", "brier", "log_loss", "ece"]
    # won-lost pairs ranked right: (0.35 > 0.1), (0.8 > 0.1), (0.8 > 0.4); wrong: 0.35 < 0.4
    assert metrics["auc"] == pytest.approx(3 / 4)
    # by p: 0.8 won (precision 1/1), 0.4 lost, 0.35 won (precision 2/3): AP = (1 + 2/3) / 2
    assert metrics["pr_auc"] == pytest.approx(5 / 6)
    assert metrics["brier"] == brier_score(Y, P)
    assert metrics["log_loss"] == log_loss(Y, P)
    assert metrics["ece"] == expected_calibration_error(Y, P)


def test_auc_and_pr_auc_equal_sklearn() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(5_000)
    y = (rng.random(p.size) < p**2).astype(int)
    metrics = binary_metrics(y, p)
    assert metrics["auc"] == roc_auc_score(y, p)
    assert metrics["pr_auc"] == average_precision_score(y, p)


def test_ranking_metrics_are_none_when_only_one_outcome_occurs() -> None:
    metrics = binary_metrics([1, 1, 1], [0.2, 0.5, 0.9])
    assert metrics["auc"] is None
    assert metrics["pr_auc"] is None
    assert metrics["brier"] == pytest.approx((0.64 + 0.25 + 0.01) / 3)


@pytest.mark.parametrize("strategy", ["quantile", "uniform"])
def test_reliability_curve_agrees_with_sklearn_calibration_curve(strategy: str) -> None:
    rng = np.random.default_rng(2)
    p = rng.beta(2, 5, 3_000)
    y = (rng.random(p.size) < p).astype(int)
    curve = reliability_curve(y, p, n_bins=8, strategy=strategy)  # type: ignore[arg-type]
    observed, predicted = calibration_curve(y, p, n_bins=8, strategy=strategy)
    np.testing.assert_allclose(curve["observed_rate"], observed, rtol=1e-12)
    np.testing.assert_allclose(curve["mean_predicted"], predicted, rtol=1e-12)
    assert curve["count"].sum() == p.size
    assert (curve["lower"] <= curve["observed_rate"]).all()
    assert (curve["observed_rate"] <= curve["upper"]).all()


def test_reliability_curve_wilson_interval_by_hand() -> None:
    # 1 won of 4, z = 1.96 (z^2 = 3.8415): centre = (0.25 + z^2 / 8) / (1 + z^2 / 4)
    # = 0.73018 / 1.96036 = 0.37247; half = z / 1.96036 * sqrt(0.25 * 0.75 / 4 + z^2 / 64)
    # = 0.99982 * sqrt(0.046875 + 0.060023) = 0.32689 -> (0.04558, 0.69936)
    curve = reliability_curve([1, 0, 0, 0], [0.2] * 4, n_bins=1)
    row = curve.iloc[0]
    assert list(curve.columns) == [
        "bin",
        "count",
        "mean_predicted",
        "observed_rate",
        "lower",
        "upper",
    ]
    assert (row["bin"], row["count"], row["observed_rate"]) == (0, 4, 0.25)
    assert row["mean_predicted"] == pytest.approx(0.2)
    assert (row["lower"], row["upper"]) == pytest.approx((0.04558, 0.69936), abs=1e-5)


def test_reliability_curve_leaves_out_empty_bins() -> None:
    curve = reliability_curve([0, 1, 1], [0.05, 0.95, 0.97], n_bins=10, strategy="uniform")
    assert list(curve["bin"]) == [0, 9]
    assert list(curve["count"]) == [1, 2]


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1], [0.5], "same length; got 2 outcomes and 1 predictions"),
        ([], [], "at least one deal"),
        ([0, 2], [0.5, 0.5], r"y must be 1 \(won\) or 0 \(lost\)"),
        ([0, 1], [0.5, 1.5], r"p must be probabilities in \[0, 1\]"),
        ([0, 1], [0.5, float("nan")], "without NaN"),
    ],
)
def test_metrics_reject_bad_input_with_a_fix_it_message(
    y: list[int], p: list[float], message: str
) -> None:
    with pytest.raises(SalesmlError, match=message):
        binary_metrics(y, p)


def test_binning_options_are_checked() -> None:
    with pytest.raises(MetricsInputError, match="strategy must be 'quantile' or 'uniform'"):
        expected_calibration_error(Y, P, strategy="kmeans")  # type: ignore[arg-type]
    with pytest.raises(MetricsInputError, match="n_bins must be a positive number of bins, got 0"):
        reliability_curve(Y, P, n_bins=0)


def test_plot_reliability_writes_a_png_without_touching_global_matplotlib_state(
    tmp_path: Path,
) -> None:
    rng = np.random.default_rng(3)
    p_model = rng.random(2_000)
    y = (rng.random(p_model.size) < p_model).astype(int)
    p_base = np.full(p_model.size, y.mean())
    curves = {
        "model": reliability_curve(y, p_model),
        "base rate": reliability_curve(y, p_base, strategy="uniform"),
    }
    backend = matplotlib.get_backend()
    out = plot_reliability(curves, tmp_path / "plots" / "reliability.png", "Win model, holdout")
    assert out == tmp_path / "plots" / "reliability.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with_hist = plot_reliability(
        curves, tmp_path / "hist.png", "With raw predictions", predictions={"model": p_model}
    )
    assert with_hist.stat().st_size > 10_000
    assert matplotlib.get_backend() == backend
    with pytest.raises(MetricsInputError, match="at least one curve"):
        plot_reliability({}, tmp_path / "none.png", "nothing")

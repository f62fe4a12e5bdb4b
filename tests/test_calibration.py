"""Calibrators against known probabilities, references, and their JSON round trip.

The fixture draws true win probabilities, outcomes from them, and raw scores that are a
distorted but monotone transform of the true log-odds, so a good calibrator must undo the
distortion; fresh data from the same process measures how well it did.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from salesml.errors import SalesmlError
from salesml.models.calibration import (
    CALIBRATORS,
    BetaCalibrator,
    CalibrationError,
    Calibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    VennAbersCalibrator,
    calibrator_from_params,
    select_calibrator,
)
from salesml.models.evaluation import expected_calibration_error, log_loss

Array = npt.NDArray[np.float64]
Distortion = Callable[[Array], Array]
FITTED = ["platt", "isotonic", "beta", "venn_abers"]


def linear(logit: Array) -> Array:
    """An overconfident, shifted model: what boosting often produces."""
    return 2.5 * logit + 1.0


def cubic(logit: Array) -> Array:
    """A nonlinear but monotone squash-and-stretch no logistic map can undo."""
    return logit**3 / 4


def draw(n: int, distortion: Distortion, seed: int) -> tuple[Array, Array, Array]:
    """Scores, outcomes and true probabilities of ``n`` deals."""
    rng = np.random.default_rng(seed)
    logit = rng.normal(-0.5, 1.5, n)
    p_true = 1 / (1 + np.exp(-logit))
    y = (rng.random(n) < p_true).astype(np.float64)
    return distortion(logit), y, p_true


def fitted(kind: str, n: int = 20_000, distortion: Distortion = linear) -> Calibrator:
    scores, y, _ = draw(n, distortion, seed=1)
    calibrator: Calibrator = CALIBRATORS[kind]()
    return calibrator.fit(scores, y)


@pytest.mark.parametrize("kind", FITTED)
def test_calibrator_recovers_true_probabilities_from_a_linear_distortion(kind: str) -> None:
    calibrator = fitted(kind)
    scores, y, p_true = draw(20_000, linear, seed=2)
    p = calibrator.predict(scores)
    ece, true_ece = expected_calibration_error(y, p), expected_calibration_error(y, p_true)
    assert ece <= 0.02
    assert ece <= true_ece + 0.01
    assert log_loss(y, p) < log_loss(y, fitted("identity").predict(scores)) - 0.1
    assert log_loss(y, p) <= log_loss(y, p_true) + 0.003


def test_isotonic_and_venn_abers_recover_a_nonlinear_distortion_that_platt_cannot() -> None:
    scores, y, p_true = draw(20_000, cubic, seed=2)
    losses = {}
    for kind in ("platt", "isotonic", "venn_abers"):
        p = fitted(kind, distortion=cubic).predict(scores)
        losses[kind] = log_loss(y, p)
        if kind != "platt":
            assert expected_calibration_error(y, p) <= 0.02, kind
            assert losses[kind] <= log_loss(y, p_true) + 0.005, kind
    assert expected_calibration_error(y, fitted("platt", distortion=cubic).predict(scores)) > 0.05
    assert losses["platt"] > max(losses["isotonic"], losses["venn_abers"]) + 0.02


@pytest.mark.parametrize("kind", sorted(CALIBRATORS))
def test_parameters_survive_json_bitwise(kind: str) -> None:
    calibrator = fitted(kind, n=3_000)
    text = json.dumps(calibrator.to_params(), allow_nan=False)  # strict JSON
    params = json.loads(text)
    assert params["kind"] == kind
    assert all(isinstance(v, float | list) for k, v in params.items() if k != "kind")
    reloaded = calibrator_from_params(params)
    scores = np.concatenate([draw(5_000, linear, seed=3)[0], [-1e9, -40.0, 0.0, 40.0, 1e9]])
    assert calibrator.predict(scores).tobytes() == reloaded.predict(scores).tobytes()
    assert reloaded.to_params() == params


@pytest.mark.parametrize("kind", sorted(CALIBRATORS))
@pytest.mark.parametrize("backwards", [False, True])
def test_predictions_are_monotone_in_the_score_and_strictly_inside_0_1(
    kind: str, backwards: bool
) -> None:
    scores, y, _ = draw(2_000, linear, seed=4)
    calibrator: Calibrator = CALIBRATORS[kind]().fit(scores, 1 - y if backwards else y)
    grid = np.concatenate([[-1e300, -1e6], np.linspace(-60, 60, 100_001), scores, [1e6, 1e300]])
    p = calibrator.predict(np.sort(grid))
    assert np.all(np.diff(p) >= 0), "a higher score got a lower probability"
    assert p.min() >= 1e-6
    assert p.max() <= 1 - 1e-6


def test_platt_gives_the_base_rate_when_the_score_ranks_deals_backwards() -> None:
    scores, y, _ = draw(2_000, linear, seed=5)
    platt = PlattCalibrator().fit(scores, 1 - y)
    assert platt.a_ == 0.0
    # with a = 0 only Platt's smoothed targets move b: logit((won + 1) / (n + 2))
    # with a = 0 the fit is the mean of Platt's smoothed targets, (won + 1) / (won + 2) for won
    # deals and 1 / (lost + 2) for lost ones
    won, lost = (1 - y).sum(), y.sum()
    base_rate = (won * (won + 1) / (won + 2) + lost / (lost + 2)) / y.size
    assert platt.predict([-5.0, 5.0]) == pytest.approx([base_rate, base_rate], abs=1e-6)


def test_isotonic_interpolates_like_sklearn_with_clipping() -> None:
    scores, y, _ = draw(3_000, cubic, seed=6)
    mine = IsotonicCalibrator().fit(scores, y)
    theirs = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(scores, y)
    test = np.concatenate([np.linspace(-100, 100, 2_001), scores])
    expected = np.clip(theirs.predict(test), 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(mine.predict(test), expected, rtol=0, atol=1e-12)


def test_beta_is_the_logistic_regression_of_the_paper_features() -> None:
    scores, y, _ = draw(5_000, linear, seed=7)
    beta = BetaCalibrator().fit(scores, y)
    p = 1 / (1 + np.exp(-scores))
    features = np.column_stack([np.log(p), -np.log1p(-p)])
    reference = LogisticRegression(C=1e10, tol=1e-10, max_iter=10_000).fit(features, y)
    assert [beta.a_, beta.b_] == pytest.approx(reference.coef_[0].tolist(), abs=1e-3)
    assert beta.c_ == pytest.approx(reference.intercept_[0], abs=1e-3)


@pytest.mark.parametrize(("true_a", "true_b", "kept"), [(-0.5, 1.0, 1), (1.0, -0.5, 0)])
def test_beta_refits_without_a_feature_whose_free_coefficient_is_negative(
    true_a: float, true_b: float, kept: int
) -> None:
    rng = np.random.default_rng(8)
    scores = rng.normal(0, 2, 20_000)
    p = 1 / (1 + np.exp(-scores))
    features = np.column_stack([np.log(p), -np.log1p(-p)])
    y = (rng.random(scores.size) < 1 / (1 + np.exp(-features @ [true_a, true_b]))).astype(float)
    beta = BetaCalibrator().fit(scores, y)
    reference = LogisticRegression(C=1e10, tol=1e-10, max_iter=10_000)
    reference.fit(features[:, [kept]], y)  # the paper: drop the negative one, refit the other
    assert [beta.a_, beta.b_][1 - kept] == 0.0
    assert [beta.a_, beta.b_][kept] == pytest.approx(reference.coef_[0][0], abs=1e-3)
    assert beta.c_ == pytest.approx(reference.intercept_[0], abs=1e-3)


def naive_venn_abers(scores: Array, y: Array, test: Array) -> tuple[Array, Array]:
    """The definition: refit isotonic regression with the test point labelled 0, then 1."""
    p0: list[float] = []
    p1: list[float] = []
    for s in test:
        for label, out in ((0, p0), (1, p1)):
            iso = IsotonicRegression(out_of_bounds="clip")
            iso.fit(np.append(scores, s), np.append(y, label))
            out.append(float(iso.predict([s])[0]))
    return np.array(p0), np.array(p1)


def test_venn_abers_matches_the_naive_definition_on_small_random_data() -> None:
    rng = np.random.default_rng(9)
    for _ in range(20):
        n = int(rng.integers(2, 30))
        scores = np.round(rng.normal(size=n), 1)  # rounding makes ties
        y = rng.integers(0, 2, n).astype(np.float64)
        y[:2] = [0, 1]
        test = np.concatenate([scores, rng.normal(size=10), [scores.min() - 1, scores.max() + 1]])
        p0, p1 = VennAbersCalibrator().fit(scores, y).predict_interval(test)
        ref0, ref1 = naive_venn_abers(scores, y, test)
        np.testing.assert_allclose(p0, ref0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(p1, ref1, rtol=0, atol=1e-12)


def test_venn_abers_probability_lies_between_p0_and_p1() -> None:
    scores, y, _ = draw(3_000, cubic, seed=10)
    va = VennAbersCalibrator().fit(scores, y)
    test = np.concatenate([scores, np.linspace(-30, 30, 1_001)])
    p0, p1 = va.predict_interval(test)
    p = p1 / (1 - p0 + p1)
    assert np.all(p0 <= p1)
    assert np.all((p0 <= p) & (p <= p1))
    np.testing.assert_array_equal(va.predict(test), np.clip(p, 1e-6, 1 - 1e-6))
    assert np.median(p1 - p0) < 0.02  # 3,000 deals: the two fits mostly agree (not at the ends)


def test_select_picks_a_parametric_calibrator_for_a_logistic_distortion() -> None:
    scores, y, _ = draw(5_000, linear, seed=11)
    chosen, table = select_calibrator(scores, y)
    assert list(table.columns) == ["candidate", "log_loss", "brier", "ece", "chosen", "note"]
    assert list(table["candidate"]) == ["platt", "isotonic", "beta", "venn_abers"]
    assert table["chosen"].sum() == 1
    winner = table.loc[table["chosen"]].iloc[0]
    assert winner["candidate"] == chosen.name
    assert winner["log_loss"] == table["log_loss"].min()
    assert chosen.name in {"platt", "beta"}
    assert "cross-validated log loss" in winner["note"]
    refit = CALIBRATORS[chosen.name]().fit(scores, y)  # the winner is refitted on all data
    assert np.array_equal(chosen.predict(scores), refit.predict(scores))


def test_select_picks_a_nonparametric_calibrator_for_a_nonlinear_distortion() -> None:
    scores, y, _ = draw(5_000, cubic, seed=12)
    chosen, table = select_calibrator(scores, y)
    assert chosen.name in {"isotonic", "venn_abers"}
    platt = table.set_index("candidate").loc["platt"]
    assert platt["log_loss"] > table["log_loss"].min()


@pytest.mark.parametrize(("n", "n_won"), [(150, 60), (1_000, 12)])
def test_select_prefers_platt_on_small_data_and_says_so(n: int, n_won: int) -> None:
    scores, _, _ = draw(n, cubic, seed=13)
    y = np.zeros(n)
    y[np.argsort(scores)[-n_won:]] = 1  # would favour a flexible calibrator if data allowed
    chosen, table = select_calibrator(scores, y)
    assert chosen.name == "platt"
    note = table.loc[table["chosen"], "note"].iloc[0]
    assert f"small calibration set ({n} deals, {n_won} won" in note
    assert "fewest parameters" in note


def test_select_rejects_unknown_candidates_and_too_few_folds() -> None:
    scores, y, _ = draw(500, linear, seed=14)
    with pytest.raises(CalibrationError, match="unknown calibrator kind 'spline'; expected one"):
        select_calibrator(scores, y, candidates=("platt", "spline"))
    with pytest.raises(CalibrationError, match="n_splits must be at least 2, got 1"):
        select_calibrator(scores, y, n_splits=1)


@pytest.mark.parametrize(
    ("scores", "y", "message"),
    [
        ([0.1] * 57, [0] * 57, "calibration needs both won and lost deals; got 0 won of 57"),
        ([0.1] * 3, [1] * 3, "got 3 won of 3"),
        ([0.1, 0.2], [0, 1, 1], "same length; got 2 scores and 3 labels"),
        ([0.1, 0.2, 0.3], [0, 1, 2], r"y must be 1 \(won\) or 0 \(lost\); got 1 other"),
        ([0.1, float("nan"), 0.3], [0, 1, 1], "1 NaN or infinite value"),
        ([0.1, float("inf")], [0, 1], "first at position 1; drop or impute"),
        ([], [], "at least one closed deal"),
        ([[0.1, 0.2], [0.3, 0.4]], [0, 1], r"one-dimensional; got shape \(2, 2\)"),
    ],
)
@pytest.mark.parametrize("kind", sorted(CALIBRATORS))
def test_fit_rejects_bad_input_with_a_fix_it_message(
    kind: str, scores: list[float], y: list[int], message: str
) -> None:
    with pytest.raises(SalesmlError, match=message):
        CALIBRATORS[kind]().fit(scores, y)


@pytest.mark.parametrize("kind", FITTED)
def test_predict_before_fit_says_what_to_do(kind: str) -> None:
    with pytest.raises(CalibrationError, match="is not fitted; call fit"):
        CALIBRATORS[kind]().predict([0.0])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "spline"}, "unknown calibrator kind 'spline'"),
        ({}, "unknown calibrator kind None"),
        ({"kind": "platt", "a": 1.0}, "lack a numeric 'b'; pass the dict produced by to_params"),
        ({"kind": "beta", "a": "x", "b": 0, "c": 0}, "lack a numeric 'a'"),
        ({"kind": "platt", "a": [1.0, 2.0], "b": 0}, "'a' must be one number"),
        ({"kind": "platt", "a": None, "b": 0}, "must hold finite numbers"),
        ({"kind": "isotonic", "x": [0.0, 1.0], "y": [0.5]}, "inconsistent lengths"),
        ({"kind": "isotonic", "x": [1.0, 0.0], "y": [0.2, 0.5]}, "unsorted breakpoints"),
        ({"kind": "venn_abers", "x0": [], "p0": [0.5], "x1": [0.0], "p1": [0.5]}, "lengths"),
    ],
)
def test_from_params_rejects_malformed_parameters(params: dict[str, object], message: str) -> None:
    with pytest.raises(CalibrationError, match=message):
        calibrator_from_params(params)


def test_predict_rejects_non_finite_scores() -> None:
    platt = PlattCalibrator().fit([0.0, 1.0, 2.0, 3.0], [0, 1, 0, 1])
    with pytest.raises(CalibrationError, match="first at position 2; drop or impute"):
        platt.predict([0.0, 1.0, float("nan")])


def test_select_rejects_one_sided_data_like_fit_does() -> None:
    with pytest.raises(CalibrationError, match="both won and lost deals; got 0 won of 57"):
        select_calibrator(np.linspace(-1, 1, 57), np.zeros(57))

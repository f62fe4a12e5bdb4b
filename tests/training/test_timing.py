"""The close-timing model: censoring-aware, conformal intervals that hold, and a clean bundle."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax

from features.history import History
from salesml.models.calibration import IdentityCalibrator
from salesml.models.contract import BundleError
from salesml.models.timing.bundle import (
    BIN_FEATURES,
    EDGES,
    LEGACY_BIN_FEATURES,
    LOST,
    NONE,
    TIMING_JSON,
    WON,
    TimingBundle,
    expand_bins,
)
from salesml.models.win.bundle import WinBundle
from salesml.scoring import Scorer
from tests.helpers.history import synthetic_workspace
from tests.reference.accuracy import short_history_long_errors, truth_rows
from training.timing.fit import (
    TimingTrainingResult,
    bin_rows,
    calendar_weights,
    recalibrated_offsets,
    train_timing_model,
)


@pytest.fixture(scope="module")
def history_and_truth(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, pd.DataFrame]:
    synthetic = synthetic_workspace(tmp_path_factory, deals=8000, seed=11)
    return synthetic.history, synthetic.truth


@pytest.fixture(scope="module")
def trained(history_and_truth: tuple[History, pd.DataFrame]) -> TimingTrainingResult:
    return train_timing_model(history_and_truth[0])


def test_interval_covers_nominal_share_of_won_deals_on_the_holdout(
    trained: TimingTrainingResult, history_and_truth: tuple[History, pd.DataFrame]
) -> None:
    history, truth = history_and_truth
    rows = truth_rows(history, truth, trained.holdout_start, trained.holdout_end)
    bundle = trained.holdout_bundle
    hazards = bundle.hazards(rows, rows["as_of"])
    low, high = bundle.quantile_days(hazards, 0.1), bundle.quantile_days(hazards, 0.9)
    actual = rows["true_days"].to_numpy()
    coverage = float(np.mean((actual >= low) & (actual <= high)))
    # ±3 points at 20k deals (make bench / the closing note); 8k deals leave more noise.
    assert abs(coverage - 0.8) <= 0.05, coverage
    # The censoring-corrected estimate the product reports agrees with the truth.
    reported = trained.holdout_metrics["coverage_80"]
    assert reported is not None and abs(reported - coverage) <= 0.04


def test_censoring_aware_model_is_less_biased_on_long_cycles_than_closed_only(
    history_and_truth: tuple[History, pd.DataFrame],
) -> None:
    """A short history (the first 15 months) censors most long cycles: a model learnt from
    closed deals only underestimates them; the hazard model, which keeps open deals as
    censored, does not (checked against the generator's truth)."""
    ours_error, naive_error = short_history_long_errors(*history_and_truth)
    assert naive_error < 0  # closed-only training is biased toward short cycles
    assert abs(ours_error) <= 0.7 * abs(naive_error), (ours_error, naive_error)


def test_holdout_metrics_beat_baselines_on_long_cycles(trained: TimingTrainingResult) -> None:
    ours = trained.holdout_metrics["mean_error_days_long"]
    naive = trained.baseline_metrics["closed_only"]["mean_error_days_long"]
    assert ours is not None and naive is not None
    assert abs(ours) < abs(naive)


def test_bins_keep_only_fully_observed_at_risk_periods() -> None:
    frame = pd.DataFrame(
        {
            "deal_id": ["a", "b", "c"],
            "as_of": pd.to_datetime(["2026-01-05"] * 3),
            "outcome": ["won", "lost", "open"],
            "days_to_close": [20.0, 3.0, np.nan],
            "days_observed": [100.0, 100.0, 50.0],
            "age_days": [1.0, 1.0, 1.0],
            "days_to_expected_close": [10.0, 10.0, 10.0],
        }
    )
    rows, label, weight = bin_rows(frame)
    by_deal = rows.assign(label=label).groupby("deal_id")
    # a: at risk in [0,7), [7,14), [14,30) — won in the third bin; nothing after.
    assert by_deal.get_group("a")["bin_start"].tolist() == [0, 7, 14]
    assert by_deal.get_group("a")["label"].tolist() == [0, 0, 1]
    # b: lost in the first bin.
    assert by_deal.get_group("b")["label"].tolist() == [2]
    # c: open, observed 50 days: bins ending by day 50 only, all "still open".
    assert by_deal.get_group("c")["bin_start"].tolist() == [0, 7, 14, 30]
    assert set(by_deal.get_group("c")["label"]) == {0}
    assert np.all(weight == 1.0)


def test_predictions_are_consistent_and_survive_a_round_trip(
    trained: TimingTrainingResult, history_and_truth: tuple[History, pd.DataFrame], tmp_path: Path
) -> None:
    history = history_and_truth[0]
    from features.build import build_features

    features = build_features(history, history.exported_at)
    p = np.full(len(features), 0.6)
    amount = features["amount"].to_numpy(dtype=float)
    first = trained.bundle.predict(features, history.exported_at, p, amount)
    assert (first["p_close_30d"] <= first["p_close_60d"] + 1e-12).all()
    assert (first["p_close_60d"] <= first["p_close_90d"] + 1e-12).all()
    assert (first["p_close_90d"] <= 0.6 + 1e-12).all()
    assert (first["p_close_this_month"] <= first["p_close_this_quarter"] + 1e-12).all()
    known = first["expected_close_date"].notna()
    assert known.mean() > 0.9  # unknown only past the data's support (few synthetic deals)
    assert (first["days_to_close_low"] <= first["days_to_close_high"])[known].all()
    assert (first["expected_close_date"][known] >= history.exported_at.normalize()).all()
    assert first.loc[~known, ["days_to_close_low", "days_to_close_high"]].isna().all().all()
    win = WinBundle(["amount"], {"amount": "numeric"}, {}, IdentityCalibrator(), None, 0.6)
    loaded = Scorer.load(Scorer(win, trained.bundle).save(tmp_path / "bundle")).timing
    assert isinstance(loaded, TimingBundle)
    second = loaded.predict(features, history.exported_at, p, amount)
    pd.testing.assert_frame_equal(first, second)


def test_bins_know_where_they_fall_in_the_calendar() -> None:
    """Quarter-end pushes: each bin knows its share of days in a quarter's last month and how
    far its start is from the quarter end."""
    frame = pd.DataFrame({"age_days": [1.0, 1.0], "days_to_expected_close": [5.0, 5.0]})
    rows = expand_bins(frame, pd.Series(pd.to_datetime(["2026-03-20", "2026-05-18"])))
    first = rows.iloc[0]  # [Mar 20, Mar 27): all in March (the last month of Q1)
    assert first["bin_quarter_last_month_share"] == pytest.approx(1.0)
    assert first["bin_days_to_quarter_end"] == pytest.approx(12.0)
    third = rows.iloc[2]  # [Apr 3, Apr 19): none in a quarter's last month
    assert third["bin_quarter_last_month_share"] == pytest.approx(0.0)
    k = len(rows) // 2
    may = rows.iloc[k + 3]  # [Jun 17, Jul 2) from May 18: 14 of 15 days in June
    assert may["bin_quarter_last_month_share"] == pytest.approx(14 / 15)
    assert may["bin_days_to_quarter_end"] == pytest.approx(14.0)
    assert first["bin_year_last_month_share"] == pytest.approx(0.0)
    assert first["bin_days_to_year_end"] == pytest.approx(287.0)  # Mar 20 -> Jan 1
    assert (rows["bin_calendar_intensity"] == 1.0).all()  # no calendar weights: flat
    december = {"month": [1.0] * 11 + [3.0], "weekday": [1.0] * 7}
    weighted = expand_bins(
        frame, pd.Series(pd.to_datetime(["2026-11-20", "2026-05-18"])), calendar=december
    )
    december_bin = weighted.iloc[2]  # [Dec 4, Dec 20): all in the year's last month
    assert december_bin["bin_year_last_month_share"] == pytest.approx(1.0)
    assert december_bin["bin_calendar_intensity"] == pytest.approx(3.0)
    assert weighted.iloc[1]["bin_calendar_intensity"] == pytest.approx((4 + 3 * 3) / 7)
    assert weighted.iloc[3]["bin_year_last_month_share"] == pytest.approx(12 / 15)


def test_bundles_saved_before_the_calendar_features_still_load(
    trained: TimingTrainingResult, tmp_path: Path
) -> None:
    path = trained.bundle.save(tmp_path / "timing")
    assert TimingBundle.load(path).bin_features == BIN_FEATURES
    doc = json.loads((path / TIMING_JSON).read_text(encoding="utf-8"))
    del doc["bin_features"]
    doc["format"] = 1
    (path / TIMING_JSON).write_text(json.dumps(doc), encoding="utf-8")
    legacy = TimingBundle.load(path)
    assert legacy.bin_features == LEGACY_BIN_FEATURES
    assert legacy.model_features[-len(LEGACY_BIN_FEATURES) :] == list(LEGACY_BIN_FEATURES)
    doc["format"] = 4  # from a newer salesml: refused with what to do, never misread
    (path / TIMING_JSON).write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(BundleError, match="reads 1, 2 or 3; retrain"):
        TimingBundle.load(path)


def test_bundles_saved_before_the_bin_offsets_predict_from_equal_classes(
    trained: TimingTrainingResult, history_and_truth: tuple[History, pd.DataFrame], tmp_path: Path
) -> None:
    """Format 2 had no per-bin starting scores: its booster's raw scores are the whole story."""
    from features.build import build_features

    history = history_and_truth[0]
    bundle = trained.bundle
    assert bundle.bin_log_priors is not None
    path = bundle.save(tmp_path / "timing")
    doc = json.loads((path / TIMING_JSON).read_text(encoding="utf-8"))
    assert TimingBundle.load(path).bin_log_priors == doc["bin_log_priors"]
    del doc["bin_log_priors"], doc["calendar_in_start"]
    doc["format"] = 2
    (path / TIMING_JSON).write_text(json.dumps(doc), encoding="utf-8")
    legacy = TimingBundle.load(path)
    assert legacy.bin_log_priors is None and legacy.booster is not None
    features = build_features(history, history.exported_at).head(50)
    rows = expand_bins(
        features, history.exported_at, legacy.edges, calendar=legacy.calendar_weights
    )
    raw = legacy.booster.predict(legacy.feature_contract().matrix(rows), raw_score=True)
    got = legacy.hazards(features, history.exported_at)
    want = softmax(np.asarray(raw, dtype=float), axis=-1).reshape(got.shape)
    np.testing.assert_allclose(got, want, atol=1e-9)
    assert not np.allclose(bundle.hazards(features, history.exported_at), got)


def test_recalibration_matches_the_held_out_shares_per_bin() -> None:
    """Scores that overstate a rare class (won within a short bin) are shifted until the
    weighted mean probability per bin equals what happened; none-class scores stay put."""
    rng = np.random.default_rng(3)
    n = 40_000
    index = rng.integers(0, 3, n)
    true_won = np.minimum(np.array([0.04, 0.10, 0.25])[index] * np.exp(rng.normal(0, 0.5, n)), 0.9)
    true_lost = np.minimum(np.full(n, 0.05), 0.99 - true_won)
    u = rng.random(n)
    y = np.where(u < true_won, WON, np.where(u < true_won + true_lost, LOST, NONE))
    w = rng.choice([1.0, 5.0], n)
    raw = np.log(np.column_stack([1 - true_won - true_lost, true_won, true_lost]))
    raw[:, WON] += 0.25 + rng.normal(0, 0.6, n)  # too high, and spread: the early-stop bias
    priors = np.zeros((3, 3))
    offsets = recalibrated_offsets(raw, y, w, index, priors)
    assert np.allclose(offsets[:, NONE], 0.0)
    for b in range(3):
        rows = index == b
        before = np.average(softmax(raw[rows], axis=-1)[:, WON], weights=w[rows])
        after = np.average(softmax(raw[rows] + offsets[b], axis=-1)[:, WON], weights=w[rows])
        observed = np.average(y[rows] == WON, weights=w[rows])
        assert before > observed * 1.1
        assert after == pytest.approx(observed, rel=0.02)


def test_calendar_weights_read_year_end_and_weekday_closings_off_the_history() -> None:
    """Won closings per open deal-day by month (December busy, growth not read as season) and
    by weekday (nobody closes on Sunday)."""
    rng = np.random.default_rng(5)
    as_of = pd.date_range("2024-01-01", "2025-12-29", freq="7D")
    rows = []
    for i, day in enumerate(as_of):
        for j in range(10 + i // 5):  # a growing pipeline
            rows.append(
                {"deal_id": f"d{i}-{j}", "as_of": day, "outcome": "open", "closed_at": pd.NaT}
            )
    frame = pd.DataFrame(rows)
    n = len(frame)
    closing = frame["as_of"] + pd.to_timedelta(rng.integers(0, 7, n), unit="D")
    december = closing.dt.month == 12
    won = (rng.random(n) < np.where(december, 0.6, 0.2)) & (closing.dt.day_of_week < 6)
    frame.loc[won, "outcome"] = "won"
    frame.loc[won, "closed_at"] = closing[won]
    weights = calendar_weights(frame)
    assert weights is not None
    month, weekday = np.asarray(weights["month"]), np.asarray(weights["weekday"])
    assert month.mean() == pytest.approx(1.0) and weekday.mean() == pytest.approx(1.0)
    assert month[11] > 1.7 * month[:11].max()  # December three times as busy
    assert month[:11].std() < 0.15  # the pipeline's growth is not read as a season
    assert weekday[6] == 0.0 and weekday[:6].min() > 0.8
    assert calendar_weights(frame.head(200)) is None  # too little history: spread evenly


def test_calendar_weights_move_a_bins_mass_between_its_days(tmp_path: Path) -> None:
    """A 30-day bin from Nov 16 puts its mass where deals close (December), not evenly;
    the deal's total won mass and the bin's own share are unchanged, and it survives saving."""
    k = len(EDGES) - 1
    table = [[0.9, 0.08, 0.02]] * k
    busy_december = {"month": [1.0] * 11 + [4.0], "weekday": [1.0] * 7}
    plain = TimingBundle(["amount"], {"amount": "numeric"}, {}, None, constant_hazards=table)
    weighted = TimingBundle(
        ["amount"],
        {"amount": "numeric"},
        {},
        None,
        constant_hazards=table,
        calendar_weights=busy_december,
    )
    as_of = pd.Timestamp("2025-10-24")  # bin 30-45 = Nov 23 - Dec 8: 8 days of Nov, 7 of Dec
    hz = plain.hazards(pd.DataFrame({"amount": [1.0]}), as_of)
    starts, ends = np.array([0.0, 38.0]), np.array([38.0, 60.0])  # to Dec 1, Dec 1 - Dec 23
    base = plain.won_between(hz, starts, ends)[0]
    assert np.allclose(plain.won_between(hz, starts, ends, as_of)[0], base)  # no weights
    loaded = TimingBundle.load(weighted.save(tmp_path / "timing"))
    assert loaded.calendar_weights == busy_december
    got = loaded.won_between(hz, starts, ends, as_of)[0]
    in_bin = hz[0, 3, 1] * np.prod(hz[0, :3, 0])  # the straddling bin's won mass (unconditional)
    share = in_bin / loaded.won_mass(hz)[0]
    assert got[0] == pytest.approx(base[0] - share * (8 / 15 - 8 / 36))  # 8 Nov days of 8 + 7 x 4
    assert got.sum() == pytest.approx(base.sum())
    by_edge = loaded.won_by(hz, np.array([60.0]), as_of)  # whole bins: unchanged
    assert by_edge == pytest.approx(plain.won_by(hz, np.array([60.0])))


def test_the_won_score_starts_from_the_calendar_intensity(
    trained: TimingTrainingResult, history_and_truth: tuple[History, pd.DataFrame]
) -> None:
    """With ``calendar_in_start`` the won-vs-open odds of every bin are the booster's times
    the bin's calendar intensity: a quiet stretch (October) starts with fewer closings."""
    from dataclasses import replace

    from features.build import build_features

    history = history_and_truth[0]
    bundle = trained.bundle
    assert bundle.calendar_in_start and bundle.calendar_weights is not None
    features = build_features(history, history.exported_at).head(20)
    as_of = pd.Timestamp("2026-10-01")
    rows = expand_bins(features, as_of, bundle.edges, calendar=bundle.calendar_weights)
    intensity = rows["bin_calendar_intensity"].to_numpy().reshape(len(features), -1)
    with_calendar = bundle.hazards(features, as_of)
    without = replace(bundle, calendar_in_start=False).hazards(features, as_of)
    odds = with_calendar[..., WON] / with_calendar[..., NONE]
    odds_without = without[..., WON] / without[..., NONE]
    np.testing.assert_allclose(odds / odds_without, intensity, rtol=1e-9)


def test_a_bundle_with_a_ruled_out_bin_is_strict_json_and_reads_back_exactly(
    trained: TimingTrainingResult, tmp_path: Path
) -> None:
    """A bin the data never closes in has a log prior of -inf: timing.json stays RFC 8259
    JSON (no -Infinity token) and the loaded bundle has the same -inf."""
    import dataclasses

    assert trained.bundle.bin_log_priors is not None
    priors = [list(row) for row in trained.bundle.bin_log_priors]
    priors[0][0] = -math.inf
    bundle = dataclasses.replace(trained.bundle, bin_log_priors=priors)
    path = bundle.save(tmp_path / "timing")

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    json.loads((path / TIMING_JSON).read_text(encoding="utf-8"), parse_constant=refuse)
    assert TimingBundle.load(path).bin_log_priors == priors


def test_expected_revenue_of_a_deal_without_an_amount_comes_from_its_list_price(
    trained: TimingTrainingResult, history_and_truth: tuple[History, pd.DataFrame]
) -> None:
    """One rule for amounts (the KPI engine's): a deal without an amount is worth its
    product's list price, and the row says so; a deal with neither has no expected revenue."""
    from features.build import build_features
    from salesml.scoring import score_features
    from salesml.scoring.scorer import ListPrices

    history = history_and_truth[0]
    features = build_features(history, history.exported_at).head(30).copy()
    features["amount"] = features["amount"].astype(float)
    features.iloc[:10, features.columns.get_loc("amount")] = np.nan
    features.iloc[10:, features.columns.get_loc("amount")] = 5000.0
    deals = features.index.astype(str)
    by_deal = pd.Series(1000.0 + np.arange(20), index=deals[:20])  # deals 20-29: no price
    prices = ListPrices(pd.Series(dtype="float64"), by_deal)
    win = WinBundle(["amount"], {"amount": "numeric"}, {}, IdentityCalibrator(), None, 0.6)
    plain = score_features(features, Scorer(win, trained.bundle), history.exported_at)
    rows = score_features(features, Scorer(win, trained.bundle).priced(prices), history.exported_at)
    assert plain["expected_revenue"].iloc[:10].isna().all()
    assert rows["expected_revenue"].iloc[:10].to_numpy() == pytest.approx(0.6 * by_deal.iloc[:10])
    assert (rows["expected_revenue_basis"].iloc[:10] == "list_price").all()
    assert rows["expected_revenue"].iloc[10:].to_numpy() == pytest.approx(0.6 * 5000.0)
    assert (rows["expected_revenue_basis"].iloc[10:] == "amount").all()


def test_the_float_matrix_path_gives_the_hazards_of_the_frame_path(
    trained: TimingTrainingResult,
    history_and_truth: tuple[History, pd.DataFrame],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API's what-ifs predict from a float matrix (deal rows encoded once, repeated per
    bin); it must give exactly what the frame of ``expand_bins`` gives LightGBM."""
    import dataclasses

    from features.build import build_features
    from salesml.models.timing import bundle as timing_module

    history = history_and_truth[0]
    features = build_features(history, history.exported_at).head(40)
    fast = dataclasses.replace(trained.bundle)
    assert fast._codes_match
    monkeypatch.setattr(timing_module, "codes_match", lambda *_: False)
    slow = dataclasses.replace(trained.bundle)
    assert not slow._codes_match
    for rows in (features, features.head(1)):
        np.testing.assert_allclose(
            fast.hazards(rows, history.exported_at),
            slow.hazards(rows, history.exported_at),
            rtol=0,
            atol=1e-12,
        )


def test_when_is_unknown_for_a_deal_older_than_any_deal_won(
    trained: TimingTrainingResult, history_and_truth: tuple[History, pd.DataFrame]
) -> None:
    """Maven's open deals are 150-420 days old and its won deals closed within 138 days: the
    model's tail dated them in 2020. Past the oldest won age (plus a quarter) the close date is
    unknown; the window probabilities stay."""
    from features.build import build_features

    history = history_and_truth[0]
    limit = trained.bundle.metadata["won_age_max_days"]
    assert limit is not None and limit > 0
    features = build_features(history, history.exported_at).head(20).copy()
    features["age_days"] = np.r_[np.full(10, 5.0), np.full(10, 2.0 * limit)]
    p = np.full(len(features), 0.5)
    rows = trained.bundle.predict(features, history.exported_at, p, None)
    assert rows["expected_close_date"].iloc[:10].notna().all()
    assert rows["expected_close_date"].iloc[10:].isna().all()
    assert rows["days_to_close_high"].iloc[10:].isna().all()
    assert rows["p_close_90d"].notna().all()

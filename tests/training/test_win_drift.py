"""Calibration under drift (``training.win.drift``): on where the win rate trends, off where
it does not, judged on the newest matured cohort inside training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from training.win.drift import MIN_T, drift_check, first_of_new_cohort, fit_candidate, fit_trend

START = pd.Timestamp("2024-01-01")


def _deals(n: int, days: int, slope: float, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """One weekly snapshot per week of life for ``n`` deals created over ``days`` days; the
    true log-odds are ``score + slope * years since START``."""
    rng = np.random.default_rng(seed)
    created = START + pd.to_timedelta(np.sort(rng.uniform(0, days, n)), unit="D")
    score = rng.normal(0, 1, n)
    years = (created - START).days.to_numpy() / 365.25
    won = rng.random(n) < expit(score + slope * years)
    weeks = rng.integers(1, 4, n)
    rows = pd.DataFrame(
        {
            "deal_id": np.repeat(np.arange(n), weeks),
            "as_of": np.repeat(created, weeks)
            + pd.to_timedelta(np.concatenate([np.arange(w) * 7 for w in weeks]) + 1, unit="D"),
            "label_won": np.repeat(won.astype(float), weeks),
        }
    )
    rows["age_days"] = (rows["as_of"] - np.repeat(created, weeks)).dt.days.astype(float)
    return rows, np.repeat(score, weeks)


def _check(slope: float, seed: int) -> tuple[str | None, dict[str, float]]:
    rows, scores = _deals(6_000, 1000, slope, seed)
    cut = START + pd.Timedelta(days=700)
    created = rows["as_of"] - pd.to_timedelta(rows["age_days"], unit="D")
    older, newer = (created < cut - pd.Timedelta(days=30)).to_numpy(), (created >= cut).to_numpy()
    check = drift_check(rows[older], scores[older], rows[newer], scores[newer], cut, "platt")
    return check.adopted, check.t


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_steady_trend_turns_the_drift_calibration_on(seed: int) -> None:
    adopted, t = _check(slope=0.6, seed=seed)
    assert adopted == "trend" and t[adopted] > MIN_T


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_trend_leaves_the_plain_calibrator(seed: int) -> None:
    adopted, t = _check(slope=0.0, seed=seed)
    assert adopted is None and set(t) == {"trend"} and max(t.values()) <= MIN_T


def test_the_trend_served_at_the_as_of_carries_the_level_forward() -> None:
    rows, scores = _deals(20_000, 1000, 0.6, seed=4)
    trend = fit_trend(rows, scores)
    assert trend is not None and trend.c == pytest.approx(0.6, abs=0.15)
    at = START + pd.Timedelta(days=1000)
    platt = trend.platt_at(at)
    assert platt.predict(np.array([0.0]))[0] == pytest.approx(expit(0.6 * 1000 / 365.25), abs=0.05)


def test_only_new_deals_are_judged_once_each_at_their_first_snapshot() -> None:
    rows, _ = _deals(300, 100, 0.0, seed=5)
    since = START + pd.Timedelta(days=50)
    picked = rows.iloc[first_of_new_cohort(rows, since)]
    assert picked["deal_id"].is_unique
    assert (picked["as_of"] - pd.to_timedelta(picked["age_days"], unit="D") >= since).all()
    assert (picked["age_days"] == 1).all()
    created = rows["as_of"] - pd.to_timedelta(rows["age_days"], unit="D")
    assert picked["deal_id"].nunique() == rows.loc[created >= since, "deal_id"].nunique()


def test_a_base_rate_follows_a_steady_trend_only_when_the_check_keeps_it() -> None:
    rows, _ = _deals(6_000, 1000, 0.8, seed=6)
    cut = START + pd.Timedelta(days=700)
    created = rows["as_of"] - pd.to_timedelta(rows["age_days"], unit="D")
    older, newer = rows[created < cut - pd.Timedelta(days=30)], rows[created >= cut]
    weights = 1.0 / older.groupby("deal_id")["deal_id"].transform("size").to_numpy(float)
    check = drift_check(older, None, newer, None, cut, None, weights)
    assert check.adopted is not None and check.t[check.adopted] > MIN_T
    at = START + pd.Timedelta(days=1000)
    plain = fit_candidate("plain", rows, None, None, None, at)
    trend = fit_candidate("trend", rows, None, None, None, at)
    assert isinstance(plain, float) and isinstance(trend, float) and trend > plain + 0.05

"""Calibration under drift (``training.win.drift``, ``training.win.calibration_cohort``): on
where the win rate moves, off where it does not, judged inside training on the newest cohort
by the likelihood of what is known about it at the as-of (won, lost, or open at its age)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from training.win.calibration_cohort import (
    LOST,
    OPEN,
    WON,
    CycleLaw,
    States,
    censored_log_loss,
    fit_shift,
    states_at,
)
from training.win.drift import (
    MIN_T,
    Cohorts,
    drift_check,
    fit_candidate,
    fit_trend,
)

START = pd.Timestamp("2024-01-01")
MATURITY = 60.0


def _world(
    n: int, days: int, level: Callable[[np.ndarray], np.ndarray], seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deals created over ``days`` days, exported at the last; true log-odds ``score +
    level(years since START)``; won deals take longer to close. Returns the deals as known at
    the export and their weekly snapshots (each with its raw ``score``)."""
    rng = np.random.default_rng(seed)
    offset = np.sort(rng.uniform(0, days, n))
    created = START + pd.to_timedelta(offset, unit="D")
    score = rng.normal(0, 1, n)
    won = rng.random(n) < expit(score + level(offset / 365.25))
    cycle = np.maximum(7.0, rng.lognormal(np.log(40), 0.5, n)) * np.where(won, 1.3, 0.8)
    export = START + pd.Timedelta(days=days)
    closed = created + pd.to_timedelta(cycle, unit="D")
    is_open = np.asarray(closed > export)
    deals = pd.DataFrame(
        {
            "deal_id": np.arange(n),
            "created_at": created,
            "closed_at": pd.Series(closed).where(~is_open),
            "status": np.where(is_open, "open", np.where(won, "won", "lost")),
        }
    )
    life = np.minimum(cycle, (export - created).total_seconds().to_numpy() / 86400)
    weeks = np.maximum(1, np.ceil((life - 1) / 7).astype(int))
    deal = np.repeat(np.arange(n), weeks)
    age = np.concatenate([np.arange(w) * 7.0 for w in weeks]) + 1
    rows = pd.DataFrame(
        {
            "deal_id": deal,
            "as_of": created[deal] + pd.to_timedelta(age, unit="D"),
            "age_days": age,
            "score": score[deal],
            "label_won": np.where(is_open[deal], np.nan, won[deal].astype(float)),
            "closed_at": deals["closed_at"].to_numpy()[deal],
        }
    )
    return deals, rows


def _score(rows: pd.DataFrame) -> np.ndarray:
    return rows["score"].to_numpy(dtype=float)


def _check(
    level: Callable[[np.ndarray], np.ndarray], seed: int, base_rate: bool = False
) -> tuple[str | None, dict[str, float], float | None]:
    deals, rows = _world(8_000, 1000, level, seed)
    inner = START + pd.Timedelta(days=800)
    # the calibration period: each deal once, at its first snapshot (the scores here carry no
    # age, so weekly rows would lean to the long, more often won deals)
    older = rows.drop_duplicates("deal_id")
    older = older[
        (older["as_of"] >= START + pd.Timedelta(days=500))
        & (older["as_of"] <= inner - pd.Timedelta(days=MATURITY))
        & (older["closed_at"] <= inner)
    ]
    cohorts = Cohorts.of(deals, rows, MATURITY, START + pd.Timedelta(days=1000))
    if base_rate:
        check = drift_check(older, None, cohorts, inner, None)
    else:
        check = drift_check(older, _score(older), cohorts, inner, "platt", score=_score)
    return check.adopted, check.t, check.cohort_shift


def _flat(years: np.ndarray) -> np.ndarray:
    return np.full_like(years, -0.2)


def _rising(years: np.ndarray) -> np.ndarray:
    return -0.8 + 1.2 * years


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_no_drift_leaves_the_plain_calibrator(seed: int) -> None:
    adopted, t, shift = _check(_flat, seed)
    assert adopted is None and set(t) == {"cohort"}
    assert max(t.values()) <= MIN_T
    assert shift is not None and abs(shift) < 0.3


@pytest.mark.parametrize("seed", [1, 2])
def test_a_rising_win_rate_turns_a_drift_calibration_on(seed: int) -> None:
    adopted, t, shift = _check(_rising, seed)
    assert adopted == "cohort" and t[adopted] > MIN_T
    assert shift is not None and shift > 0.2


def test_a_base_rate_follows_the_newest_cohort_when_the_check_keeps_it() -> None:
    adopted, t, shift = _check(_rising, seed=4, base_rate=True)
    assert adopted == "cohort" and t[adopted] > MIN_T
    assert shift is not None and shift > 0.2


def test_the_cohort_shift_recovers_a_censored_cohorts_level() -> None:
    """Deals created in the last maturity before the as-of, mostly open: their early closes
    and how long won and lost deals take tell their level."""
    true_shift = 0.8
    deals, rows = _world(20_000, 1000, lambda y: np.where(y > 900 / 365.25, true_shift, 0.0), 5)
    at = START + pd.Timedelta(days=1000)
    law = CycleLaw.at(deals, at, 2 * MATURITY)
    assert law is not None
    recent = deals[deals["created_at"] > at - pd.Timedelta(days=MATURITY)]
    states = states_at(recent, at)
    assert (states.state == OPEN).mean() > 0.5
    first = rows.drop_duplicates("deal_id").set_index("deal_id")["score"]
    found = fit_shift(first.reindex(recent["deal_id"]).to_numpy(), states, law)
    assert found is not None and found.se is not None
    assert abs(found.shift - true_shift) < 3 * found.se + 0.05, found
    # the deals closed by then alone lean to losses (won deals take longer)
    closed = states.state != OPEN
    scores = first.reindex(recent["deal_id"]).to_numpy()
    assert (states.state[closed] == WON).mean() < expit(scores[closed] + true_shift).mean() - 0.05


def test_closes_after_the_as_of_do_not_change_the_cohort_shift() -> None:
    deals, rows = _world(6_000, 1000, _rising, 6)
    at = START + pd.Timedelta(days=800)
    cohorts = Cohorts.of(deals, rows, MATURITY, START + pd.Timedelta(days=1000))
    changed = deals.copy()
    later = changed["closed_at"] > at
    changed.loc[later, "status"] = np.where(changed.loc[later, "status"] == "won", "lost", "won")
    changed.loc[later, "closed_at"] += pd.Timedelta(days=30)
    other = Cohorts.of(changed, rows, MATURITY, START + pd.Timedelta(days=1000))
    a, b = cohorts.shift(0.5, at, None), other.shift(0.5, at, None)
    assert a is not None and b is not None and a.shift == b.shift


def test_an_open_deal_is_judged_by_what_its_age_says() -> None:
    law = CycleLaw(np.repeat([30.0, 60.0, 90.0], 20), np.repeat([10.0, 20.0, 30.0], 20))
    states = States(np.array([OPEN, OPEN, WON, LOST]), np.array([0.0, 45.0, 50.0, 15.0]))
    loss = censored_log_loss(np.full(4, 0.5), states, law)
    assert loss[0] == pytest.approx(0.0)  # brand new: nothing known yet
    # at 45 days 2/3 of won and none of the lost deals are still open
    assert loss[1] == pytest.approx(-np.log(0.5 * 2 / 3))
    assert loss[2] == pytest.approx(np.log(2)) and loss[3] == pytest.approx(np.log(2))


def test_the_trend_served_at_the_as_of_carries_the_level_forward() -> None:
    _, rows = _world(20_000, 1000, lambda y: 0.6 * y, seed=4)
    labelled = rows[rows["label_won"].notna()]
    trend = fit_trend(labelled, _score(labelled))
    assert trend is not None and trend.c == pytest.approx(0.6, abs=0.15)
    at = START + pd.Timedelta(days=1000)
    platt = trend.platt_at(at)
    assert platt.predict(np.array([0.0]))[0] == pytest.approx(expit(0.6 * 1000 / 365.25), abs=0.05)


def test_the_cohort_candidate_is_a_platt_calibrator_moved_to_the_cohorts_level() -> None:
    deals, rows = _world(8_000, 1000, _rising, 7)
    at = START + pd.Timedelta(days=1000)
    cohorts = Cohorts.of(deals, rows, MATURITY, at)
    labelled = rows[rows["label_won"].notna() & (rows["as_of"] <= at - pd.Timedelta(days=200))]
    plain = fit_candidate("plain", labelled, _score(labelled), "platt", None, at)
    moved = fit_candidate("cohort", labelled, _score(labelled), "platt", None, at, cohorts, _score)
    assert plain is not None and moved is not None
    assert not isinstance(plain, float) and not isinstance(moved, float)
    assert moved.to_params()["a"] == pytest.approx(plain.to_params()["a"])
    assert moved.to_params()["b"] > plain.to_params()["b"] + 0.2

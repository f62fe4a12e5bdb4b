"""What the revenue forecast serves (issue 17): the candidate that wins the user's own backtest,
never worse than seasonal naive there, with intervals from its own backtest errors, never
below what is already won, and the level of the data where a history starts empty."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.foreign.orders import daily_intensity, draw_shape, write_orders
from features.history import History
from salesml.models.revenue.bundle import ForecastBundle, FreqModel, Served, key, widened
from salesml.models.revenue.candidates import (
    ENSEMBLE_SIZE,
    METHODS,
    MONTHLY,
    candidate_forecasts,
    monthly_forecasts,
    weekday_profile,
)
from salesml.models.revenue.pipeline import PipelineForecast, simulate
from salesml.models.revenue.prophet_model import fit_series
from tests.helpers.history import import_history
from training.revenue import fit as tf
from training.revenue.register import forecast_card
from training.revenue.select import (
    BLEND,
    LONG_ORIGINS,
    MIN_LONG_ORIGINS,
    conformal_table,
    long_origins,
    select,
)

# --- on a won-only order history (no quarter-end pushes), trained end to end ----------------


@pytest.fixture(scope="module")
def orders(tmp_path_factory: pytest.TempPathFactory) -> History:
    """A small shop's orders (about 8 a day over three years), imported like any export."""
    root = tmp_path_factory.mktemp("orders")
    write_orders(root / "export", 7, date(2022, 1, 1), date(2025, 1, 2), scale=0.25)
    history = import_history(root / "export", "canonical", root / "home")
    # One segment per dimension: the company total is what this file is about (and it is fast).
    return replace(history, deals=history.deals.assign(product="Goods", region="All"))


@pytest.fixture(scope="module")
def trained(orders: History) -> tf.ForecastTrainingResult:
    return tf.train_forecast(orders, freqs=("month",), max_origins=4)


def _quarter_end_bump(values: np.ndarray, months: pd.DatetimeIndex) -> float:
    """Mean ratio of a quarter's last month to the mean of the months either side of it."""
    ratios = [
        values[i] / ((values[i - 1] + values[i + 1]) / 2)
        for i in range(1, len(values) - 1)
        if months[i].month % 3 == 0
    ]
    return float(np.mean(ratios))


def test_order_history_without_quarter_end_peaks_gets_none(
    trained: tf.ForecastTrainingResult, orders: History
) -> None:
    """The served forecast's quarter-end months stand to their neighbours as the generator's
    expected revenue does (a smooth yearly swing and holidays, no quarter-end push). The
    tuned Prophet series alone put them 11 % below (seed 7: its month-of-year terms chase
    noise)."""
    as_of = orders.exported_at
    out = trained.bundle.forecast("month", 12, as_of, _empty_pipeline(as_of, 12), {})
    months = pd.DatetimeIndex(out["period_start"])
    days = pd.date_range("2022-01-01", months[-1] + pd.offsets.MonthEnd(0), freq="D")
    shape = draw_shape(np.random.default_rng(7))  # the order generator's own draws for seed 7
    per_day = pd.Series(daily_intensity(days, shape), index=days)
    truth = per_day.groupby(per_day.index.to_period("M").to_timestamp()).sum()
    expected = _quarter_end_bump(truth.reindex(months).to_numpy(), months)
    served = _quarter_end_bump(out["forecast"].to_numpy(dtype=float), months)
    assert abs(served - expected) < 0.05, (served, expected)


def test_served_method_never_loses_to_seasonal_naive_on_its_own_backtest(
    trained: tf.ForecastTrainingResult,
) -> None:
    choices = trained.choices["month"]
    assert choices, "a three-year history has backtests"
    for choice in choices:
        served = choice.scores[choice.champion]["wape_total"]
        naive = choice.scores["seasonal_naive"]["wape_total"]
        assert served is not None and naive is not None
        assert served <= naive, (choice.from_step, choice.champion, served, naive)
    assert trained.bundle.model("month").served[0].method == choices[0].champion
    assert trained.bundle.metadata["served"]["month"]["note"]


def test_the_card_says_what_is_served_and_lists_every_candidate(
    trained: tf.ForecastTrainingResult,
) -> None:
    card = forecast_card(trained)
    assert "never one standard forecaster alone" in card
    first = trained.choices["month"][0]
    assert first.note in card
    assert card.count("(served)") == len(trained.choices["month"])
    assert "seasonal naive" in card


# --- the choice and its intervals, on hand-made backtest rows ---------------------------------


def _rows(noise: float, seed: int = 0, origins: int = 8, steps: int = 3) -> pd.DataFrame:
    """Backtest rows of the total: actuals repeat a season exactly; the blend is off by
    ``noise`` (log scale), the other candidates by half of it."""
    rng = np.random.default_rng(seed)
    out = []
    for o in range(origins):
        origin = pd.Timestamp("2024-01-01") + pd.DateOffset(months=o)
        for s in range(steps):
            actual = 1000.0 * (1 + 0.3 * ((o + s) % 3 == 2))
            row = {
                "origin": origin,
                "step": s,
                "period_start": origin + pd.DateOffset(months=s),
                "actual": actual,
                "seasonal_naive": actual,
                BLEND: actual * float(np.exp(noise * rng.normal())),
            }
            for name in ("naive", "mean", "ets"):
                row[name] = actual * float(np.exp(0.5 * noise * rng.normal()))
            out.append(row)
    return pd.DataFrame(out)


def test_when_everything_loses_the_best_simple_method_is_served_and_said() -> None:
    choice = select(_rows(0.3), 3, [BLEND, *METHODS])
    assert choice.champion == "seasonal_naive"
    assert choice.members == ["seasonal_naive"]
    assert "every other candidate lost to seasonal naive" in choice.note
    assert choice.scores[BLEND]["wape_total"] > choice.scores["seasonal_naive"]["wape_total"]


def test_a_single_standard_forecaster_is_never_served_alone() -> None:
    """AutoETS has the lowest backtest WAPE on its own, yet the mean of the best few of the
    pool is served (the best single one on a few origins is mostly the luckiest)."""
    rows = _rows(0.4, seed=1)
    rng = np.random.default_rng(5)
    actual = rows["actual"].to_numpy()
    rows["seasonal_naive"] = actual * np.exp(0.5 * rng.normal(size=len(rows)))
    rows["naive"] = rows["mean"] = actual * np.exp(0.5 * rng.normal(size=len(rows)))
    for name, noise in (("ets", 0.05), ("theta", 0.1), ("prophet", 0.12), ("mstl", 0.15)):
        rows[name] = actual * np.exp(noise * rng.normal(size=len(rows)))
    choice = select(rows, 3, [BLEND, *METHODS])
    assert choice.scores["ets"]["wape_total"] < choice.scores["ensemble"]["wape_total"]
    assert choice.champion == "ensemble"
    assert len(choice.members) == ENSEMBLE_SIZE
    assert set(choice.members) <= {"ets", "mstl", "prophet", "theta"}
    served = choice.scores["ensemble"]["wape_total"]
    assert served < choice.scores["seasonal_naive"]["wape_total"]


def test_a_choice_on_the_near_steps_can_serve_the_far_ones() -> None:
    """Without season-long backtests the near rows choose what carries the far steps: the
    blend is not a candidate there (its pipeline does not reach that far), and the note says
    on which steps it was judged."""
    rows = _rows(0.05, seed=2)  # the blend is the best on the near steps
    rng = np.random.default_rng(4)
    rows["series"] = rows["actual"] * np.exp(0.6 * rng.normal(size=len(rows)))
    for name in ("seasonal_naive", "naive", "mean", "ets"):
        rows[name] = rows["actual"] * np.exp(0.3 * rng.normal(size=len(rows)))
    near = select(rows, 3, [BLEND, *METHODS])
    far = select(rows, 3, ["series", *METHODS], serve_from=3)
    assert near.champion == BLEND and near.from_step == 0
    assert far.champion not in (BLEND, "series") and far.from_step == 3
    assert len(far.log_errors) == 3  # widths of the near steps, widened past them when served
    assert "on the near steps" in far.note


def test_intervals_widen_with_the_backtest_errors() -> None:
    quiet, loud = _rows(0.1), _rows(0.4)
    narrow = conformal_table(quiet, quiet[BLEND].to_numpy(), 50.0, 3)
    wide = conformal_table(loud, loud[BLEND].to_numpy(), 50.0, 3)
    for a, b in zip(narrow, wide, strict=True):
        assert 0 < a["upper_80"] < b["upper_80"] <= b["upper_95"]
        assert b["lower_80"] < a["lower_80"] < 0


# --- serving: never below what is already won -----------------------------------------------


def _empty_pipeline(as_of: pd.Timestamp, n: int) -> PipelineForecast:
    periods = pd.date_range(as_of.to_period("M").to_timestamp(), periods=n, freq="MS")
    return simulate(np.zeros((0, n)), np.zeros(0), {"team": np.array([], dtype=object)}, periods)


def _won_path_bundle(path_level: float) -> ForecastBundle:
    idx = pd.date_range("2024-01-01", periods=24, freq="MS")
    series = {
        key("total", "total"): pd.Series(np.full(24, 1000.0), index=idx),
        key("team", "A"): pd.Series(np.full(24, 600.0), index=idx),
        key("team", "B"): pd.Series(np.full(24, 400.0), index=idx),
    }
    models = {name: fit_series(s, "month") for name, s in series.items()}
    errors = [{"lower_95": -0.6, "lower_80": -0.4, "upper_80": 0.4, "upper_95": 0.6}] * 3
    served = Served("ets", 0, [path_level] * 24, "2026-01-01", errors, 10.0)
    fm = FreqModel(
        "month",
        models,
        [[1.0, 0.0, 0.0]] * 3,  # the pipeline alone (its deals have no amounts: it is 0)
        {"total": errors, "segment": errors},
        {"total": 10.0, "segment": 10.0},
        ("pipeline", "new_deals", "series"),
        served=[served],
    )
    return ForecastBundle({"month": fm}, {}, 0.0, {})


@pytest.mark.parametrize("path_level", [0.0, 1000.0])
def test_no_period_is_forecast_below_what_is_already_won(path_level: float) -> None:
    """Open deals without amounts bring nothing; the month already holds 5,000 won, more than
    any forecaster expected: the month is forecast at 5,000 or more, every segment at least
    what it has won."""
    as_of = pd.Timestamp("2026-01-20")
    won = {key("total", "total"): 5000.0, key("team", "A"): 3500.0, key("team", "B"): 1500.0}
    out = _won_path_bundle(path_level).forecast(
        "month", 3, as_of, _empty_pipeline(as_of, 3), won, by="team"
    )
    january = out[out["period_start"] == pd.Timestamp("2026-01-01")].set_index("segment")
    for segment, amount in (("total", 5000.0), ("A", 3500.0), ("B", 1500.0)):
        assert january.loc[segment, "forecast"] >= amount
        assert january.loc[segment, "lower_95"] >= amount
    later = out[(out["segment"] == "total") & (out["period_start"] > as_of)]
    assert (later["forecast"] == path_level).all()


def test_served_bundle_round_trips(tmp_path: Path) -> None:
    bundle = _won_path_bundle(800.0)
    loaded = ForecastBundle.load(bundle.save(tmp_path / "forecast"))
    as_of = pd.Timestamp("2026-01-20")
    a = bundle.forecast("month", 3, as_of, _empty_pipeline(as_of, 3), {}, by="team")
    b = loaded.forecast("month", 3, as_of, _empty_pipeline(as_of, 3), {}, by="team")
    pd.testing.assert_frame_equal(a, b)
    assert loaded.model("month").served == bundle.model("month").served


# --- a history that starts empty: the level, not the empty months a year on -------------------


def test_series_after_an_empty_start_forecasts_the_level_not_zero() -> None:
    """Five months without a sale, then nine months of about 1.0M (Maven's shape): the
    months a year after the empty ones are forecast at the level."""
    idx = pd.date_range("2016-10-01", periods=14, freq="MS")
    rng = np.random.default_rng(3)
    values = np.r_[np.zeros(5), 1e6 * np.exp(0.2 * rng.normal(size=9))]
    forecast = fit_series(pd.Series(values, index=idx), "month").predict(4).forecast
    assert np.all((forecast > 0.7e6) & (forecast < 1.3e6)), forecast


def test_maven_january_to_march_2018_at_its_2017_level(maven_dir: Path, tmp_path: Path) -> None:
    history = import_history(maven_dir, "maven", tmp_path / "home")
    total = tf.segment_series(history.deals, "month", history.exported_at)[key("total", "total")]
    forecast = fit_series(total, "month").predict(4)
    months = pd.DatetimeIndex(forecast.period_start)
    level = forecast.forecast[months >= pd.Timestamp("2018-01-01")]
    assert len(level) == 3
    assert np.all((level > 0.7e6) & (level < 1.3e6)), level


def test_season_long_backtest_origins_follow_two_seasons_of_sales_and_spread_out() -> None:
    """Season-long backtests start after two seasons of sales (what the forecasters need for
    their yearly terms); a three-year history has too few of them."""
    idx = pd.date_range("2021-01-01", periods=63, freq="MS")
    total = pd.Series(np.r_[np.zeros(3), np.full(60, 100.0)], index=idx)
    origins = long_origins(total, "month", 12, 1)
    positions = [idx.get_loc(o) for o in origins]
    assert len(origins) == LONG_ORIGINS
    assert positions[0] >= 3 + 24  # two seasons of sales before the first
    assert positions[-1] == 63 - 12  # the latest with a complete horizon
    assert min(np.diff(positions)) >= 2  # spread over the span, not bunched at its end
    assert len(long_origins(total.iloc[: 3 + 36], "month", 12, 1)) < MIN_LONG_ORIGINS


# --- past the blend's horizon: series methods only ---------------------------------------------


def test_the_blends_series_is_never_served_alone_past_the_horizon() -> None:
    """The tuned series is the best single forecaster of the far steps, yet only a mean of
    the pool's best (of which it may be one) or a simple method carries them."""
    rows = _rows(0.3, seed=3)
    rng = np.random.default_rng(8)
    actual = rows["actual"].to_numpy()
    for name in ("seasonal_naive", "naive", "mean"):
        rows[name] = actual * np.exp(0.3 * rng.normal(size=len(rows)))
    rows["series"] = actual * np.exp(0.02 * rng.normal(size=len(rows)))
    rows["theta"] = actual * np.exp(0.1 * rng.normal(size=len(rows)))
    far = select(rows, 3, ["series", *METHODS], serve_from=3)
    assert far.scores["series"]["wape_total"] < far.scores["ensemble"]["wape_total"]
    assert far.champion == "ensemble"
    assert "series" in far.members


# --- weeks from months (temporal reconciliation) -----------------------------------------------


def _daily(weekday_weights: list[float], years: int = 3) -> pd.Series:
    days = pd.date_range("2021-01-01", periods=365 * years, freq="D")
    season = 1 + 0.4 * np.sin(2 * np.pi * days.day_of_year.to_numpy() / 365.25)
    return pd.Series(100.0 * season * np.asarray(weekday_weights)[days.day_of_week], index=days)


def test_weeks_from_months_add_up_to_the_months_and_follow_the_weekdays() -> None:
    """A monthly forecast spread to weeks keeps each month's total, and a week gets its
    days' share by the weekday profile (here: nothing sold at weekends)."""
    daily = _daily([1, 1, 1, 1, 1, 0, 0])
    start = pd.Timestamp("2023-12-04")  # a Monday; November is the last complete month
    weeks = monthly_forecasts(daily[daily.index < start], start, 9, ["seasonal_naive"])
    per_week = weeks["seasonal_naive"]
    # Seasonal naive's December is December 2022's total; the weeks of 4–31 December 2023
    # hold 20 of December 2023's 21 weekdays (the 1st, a Friday, is before the start).
    dec = daily[(daily.index >= "2022-12-01") & (daily.index < "2023-01-01")].sum()
    assert per_week[:4].sum() == pytest.approx(dec * 20 / 21, rel=1e-3)
    assert np.all(per_week > 0)
    profile = weekday_profile(daily)
    assert profile[5:].max() == 0 and profile[:5].min() > 0


def test_weekly_candidates_include_the_monthly_fits_spread_to_weeks() -> None:
    daily = _daily([1.2, 1, 1, 1, 1.3, 0.5, 0.2])
    weekly = daily.groupby(daily.index.to_period("W-SUN").start_time).sum()
    weekly = weekly[(weekly.index > daily.index[0]) & (weekly.index < pd.Timestamp("2023-12-25"))]
    known = daily[daily.index < pd.Timestamp("2023-12-25")]
    fast = ["monthly_seasonal_naive", "monthly_ets", "monthly_theta"]  # of MONTHLY: quick fits
    out = candidate_forecasts(weekly, "week", 12, known, ["naive", *fast])
    assert set(fast) <= set(out) and set(fast) <= set(MONTHLY)
    level = weekly.iloc[-52:].mean()
    for name in fast:
        assert np.all(out[name][1:] > 0.3 * level) and np.all(out[name] < 3 * level), name
    monthly = candidate_forecasts(weekly.iloc[-30:], "month", 3, known, ["naive", *fast])
    assert set(monthly) == {"naive"}  # months are not spread to months


# --- interval widths past the backtested steps ---------------------------------------------------


def test_widths_past_the_backtest_grow_with_the_drift_not_with_the_noise() -> None:
    """Errors that do not grow over the backtested steps (noise) keep their width a year
    ahead; errors that grow like a random walk's keep growing like √ steps."""
    flat = [{"lower_80": -0.3, "upper_80": 0.3}] * 8
    assert widened(flat, 51)["upper_80"] == pytest.approx(0.3)
    assert widened(flat, 51)["lower_80"] == pytest.approx(-0.3)
    walk = [{"upper_80": 0.1 * np.sqrt(k)} for k in range(1, 4)]
    assert widened(walk, 11)["upper_80"] == pytest.approx(0.1 * np.sqrt(12))
    mixed = [{"upper_80": float(np.sqrt(0.04 + 0.01 * k))} for k in range(1, 4)]
    grown = widened(mixed, 11)["upper_80"]
    assert mixed[-1]["upper_80"] < grown < mixed[-1]["upper_80"] * np.sqrt(12 / 3)
    assert grown == pytest.approx(np.sqrt(0.04 + 0.01 * 12))
    assert widened(mixed, 1) == mixed[1]  # inside the table: the table's own row

"""Per-segment revenue forecasting: speed against default Prophet, and backtest quality.

Speed (the ``make bench`` figure): ``python -m benchmarks.forecast_segments --segments 50
--freq week`` builds ``--segments`` synthetic revenue series (about three years, with growth,
yearly seasonality, a quarter-end push and heavy-tailed noise; seeded), then times fit +
predict + 80/95 % intervals for every segment with our component (``fit_series``) and with
default Prophet (``default_prophet_forecast``) in the same run, and scores both on the held-out
last ``--horizon`` periods. It prints one JSON object::

    {"segments", "ours_seconds", "peer_seconds", "ours_per_segment", "peer_per_segment",
     "ours_wape", "peer_wape", ...}

Both sides run with the same ``--workers`` (a process pool; 1 = in this process).

Quality: ``python -m benchmarks.forecast_segments quality --data DIR [--data DIR ...]`` reads
``deals.parquet`` from ``salesml.synth.generate`` outputs and runs rolling-origin backtests of
won revenue (total and per team) for our component, default Prophet and seasonal naive,
printing WAPE, MASE and 80 % / 95 % coverage per method as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesml.models.revenue.metrics import coverage, mase, wape
from salesml.models.revenue.periods import period_range, season_length
from salesml.models.revenue.prophet_model import (
    DEFAULT_SETTINGS,
    ForecastResult,
    ProphetSettings,
    default_prophet_forecast,
    fit_series,
    quarter_end_share,
    seasonal_naive,
)
from salesml.models.revenue.series import series_of, won_revenue_series

# ----------------------------------------------------------------------------- synthetic series


def synthetic_segments(n: int, freq: str, years: float = 3.0, seed: int = 0) -> list[pd.Series]:
    """``n`` seeded revenue series: level x growth x season x quarter-end push x noise."""
    rng = np.random.default_rng(seed)
    periods = round(years * season_length(freq))
    index = period_range(pd.Timestamp("2022-07-04"), periods, freq)
    t_years = np.arange(periods) / season_length(freq)
    day_of_year = np.asarray(index.dayofyear, dtype=np.float64)
    qend = quarter_end_share(index, freq)
    out = []
    for i in range(n):
        level = rng.lognormal(np.log(50_000), 1.0)
        growth = rng.normal(0.20, 0.15)
        amp = rng.uniform(0.0, 0.3)
        phase = rng.uniform(0, 2 * np.pi)
        push = rng.uniform(0.2, 1.2)
        noise = rng.uniform(0.15, 0.6)
        mean = (
            level
            * np.exp(growth * t_years)
            * (1 + amp * np.sin(2 * np.pi * day_of_year / 365.25 + phase))
            * (1 + push * qend)
        )
        values = mean * rng.lognormal(-0.5 * noise**2, noise, periods)
        out.append(pd.Series(np.round(values, 2), index=index, name=f"segment-{i:03d}"))
    return out


# ----------------------------------------------------------------------------- speed


def _ours(series: pd.Series, h: int, freq: str) -> ForecastResult:
    return fit_series(series, freq).predict(h)


def _peer(series: pd.Series, h: int, freq: str) -> ForecastResult:
    return default_prophet_forecast(series, h, freq)


def _run_all(
    fn: Callable[[pd.Series, int, str], ForecastResult],
    series: list[pd.Series],
    h: int,
    freq: str,
    workers: int,
) -> tuple[float, list[ForecastResult]]:
    start = time.perf_counter()
    if workers <= 1:
        results = [fn(s, h, freq) for s in series]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(fn, series, [h] * len(series), [freq] * len(series)))
    return time.perf_counter() - start, results


def _warm_up() -> None:
    """Import Prophet and load the Stan model once, outside the timed region."""
    s = synthetic_segments(1, "month", years=2.0, seed=99)[0]
    fit_series(s, "month").predict(1)


def speed(segments: int, freq: str, horizon: int, workers: int, seed: int) -> dict[str, Any]:
    series = synthetic_segments(segments, freq, seed=seed)
    train = [s.iloc[:-horizon] for s in series]
    actual = np.concatenate([s.iloc[-horizon:].to_numpy() for s in series])
    _warm_up()
    ours_s, ours = _run_all(_ours, train, horizon, freq, workers)
    peer_s, peer = _run_all(_peer, train, horizon, freq, workers)

    def stack(results: list[ForecastResult], col: str) -> np.ndarray:
        return np.concatenate([getattr(r, col) for r in results])

    return {
        "segments": segments,
        "freq": freq,
        "periods_per_series": len(series[0]),
        "horizon": horizon,
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "ours_seconds": round(ours_s, 2),
        "peer_seconds": round(peer_s, 2),
        "ours_per_segment": round(ours_s / segments, 4),
        "peer_per_segment": round(peer_s / segments, 4),
        "speedup": round(peer_s / ours_s, 2),
        "ours_wape": round(wape(actual, stack(ours, "forecast")), 4),
        "peer_wape": round(wape(actual, stack(peer, "forecast")), 4),
        "ours_coverage_80": round(
            coverage(actual, stack(ours, "lower_80"), stack(ours, "upper_80")), 4
        ),
        "peer_coverage_80": round(
            coverage(actual, stack(peer, "lower_80"), stack(peer, "upper_80")), 4
        ),
        "ours_fallbacks": sum(r.is_fallback for r in ours),
        "target_seconds": 60.0,
        "ok": ours_s <= 60.0,
    }


# ----------------------------------------------------------------------------- quality


def _method(
    name: str, settings: ProphetSettings
) -> Callable[[pd.Series, int, str], ForecastResult]:
    if name == "ours":
        return lambda s, h, f: fit_series(s, f, settings).predict(h)
    if name == "default_prophet":
        return default_prophet_forecast
    return seasonal_naive


def _backtest_one(
    args: tuple[str, str, pd.Series, str, int, int, ProphetSettings],
) -> dict[str, Any]:
    """One (method, series, origin): train on the periods before the origin, forecast h."""
    method, label, series, freq, origin, h, settings = args
    train, test = series.iloc[:origin], series.iloc[origin : origin + h]
    result = _method(method, settings)(train, len(test), freq)
    return {
        "method": method,
        "series": label,
        "origin": str(series.index[origin].date()),
        "actual": test.to_numpy().tolist(),
        "forecast": result.forecast.tolist(),
        "lower_80": result.lower_80.tolist(),
        "upper_80": result.upper_80.tolist(),
        "lower_95": result.lower_95.tolist(),
        "upper_95": result.upper_95.tolist(),
        "train": train.to_numpy().tolist(),
        "fallback": result.is_fallback,
    }


def backtest_series(
    data_dirs: list[Path],
    freq: str,
    by: str | None,
    end: pd.Timestamp | None = None,
) -> list[tuple[str, pd.Series]]:
    """Won revenue series of every dataset (total or per ``by`` segment), labelled."""
    out = []
    for d in data_dirs:
        deals = pd.read_parquet(d / "deals.parquet")
        stop = end or pd.Timestamp(deals["closed_at"].max()).normalize() + pd.Timedelta(days=1)
        frame = won_revenue_series(deals, freq, by, stop)
        for seg in sorted(frame["segment"].unique()):
            out.append((f"{d.name}/{seg}", series_of(frame, seg)))
    return out


def quality(
    data_dirs: list[Path],
    freq: str,
    by: str | None,
    horizon: int,
    n_origins: int,
    step: int,
    workers: int,
    methods: list[str],
    settings: ProphetSettings = DEFAULT_SETTINGS,
) -> dict[str, Any]:
    tasks = []
    for label, series in backtest_series(data_dirs, freq, by):
        n = len(series)
        origins = [n - horizon - k * step for k in range(n_origins)]
        for method in methods:
            tasks += [(method, label, series, freq, o, horizon, settings) for o in origins if o > 0]
    if workers <= 1:
        rows = [_backtest_one(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_backtest_one, tasks, chunksize=4))
    report: dict[str, Any] = {
        "freq": freq,
        "by": by,
        "horizon": horizon,
        "origins": n_origins,
        "series": len({r["series"] for r in rows}),
        "methods": {},
    }
    season = season_length(freq)
    for method in methods:
        mine = [r for r in rows if r["method"] == method]
        a = np.concatenate([r["actual"] for r in mine])

        def col(name: str, rows: list[dict[str, Any]] = mine) -> np.ndarray:
            return np.concatenate([r[name] for r in rows])

        mases = [mase(r["actual"], r["forecast"], r["train"], season) for r in mine]
        report["methods"][method] = {
            "wape": round(wape(a, col("forecast")), 4),
            "mase": round(float(np.nanmean(mases)), 4),
            "coverage_80": round(coverage(a, col("lower_80"), col("upper_80")), 4),
            "coverage_95": round(coverage(a, col("lower_95"), col("upper_95")), 4),
            "fallbacks": sum(r["fallback"] for r in mine),
            "forecasts": len(mine),
        }
    base = report["methods"].get("seasonal_naive", {}).get("wape")
    if base:
        for m in report["methods"].values():
            m["wape_vs_seasonal_naive"] = round(m["wape"] / base, 4)
    return report


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "quality":
        p = argparse.ArgumentParser(prog="python -m benchmarks.forecast_segments quality")
        p.add_argument("--data", type=Path, action="append", required=True)
        p.add_argument("--freq", default="month", choices=["week", "month", "quarter"])
        p.add_argument("--by", default=None, choices=["team", "region", "product"])
        p.add_argument("--horizon", type=int, default=3)
        p.add_argument("--origins", type=int, default=10)
        p.add_argument("--step", type=int, default=1)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument(
            "--methods", default="ours,default_prophet,seasonal_naive", help="comma-separated"
        )
        p.add_argument("--settings", default="{}", help="JSON overrides of ProphetSettings")
        a = p.parse_args(argv[1:])
        settings = ProphetSettings(**json.loads(a.settings))
        out = quality(
            a.data,
            a.freq,
            a.by,
            a.horizon,
            a.origins,
            a.step,
            a.workers,
            a.methods.split(","),
            settings,
        )
    else:
        p = argparse.ArgumentParser(prog="python -m benchmarks.forecast_segments")
        p.add_argument("--segments", type=int, default=50)
        p.add_argument("--freq", default="week", choices=["week", "month", "quarter"])
        p.add_argument("--horizon", type=int, default=13)
        p.add_argument("--workers", type=int, default=2)
        p.add_argument("--seed", type=int, default=0)
        a = p.parse_args(argv)
        out = speed(a.segments, a.freq, a.horizon, a.workers, a.seed)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

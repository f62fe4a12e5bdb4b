"""Train the revenue forecast: rolling-origin backtests, blend weights, intervals, final fits.

Backtests replay the past honestly. A timing model is trained on the history known at the
*anchor* (the earliest origin), so it has seen no outcome after any origin. At every origin
(a period start in the last year or so) and for every segment:

- the series component is fitted on the complete periods before the origin;
- the pipeline component scores the deals open at the origin (features as of the origin);
- seasonal naive (and, when asked, Prophet with default settings) are the peers;
- the actual is the won revenue of the next ``horizon`` periods.

The blend weights (non-negative least squares per step ahead) and the interval widths
(quantiles of the blend's log errors) are learned on those records. The figures reported for
the blend are cross-fitted: each origin is scored with weights and widths learned on the
other origins only, so the coverage quoted is out of sample.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from features.build import build_snapshots, weekly_as_of_dates
from features.history import History
from features.spec import feature_spec
from salesml.forecast.metrics import coverage, mase, wape
from salesml.forecast.periods import period_range, period_start, season_length
from salesml.forecast.prophet_model import (
    ForecastResult,
    SeriesModel,
    default_prophet_forecast,
    fit_series,
    seasonal_naive,
)
from salesml.forecast.series import series_of, won_revenue_series
from salesml.revenue.model import LEVELS, ForecastBundle, FreqModel, key
from salesml.revenue.pipeline import DIMENSIONS, PipelineForecast, pipeline_forecast
from salesml.timing import TimingBundle
from training.timing import fit_timing, relabel

FREQS = ("week", "month", "quarter")
HORIZON: dict[str, int] = {"week": 8, "month": 3, "quarter": 2}
MAX_ORIGINS: dict[str, int] = {"week": 10, "month": 9, "quarter": 4}
BACKTEST_DAYS = 365  # how far back the first origin lies (at most a half of the history)
DRAWS = 400
COMPONENTS = ("pipeline", "series", "blend", "seasonal_naive", "prophet_default")


@dataclass
class ForecastTrainingResult:
    bundle: ForecastBundle
    records: pd.DataFrame  # one row per (freq, origin, step, dimension, segment)
    metrics: dict[str, dict[str, dict[str, float | None]]]  # freq → component → metric
    fallbacks: dict[str, str] = field(default_factory=dict)  # series key → reason


# --- the two components at one origin --------------------------------------------------------


def segment_series(deals: pd.DataFrame, freq: str, end: pd.Timestamp) -> dict[str, pd.Series]:
    """Won revenue per complete period before ``end`` for the total and every segment."""
    out = {key("total", "total"): series_of(won_revenue_series(deals, freq, None, end))}
    for dim in DIMENSIONS:
        if dim not in deals.columns:
            continue
        frame = won_revenue_series(deals, freq, dim, end)
        for segment in sorted(frame["segment"].unique()):
            out[key(dim, str(segment))] = series_of(frame, str(segment))
    return out


def _fit_job(args: tuple[str, pd.Series, str, int, bool]) -> tuple[str, dict[str, Any]]:
    name, series, freq, h, with_default = args
    model = fit_series(series, freq)
    out: dict[str, Any] = {"series": model.predict(h), "fallback": model.fallback_reason}
    out["seasonal_naive"] = seasonal_naive(series, h, freq)
    if with_default:
        out["prophet_default"] = default_prophet_forecast(series, h, freq)
    return name, out


def fit_many(
    jobs: Sequence[tuple[str, pd.Series, str, int, bool]],
    fn: Callable[[Any], tuple[str, Any]] = _fit_job,
) -> dict[str, Any]:
    """Run fit jobs, in worker processes when there are many and more than one core."""
    threads = int(os.environ.get("SALESML_THREADS", "0")) or (os.cpu_count() or 1)
    workers = min(threads, os.cpu_count() or 1, 4)
    if workers <= 1 or len(jobs) < 16:
        return dict(fn(job) for job in jobs)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return dict(pool.map(fn, jobs, chunksize=max(1, len(jobs) // (workers * 4))))


def list_prices(history: History) -> dict[str, float]:
    products = history.products
    if products.empty or "list_price" not in products:
        return {}
    priced = products.dropna(subset=["list_price"])
    return {str(p): float(v) for p, v in zip(priced["product"], priced["list_price"], strict=True)}


def fallback_amount(deals: pd.DataFrame, before: pd.Timestamp) -> float:
    won = deals[(deals["status"] == "won") & (deals["closed_at"] < before)]
    amount = pd.to_numeric(won["amount"], errors="coerce").dropna()
    return float(amount.median()) if len(amount) else 0.0


def origin_pipeline(
    timing: TimingBundle | None,
    features: pd.DataFrame,
    origin: pd.Timestamp,
    freq: str,
    horizon: int,
    prices: dict[str, float],
    fallback: float,
    seed: int = 0,
) -> PipelineForecast:
    periods = period_range(origin, horizon + 1, freq)
    return pipeline_forecast(
        timing,
        features,
        origin,
        periods[:-1],
        periods[1:],
        prices,
        fallback,
        draws=DRAWS,
        seed=seed,
    )


# --- backtests -------------------------------------------------------------------------------


def origins_for(history: History, freq: str, anchor: pd.Timestamp) -> list[pd.Timestamp]:
    """Period starts from the anchor on whose whole horizon is complete before the export."""
    h = HORIZON[freq]
    last_complete_end = period_start(history.exported_at, freq)
    starts = pd.date_range(period_start(anchor, freq), last_complete_end, freq="D")
    candidates = sorted({period_start(d, freq) for d in starts[:: 7 if freq != "week" else 1]})
    usable = [
        o
        for o in candidates
        if o >= anchor and period_range(o, h + 1, freq)[-1] <= last_complete_end
    ]
    if len(usable) > MAX_ORIGINS[freq]:
        pick = np.linspace(0, len(usable) - 1, MAX_ORIGINS[freq]).round().astype(int)
        usable = [usable[i] for i in sorted(set(pick))]
    return usable


def backtest_anchor(history: History) -> pd.Timestamp:
    first = history.deals["created_at"].min()
    span = (history.exported_at - first).days
    days = min(BACKTEST_DAYS, span // 2)
    return period_start(history.exported_at - pd.Timedelta(days=days), "quarter")


def run_backtests(
    history: History,
    seed: int = 0,
    freqs: Sequence[str] = FREQS,
    with_default_prophet: bool = False,
    snapshots: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Records of every component at every origin, step ahead and segment."""
    anchor = backtest_anchor(history)
    timing = _anchor_timing(history, anchor, seed, snapshots)
    deals = history.deals
    prices = list_prices(history)
    origins = {f: origins_for(history, f, anchor) for f in freqs}
    all_origins = sorted({o for os_ in origins.values() for o in os_})
    features = (
        build_snapshots(history, all_origins, features=feature_spec(history))
        if timing is not None and all_origins
        else pd.DataFrame()
    )
    records: list[dict[str, Any]] = []
    fallbacks: dict[str, str] = {}
    for freq in freqs:
        h = HORIZON[freq]
        jobs, meta = [], {}
        for origin in origins[freq]:
            for name, series in segment_series(deals, freq, origin).items():
                job_id = f"{origin:%Y-%m-%d}/{name}"
                jobs.append(
                    (job_id, series, freq, h, with_default_prophet or name == "total|total")
                )
                meta[job_id] = (origin, name, series)
        fitted = fit_many(jobs)
        actual_series = segment_series(deals, freq, history.exported_at)
        for origin in origins[freq]:
            at = (
                features[features["as_of"] == origin].set_index("deal_id")
                if not features.empty
                else pd.DataFrame()
            )
            pipe = origin_pipeline(
                timing, at, origin, freq, h, prices, fallback_amount(deals, origin), seed
            )
            periods = period_range(origin, h, freq)
            for job_id, (o, name, train) in meta.items():
                if o != origin:
                    continue
                result = fitted[job_id]
                if result["fallback"]:
                    fallbacks[f"{freq}/{name}"] = result["fallback"]
                dim, segment = name.split("|", 1)
                actual = actual_series.get(name, pd.Series(dtype=float)).reindex(periods)
                pipe_rows = pipe.lookup(dim, segment).set_index("period_start")
                for step, period in enumerate(periods):
                    row = {
                        "freq": freq,
                        "origin": origin,
                        "step": step,
                        "period_start": period,
                        "dimension": dim,
                        "segment": segment,
                        "actual": float(actual.get(period, 0.0) or 0.0),
                        "pipeline": float(pipe_rows["expected"].get(period, 0.0)),
                        "train_values": train.to_numpy(dtype=float),
                    }
                    for comp in ("series", "seasonal_naive", "prophet_default"):
                        res: ForecastResult | None = result.get(comp)
                        if res is None:
                            continue
                        row[comp] = float(res.forecast[step])
                        row[f"{comp}_lower_80"] = float(res.lower_80[step])
                        row[f"{comp}_upper_80"] = float(res.upper_80[step])
                    records.append(row)
    return pd.DataFrame(records), fallbacks


def _anchor_timing(
    history: History, anchor: pd.Timestamp, seed: int, snapshots: pd.DataFrame | None
) -> TimingBundle | None:
    """A timing model that knows only the history up to the anchor (None without pipeline)."""
    deals = history.deals
    known = deals[deals["created_at"] <= anchor]
    closed_by = known[(known["closed_at"] <= anchor)]
    if (closed_by["status"] == "won").sum() < 50 or (closed_by["status"] == "lost").sum() < 20:
        return None
    if (deals["status"] == "open").sum() == 0 and (deals["status"] == "lost").sum() == 0:
        return None
    snaps = (
        snapshots
        if snapshots is not None
        else build_snapshots(history, weekly_as_of_dates(history))
    )
    bundle, _ = fit_timing(
        relabel(snaps[snaps["as_of"] <= anchor], anchor), feature_spec(history), seed
    )
    return bundle


# --- blend and intervals ---------------------------------------------------------------------


def blend_weights(records: pd.DataFrame, steps: int) -> list[list[float]]:
    """Non-negative weights [pipeline, series] per step ahead (pooled over segments)."""
    out = []
    for step in range(steps):
        part = records[records["step"] == step]
        if part.empty or part["pipeline"].abs().sum() == 0:
            out.append([0.0, 1.0])
            continue
        a = part[["pipeline", "series"]].to_numpy(dtype=float)
        w, _ = nnls(a, part["actual"].to_numpy(dtype=float))
        out.append([float(w[0]), float(w[1])] if w.sum() > 0 else [0.0, 1.0])
    return out


def apply_blend(records: pd.DataFrame, weights: list[list[float]]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    idx = np.minimum(records["step"].to_numpy(dtype=int), len(w) - 1)
    return np.asarray(
        w[idx, 0] * records["pipeline"].to_numpy(dtype=float)
        + w[idx, 1] * records["series"].to_numpy(dtype=float)
    )


def _group(records: pd.DataFrame) -> np.ndarray:
    return np.where(records["dimension"].to_numpy() == "total", "total", "segment")


def error_offsets(records: pd.DataFrame) -> dict[str, float]:
    """c per group: 5 % of the mean actual, so empty periods do not blow up the log error."""
    groups = _group(records)
    return {
        g: float(max(records["actual"].to_numpy()[groups == g].mean() * 0.05, 1.0))
        for g in ("total", "segment")
        if (groups == g).any()
    }


def log_error_quantiles(
    records: pd.DataFrame, blend: np.ndarray, offsets: dict[str, float], steps: int
) -> dict[str, list[dict[str, float]]]:
    """Per group and step: quantiles of log((actual + c) / (blend + c)).

    Steps are pooled with their neighbours (widths grow with the horizon, but a handful of
    origins per step is too few for a 95 % quantile on its own)."""
    groups = _group(records)
    out: dict[str, list[dict[str, float]]] = {}
    for g, c in offsets.items():
        mask = groups == g
        err = np.log((records["actual"].to_numpy()[mask] + c) / (np.maximum(blend[mask], 0) + c))
        step = records["step"].to_numpy()[mask]
        table = []
        for s in range(steps):
            near = np.abs(step - s) <= 1
            values = err[near] if near.sum() >= 8 else err
            if len(values) == 0:
                table.append(dict.fromkeys(LEVELS, 0.0))
                continue
            table.append({name: float(np.quantile(values, q)) for name, q in LEVELS.items()})
        out[g] = table
    return out


def cross_fitted_blend(records: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Blend forecasts and bounds for each origin from weights / widths learnt on the others."""
    out = records.copy()
    for column in ("blend", "blend_lower_80", "blend_upper_80", "blend_lower_95", "blend_upper_95"):
        out[column] = np.nan
    origins = records["origin"].unique()
    for origin in origins:
        test = records["origin"] == origin
        train = records[~test] if len(origins) > 1 else records
        weights = blend_weights(train, steps)
        offsets = error_offsets(train)
        quantiles = log_error_quantiles(train, apply_blend(train, weights), offsets, steps)
        part = records[test]
        blend = apply_blend(part, weights)
        groups = _group(part)
        bounds = {name: np.zeros(len(part)) for name in LEVELS}
        for i, (g, s) in enumerate(zip(groups, part["step"].to_numpy(dtype=int), strict=True)):
            c = offsets.get(g, 1.0)
            table = quantiles.get(g) or [dict.fromkeys(LEVELS, 0.0)]
            q = table[min(s, len(table) - 1)]
            for name in LEVELS:
                bounds[name][i] = max((max(blend[i], 0) + c) * np.exp(q[name]) - c, 0.0)
        out.loc[test, "blend"] = blend
        for name in LEVELS:
            out.loc[test, f"blend_{name}"] = bounds[name]
    return out


def backtest_metrics(records: pd.DataFrame) -> dict[str, dict[str, dict[str, float | None]]]:
    """freq → component → WAPE (total and all segments), MASE (total), 80 %/95 % coverage."""
    out: dict[str, dict[str, dict[str, float | None]]] = {}
    for freq, part in records.groupby("freq", sort=False):
        total = part[part["dimension"] == "total"]
        segs = part[part["dimension"] != "total"]
        m = season_length(str(freq))
        comps: dict[str, dict[str, float | None]] = {}
        for comp in COMPONENTS:
            if comp not in part or part[comp].isna().all():
                continue
            rows = total.dropna(subset=[comp])
            entry: dict[str, float | None] = {
                "wape_total": _safe(wape, rows["actual"], rows[comp]),
                "wape_segments": _safe(wape, segs["actual"], segs[comp])
                if comp in segs and segs[comp].notna().all() and len(segs)
                else None,
                "mase_total": _mase(rows, comp, m),
            }
            lo, hi = f"{comp}_lower_80", f"{comp}_upper_80"
            if lo in rows and rows[lo].notna().all():
                entry["coverage_80_total"] = _safe(coverage, rows["actual"], rows[lo], rows[hi])
                every = part.dropna(subset=[lo, hi])
                entry["coverage_80_all"] = _safe(coverage, every["actual"], every[lo], every[hi])
            if comp == "blend":
                every = part.dropna(subset=["blend_lower_95"])
                entry["coverage_95_all"] = _safe(
                    coverage, every["actual"], every["blend_lower_95"], every["blend_upper_95"]
                )
            comps[comp] = entry
        out[str(freq)] = comps
    return out


def _safe(fn: Callable[..., float], *columns: pd.Series) -> float | None:
    try:
        value = float(fn(*(c.to_numpy(dtype=float) for c in columns)))
    except Exception:
        return None
    return value if np.isfinite(value) else None


def _mase(rows: pd.DataFrame, comp: str, season: int) -> float | None:
    values = []
    for _, origin_rows in rows.groupby("origin"):
        train = origin_rows["train_values"].iloc[0]
        try:
            v = mase(origin_rows["actual"], origin_rows[comp], train, season)
        except Exception:
            continue
        if np.isfinite(v):
            values.append(v)
    return float(np.mean(values)) if values else None


# --- the whole job ---------------------------------------------------------------------------


def train_forecast(
    history: History,
    seed: int = 0,
    freqs: Sequence[str] = FREQS,
    with_default_prophet: bool = False,
    snapshots: pd.DataFrame | None = None,
) -> ForecastTrainingResult:
    """Backtest, learn the blend, fit every segment's series model on the whole history."""
    records, fallbacks = run_backtests(history, seed, freqs, with_default_prophet, snapshots)
    deals = history.deals
    models: dict[str, FreqModel] = {}
    scored = []
    for freq in freqs:
        h = HORIZON[freq]
        part = records[records["freq"] == freq] if not records.empty else records
        if part.empty:
            weights, offsets, quantiles = [[0.0, 1.0]], {}, {}
        else:
            weights = blend_weights(part, h)
            offsets = error_offsets(part)
            quantiles = log_error_quantiles(part, apply_blend(part, weights), offsets, h)
            scored.append(cross_fitted_blend(part, h))
        series = segment_series(deals, freq, history.exported_at)
        fitted = fit_many(
            [(name, s, freq, 1, False) for name, s in series.items()], fn=_final_fit_job
        )
        for name, model in fitted.items():
            if model.fallback_reason:
                fallbacks[f"{freq}/{name}/final"] = model.fallback_reason
        models[freq] = FreqModel(freq, fitted, weights, quantiles, offsets)
    all_records = pd.concat(scored, ignore_index=True) if scored else records
    metrics = backtest_metrics(all_records) if not all_records.empty else {}
    bundle = ForecastBundle(
        models,
        list_prices(history),
        fallback_amount(deals, history.exported_at),
        {
            "trained_to": f"{history.exported_at:%Y-%m-%d}",
            "backtest": metrics,
            "fallbacks": fallbacks,
            "has_pipeline": bool((deals["status"] == "open").any()),
        },
    )
    return ForecastTrainingResult(bundle, all_records, metrics, fallbacks)


def _final_fit_job(args: tuple[str, pd.Series, str, int, bool]) -> tuple[str, SeriesModel]:
    name, series, freq, _, _ = args
    return name, fit_series(series, freq)

"""Train the revenue forecast: rolling-origin backtests, blend weights, intervals, final fits.

Backtests replay the past honestly. A timing model is trained on the history known at the
*anchor* (about 16 months before the export, at most half the history), so it has seen no
outcome after any origin. Origins are every month / quarter start and every 4th week start from
the anchor on whose whole horizon is complete (at most ``MAX_ORIGINS``). At every origin and for
every segment:

- the series component is fitted on the complete periods before the origin;
- the pipeline component scores the deals open at the origin (features as of the origin; one
  hazard evaluation per origin serves every period length);
- the new-deals component is the series forecast × the share of revenue that, in the year
  before the origin, came from deals created at most ``step`` periods before their close
  (``new_deal_shares``): what the pipeline cannot see;
- seasonal naive (and, when asked, Prophet with default settings) are the peers;
- the actual is the won revenue of the next ``horizon`` periods.

All fits (backtests and the final models) run in one worker pool. The blend weights
(scale-normalised non-negative least squares per step ahead, shrunk across steps) and the
interval widths (normalised split-conformal quantiles of the blend's out-of-fold log errors,
``salesml.models.revenue.intervals``) are learned on those records.
The figures reported for the blend are cross-fitted: each origin is scored with weights and
widths learned only on the origins whose forecast periods do not overlap it (purged
leave-one-origin-out), so the coverage quoted is out of sample.
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
from salesml.kpis.pipeline import list_prices as pipeline_prices
from salesml.models.revenue.bundle import COMPONENTS as BLEND_PARTS
from salesml.models.revenue.bundle import ForecastBundle, FreqModel, Served, key
from salesml.models.revenue.candidates import METHODS, SERIES
from salesml.models.revenue.intervals import LEVELS, step_widths
from salesml.models.revenue.metrics import coverage, mase, wape
from salesml.models.revenue.periods import (
    period_range,
    period_start,
    period_starts,
    periods_between,
    season_length,
)
from salesml.models.revenue.pipeline import DIMENSIONS, PipelineForecast, pipeline_forecast
from salesml.models.revenue.prophet_model import (
    ForecastResult,
    SeriesModel,
    default_prophet_forecast,
    fit_series,
    seasonal_naive,
)
from salesml.models.revenue.series import series_of, won_revenue_series
from salesml.models.timing.bundle import TimingBundle
from salesml.settings import Settings
from training.revenue.select import (
    BLEND,
    LONG_HORIZON,
    MIN_LONG_ORIGINS,
    Choice,
    candidate_records,
    long_origins,
    select,
    served_path,
)
from training.timing.fit import fit_timing, relabel

FREQS = ("week", "month", "quarter")
HORIZON: dict[str, int] = {"week": 8, "month": 3, "quarter": 2}
# Origins: every period start (every 4th week) from the anchor on, at most this many.
ORIGIN_EVERY: dict[str, int] = {"week": 4, "month": 1, "quarter": 1}
MAX_ORIGINS: dict[str, int] = {"week": 16, "month": 16, "quarter": 5}
BACKTEST_DAYS = 480  # how far back the first origin lies (at most a half of the history)
DRAWS = 400
COMPONENTS = ("pipeline", "series", "blend", "seasonal_naive", "prophet_default")


@dataclass
class ForecastTrainingResult:
    bundle: ForecastBundle
    records: pd.DataFrame  # one row per (freq, origin, step, dimension, segment)
    metrics: dict[str, dict[str, dict[str, float | None]]]  # freq → component → metric
    fallbacks: dict[str, str] = field(default_factory=dict)  # series key → reason
    # freq → what is served (up to the blend's horizon, then beyond it), and why
    choices: dict[str, list[Choice]] = field(default_factory=dict)


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


def _segment_first_seen(deals: pd.DataFrame) -> dict[str, pd.Timestamp]:
    """key(dimension, segment) → the first moment a deal of the segment existed."""
    moment = pd.to_datetime(deals["created_at"]) if "created_at" in deals else None
    if moment is None or moment.isna().all():
        moment = pd.to_datetime(deals["closed_at"])
    else:
        moment = moment.fillna(pd.to_datetime(deals["closed_at"]))
    if isinstance(moment.dtype, pd.DatetimeTZDtype):
        moment = moment.dt.tz_convert("UTC").dt.tz_localize(None)
    out: dict[str, pd.Timestamp] = {key("total", "total"): pd.Timestamp(moment.min())}
    for dim in DIMENSIONS:
        if dim not in deals.columns:
            continue
        values = deals[dim].astype(object)
        text = values.where(values.notna(), "(none)").astype(str).str.strip()
        text = text.where(text != "", "(none)")
        for segment, first in moment.groupby(text.to_numpy()).min().items():
            out[key(dim, str(segment))] = pd.Timestamp(first)
    return out


def _segment_labels(deals: pd.DataFrame, dim: str) -> np.ndarray:
    values = deals[dim].astype(object)
    text = values.where(values.notna(), "(none)").astype(str).str.strip()
    return np.asarray(text.where(text != "", "(none)").to_numpy(), dtype=object)


def _period_ordinal(values: pd.Series, freq: str) -> np.ndarray:
    """Consecutive integers per period (week, month or quarter) of a datetime Series."""
    starts = period_starts(values, freq)
    if freq == "week":
        days = (starts - pd.Timestamp("2000-01-03")) / pd.Timedelta(days=1)  # a Monday
        return np.asarray(days.to_numpy(dtype=float) // 7, dtype=float)
    months = starts.dt.year.to_numpy(dtype=float) * 12 + starts.dt.month.to_numpy(dtype=float) - 1
    return np.asarray(months if freq == "month" else months // 3, dtype=float)


def new_deal_shares(
    deals: pd.DataFrame, freq: str, end: pd.Timestamp, steps: int
) -> dict[str, list[float]]:
    """key(dimension, segment) → per step ahead ``s``: the share of won revenue (over the last
    season of periods before ``end``) from deals created at most ``s`` periods before the
    period they closed in.

    At an origin, revenue ``s`` periods ahead from deals that do not exist yet is that share
    of the period's revenue: the part the pipeline cannot see. Segments without revenue in
    the window take the total's shares."""
    won = deals[(deals["status"] == "won") & (deals["closed_at"] < end)]
    won = won[won["closed_at"] >= end - pd.Timedelta(days=366 if freq != "week" else 364)]
    if won.empty or "created_at" not in won:
        return {}
    closed = _period_ordinal(won["closed_at"], freq)
    lag = closed - _period_ordinal(won["created_at"], freq)
    amount = pd.to_numeric(won["amount"], errors="coerce").fillna(0.0).clip(lower=0).to_numpy()
    groups: dict[str, np.ndarray] = {key("total", "total"): np.ones(len(won), dtype=bool)}
    for dim in DIMENSIONS:
        if dim not in won.columns:
            continue
        labels = _segment_labels(won, dim)
        for segment in np.unique(labels):
            groups[key(dim, str(segment))] = labels == segment
    out: dict[str, list[float]] = {}
    for name, mask in groups.items():
        total = float(amount[mask].sum())
        if total <= 0:
            continue
        out[name] = [float(amount[mask & (lag <= s)].sum()) / total for s in range(steps)]
    return out


def series_before(
    full: dict[str, pd.Series], first_seen: dict[str, pd.Timestamp], origin: pd.Timestamp
) -> dict[str, pd.Series]:
    """The series known at ``origin`` (a period start): the full series cut before it.

    Equal to ``segment_series(deals, freq, origin)`` (the complete periods before the origin),
    without recomputing it per origin; segments with no deal before the origin are left out."""
    out = {}
    for name, series in full.items():
        seen = first_seen.get(name)
        if seen is not None and not pd.isna(seen) and seen >= origin:
            continue
        out[name] = series[series.index < origin]
    return out


FitJob = tuple[str, pd.Series, str, int, bool]


def _fit_job(args: FitJob) -> tuple[str, dict[str, Any]]:
    """A backtest fit (h > 0: forecasts of the components) or a final fit (h == 0: the model)."""
    name, series, freq, h, with_default = args
    model = fit_series(series, freq)
    if h == 0:
        return name, {"model": model, "fallback": model.fallback_reason}
    out: dict[str, Any] = {"series": model.predict(h), "fallback": model.fallback_reason}
    out["seasonal_naive"] = seasonal_naive(series, h, freq)
    if with_default:
        out["prophet_default"] = default_prophet_forecast(series, h, freq)
    return name, out


def fit_many(
    jobs: Sequence[tuple[str, pd.Series, str, int, bool]],
    fn: Callable[[Any], tuple[str, Any]] = _fit_job,
) -> dict[str, Any]:
    """Run fit jobs, in worker processes when there are many and more than one core.

    One pool serves all jobs (starting a spawn worker costs seconds: Prophet and cmdstanpy are
    imported in each); the largest series go first so the pool drains evenly."""
    threads = Settings().threads or (os.cpu_count() or 1)
    workers = min(threads, os.cpu_count() or 1, 4)
    if workers <= 1 or len(jobs) < 16:
        return dict(fn(job) for job in jobs)
    ordered = sorted(jobs, key=lambda job: -len(job[1]))
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        return dict(pool.map(fn, ordered, chunksize=max(1, len(jobs) // (workers * 8))))


def list_prices(history: History) -> dict[str, float]:
    """product → list price, by the one rule the KPIs and the report use."""
    return {str(p): float(v) for p, v in pipeline_prices(history.products).items()}


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
    hazards: np.ndarray | None = None,
    draws: int = DRAWS,
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
        draws=draws,
        seed=seed,
        hazards=hazards,
    )


# --- backtests -------------------------------------------------------------------------------


def origins_for(
    history: History, freq: str, anchor: pd.Timestamp, max_origins: int | None = None
) -> list[pd.Timestamp]:
    """Period starts from the anchor on, every ``ORIGIN_EVERY[freq]`` periods, whose whole
    horizon is complete before the export (the latest origins are kept)."""
    h = HORIZON[freq]
    last_complete_end = period_start(history.exported_at, freq)
    first = period_start(anchor, freq)
    if first < anchor:
        first = period_range(first, 2, freq)[1]
    n = len(periods_between(first, last_complete_end, freq)) + 1
    candidates = list(period_range(first, max(n, 0), freq)) if n > 0 else []
    usable = [o for o in candidates if period_range(o, h + 1, freq)[-1] <= last_complete_end]
    every = ORIGIN_EVERY[freq]
    usable = usable[::-1][::every][::-1]  # anchored on the latest origin
    limit = MAX_ORIGINS[freq] if max_origins is None else min(MAX_ORIGINS[freq], max_origins)
    return [pd.Timestamp(o) for o in usable[-max(limit, 1) :]]


def backtest_anchor(history: History) -> pd.Timestamp:
    first = history.deals["created_at"].min()
    span = (history.exported_at - first).days
    days = min(BACKTEST_DAYS, span // 2)
    return period_start(history.exported_at - pd.Timedelta(days=days), "month")


def run_backtests(
    history: History,
    seed: int = 0,
    freqs: Sequence[str] = FREQS,
    with_default_prophet: bool = False,
    snapshots: pd.DataFrame | None = None,
    extra_jobs: Sequence[FitJob] = (),
    extra_out: dict[str, Any] | None = None,
    max_origins: int | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Records of every component at every origin, step ahead and segment.

    ``extra_jobs`` run in the same worker pool as the backtest fits (``train_forecast`` passes
    its final fits); their results land in ``extra_out``."""
    anchor = backtest_anchor(history)
    timing = _anchor_timing(history, anchor, seed, snapshots)
    deals = history.deals
    prices = list_prices(history)
    origins = {f: origins_for(history, f, anchor, max_origins) for f in freqs}
    all_origins = sorted({o for os_ in origins.values() for o in os_})
    features = (
        build_snapshots(history, all_origins, features=feature_spec(history))
        if timing is not None and all_origins
        else pd.DataFrame()
    )
    first_seen = _segment_first_seen(deals)
    full = {f: segment_series(deals, f, history.exported_at) for f in freqs}
    jobs: list[FitJob] = list(extra_jobs)
    meta: dict[str, tuple[str, pd.Timestamp, str, pd.Series]] = {}
    for freq in freqs:
        h = HORIZON[freq]
        for origin in origins[freq]:
            for name, series in series_before(full[freq], first_seen, origin).items():
                job_id = f"{freq}/{origin:%Y-%m-%d}/{name}"
                jobs.append(
                    (job_id, series, freq, h, with_default_prophet or name == "total|total")
                )
                meta[job_id] = (freq, origin, name, series)
    fitted = fit_many(jobs)
    if extra_out is not None:
        for job in extra_jobs:
            extra_out[job[0]] = fitted.pop(job[0])
    # The pipeline at every origin: one hazard evaluation per origin serves every freq.
    pipes: dict[tuple[str, pd.Timestamp], PipelineForecast] = {}
    for origin in all_origins:
        at = (
            features[features["as_of"] == origin].set_index("deal_id")
            if not features.empty
            else pd.DataFrame()
        )
        hazards = timing.hazards(at, origin) if timing is not None and not at.empty else None
        for freq in freqs:
            if origin in origins[freq]:
                pipes[(freq, origin)] = origin_pipeline(
                    timing,
                    at,
                    origin,
                    freq,
                    HORIZON[freq],
                    prices,
                    fallback_amount(deals, origin),
                    seed,
                    hazards=hazards,
                    draws=0,
                )
    shares = {
        (freq, origin): new_deal_shares(deals, freq, origin, HORIZON[freq])
        for freq in freqs
        for origin in origins[freq]
    }
    records: list[dict[str, Any]] = []
    fallbacks: dict[str, str] = {}
    lookups: dict[tuple[str, pd.Timestamp], dict[tuple[str, str], pd.Series]] = {}
    for job_id, (freq, origin, name, train) in meta.items():
        h = HORIZON[freq]
        result = fitted[job_id]
        if result["fallback"]:
            fallbacks[f"{freq}/{name}"] = result["fallback"]
        dim, segment = name.split("|", 1)
        periods = period_range(origin, h, freq)
        actual = full[freq].get(name, pd.Series(dtype=float)).reindex(periods)
        if (freq, origin) not in lookups:
            frame = pipes[(freq, origin)].frame
            lookups[(freq, origin)] = {
                (str(d), str(s)): part.set_index("period_start")["expected"]
                for (d, s), part in frame.groupby(["dimension", "segment"], sort=False)
            }
        pipe = lookups[(freq, origin)].get((dim, segment), pd.Series(dtype=float))
        origin_shares = shares[(freq, origin)]
        share = origin_shares.get(name) or origin_shares.get(key("total", "total")) or [0.0] * h
        train_values = train.to_numpy(dtype=float)
        for step, period in enumerate(periods):
            row = {
                "freq": freq,
                "origin": origin,
                "step": step,
                "period_start": period,
                "dimension": dim,
                "segment": segment,
                "actual": float(actual.get(period, 0.0) or 0.0),
                "pipeline": float(pipe.get(period, 0.0)),
                "scale": _scale(train_values, season_length(freq)),
                "train_values": train_values,
            }
            for comp in ("series", "seasonal_naive", "prophet_default"):
                res: ForecastResult | None = result.get(comp)
                if res is None:
                    continue
                row[comp] = float(res.forecast[step])
                row[f"{comp}_lower_80"] = float(res.lower_80[step])
                row[f"{comp}_upper_80"] = float(res.upper_80[step])
            series_point = result["series"].forecast[step] if "series" in result else 0.0
            row["new_deals"] = float(share[step]) * float(series_point)
            records.append(row)
    out = pd.DataFrame(records)
    if not out.empty:
        out = out.sort_values(["freq", "origin", "dimension", "segment", "step"]).reset_index(
            drop=True
        )
    return out, fallbacks


def _scale(values: np.ndarray, season: int) -> float:
    """A series' level known at the origin: mean of its last season (the blend's row scale)."""
    recent = values[-season:] if len(values) else values
    level = float(np.mean(recent)) if len(recent) else 0.0
    return level if np.isfinite(level) and level > 0 else 0.0


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


SHRINK = 0.5  # weight of the other steps' rows in a step's blend fit (shrinkage across steps)
BLEND_COMPONENTS: tuple[str, ...] = BLEND_PARTS


def _row_scale(records: pd.DataFrame) -> np.ndarray:
    if "scale" in records:
        scale = records["scale"].to_numpy(dtype=float)
    else:
        scale = np.array([_scale(np.asarray(v, dtype=float), 1) for v in records["train_values"]])
    return np.asarray(scale, dtype=float)


def blend_weights(
    records: pd.DataFrame, steps: int, components: Sequence[str] | None = None
) -> list[list[float]]:
    """Non-negative weights (one per blend component) per step ahead, learned on backtests.

    Scale-normalised non-negative least squares: every row is divided by its series' level at
    the origin (mean of the last season), so a small segment counts as much as a large one,
    and the total and the segments carry equal mass. A step's fit also sees the other steps'
    rows at weight ``SHRINK`` (shrinkage across steps: a few origins per step are noisy).
    Without any pipeline the series alone carries the forecast."""
    comps = list(components or BLEND_COMPONENTS)
    series_only = [1.0 if c == "series" else 0.0 for c in comps]
    if records.empty or records["pipeline"].abs().sum() == 0:
        return [list(series_only) for _ in range(steps)]
    scale = _row_scale(records)
    ok = scale > 0
    part = records[ok]
    scale = scale[ok]
    is_total = (part["dimension"] == "total").to_numpy()
    n_total, n_seg = max(int(is_total.sum()), 1), max(int((~is_total).sum()), 1)
    mass = np.where(is_total, 1.0 / n_total, 1.0 / n_seg)
    a = _component_matrix(part, comps) / scale[:, None]
    y = part["actual"].to_numpy(dtype=float) / scale
    step = part["step"].to_numpy(dtype=int)
    out: list[list[float]] = []
    for s in range(steps):
        w_row = np.sqrt(mass * np.where(step == s, 1.0, SHRINK))
        if (step == s).sum() == 0:
            out.append(out[-1] if out else list(series_only))
            continue
        w, _ = nnls(a * w_row[:, None], y * w_row)
        out.append([float(x) for x in w] if w.sum() > 0 else list(series_only))
    return out


def _component_matrix(records: pd.DataFrame, components: Sequence[str]) -> np.ndarray:
    """(rows, components): each blend component's forecast (0 where a component is missing)."""
    columns = [
        records[c].to_numpy(dtype=float) if c in records else np.zeros(len(records))
        for c in components
    ]
    return np.asarray(np.nan_to_num(np.column_stack(columns), nan=0.0), dtype=float)


def apply_blend(
    records: pd.DataFrame, weights: list[list[float]], components: Sequence[str] | None = None
) -> np.ndarray:
    comps = list(components or BLEND_COMPONENTS)
    w = np.asarray(weights, dtype=float)
    idx = np.minimum(records["step"].to_numpy(dtype=int), len(w) - 1)
    return np.asarray((w[idx, : len(comps)] * _component_matrix(records, comps)).sum(axis=1))


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
    """Per group and step: bounds of log((actual + c) / (blend + c)).

    The interval is centred on the blend point itself (log error 0), so it always contains
    the forecast: a biased blend gets a wider interval rather than one that sits beside its own
    point (centring on the median error did that; bias-correcting the point instead made the
    cross-fitted monthly WAPE worse). The widths are normalised split-conformal with a noise +
    drift scale per step (``salesml.models.revenue.intervals.step_widths``), the same rule as
    a served standard forecaster's."""
    groups = _group(records)
    out: dict[str, list[dict[str, float]]] = {}
    for g, c in offsets.items():
        mask = groups == g
        err = np.log((records["actual"].to_numpy()[mask] + c) / (np.maximum(blend[mask], 0) + c))
        out[g] = step_widths(err, records["step"].to_numpy()[mask], steps)
    return out


def fit_blend(
    records: pd.DataFrame, steps: int
) -> tuple[list[list[float]], dict[str, float], dict[str, list[dict[str, float]]]]:
    """Blend weights, log-error offsets and interval quantiles learned on ``records``.

    The interval quantiles are read off the blend's *out-of-fold* errors (each origin predicted
    with weights learned on the origins whose horizon does not overlap it), which are wider
    and more honest than its in-sample errors."""
    weights = blend_weights(records, steps)
    offsets = error_offsets(records)
    origins = sorted(records["origin"].unique())
    if len(origins) >= 4:
        oof = np.zeros(len(records))
        for origin in origins:
            test = (records["origin"] == origin).to_numpy()
            train = records[_purged(records, origin)]
            inner = blend_weights(train, steps) if not train.empty else weights
            oof[test] = apply_blend(records[test], inner)
    else:
        oof = apply_blend(records, weights)
    quantiles = log_error_quantiles(records, oof, offsets, steps)
    return weights, offsets, quantiles


def _purged(records: pd.DataFrame, origin: pd.Timestamp) -> np.ndarray:
    """Rows of the other origins whose forecast periods do not overlap ``origin``'s."""
    periods = records.loc[records["origin"] == origin, "period_start"]
    lo, hi = periods.min(), periods.max()
    span = records.groupby("origin")["period_start"].agg(["min", "max"])
    clash = span.index[(span["min"] <= hi) & (span["max"] >= lo)]
    return np.asarray(~records["origin"].isin(clash).to_numpy(), dtype=bool)


def blend_bounds(
    blend: np.ndarray,
    groups: np.ndarray,
    steps: np.ndarray,
    offsets: dict[str, float],
    quantiles: dict[str, list[dict[str, float]]],
) -> dict[str, np.ndarray]:
    """Interval bounds around blend points: ``(blend + c) · exp(q) − c``, clipped at 0."""
    bounds = {name: np.zeros(len(blend)) for name in LEVELS}
    for i, (g, s) in enumerate(zip(groups, steps, strict=True)):
        c = offsets.get(g, 1.0)
        table = quantiles.get(g) or quantiles.get("total") or [dict.fromkeys(LEVELS, 0.0)]
        q = table[min(int(s), len(table) - 1)]
        for name in LEVELS:
            bounds[name][i] = max((max(blend[i], 0) + c) * np.exp(q[name]) - c, 0.0)
    return bounds


def cross_fitted_blend(records: pd.DataFrame, steps: int) -> pd.DataFrame:
    """Blend forecasts and bounds for each origin from weights / widths learnt on the others.

    Purged leave-one-origin-out: the origins whose forecast periods overlap the scored one are
    left out of its training set too, so no actual it is scored on was seen when fitting."""
    out = records.copy()
    for column in ("blend", "blend_lower_80", "blend_upper_80", "blend_lower_95", "blend_upper_95"):
        out[column] = np.nan
    origins = records["origin"].unique()
    for origin in origins:
        test = (records["origin"] == origin).to_numpy()
        train = records[_purged(records, origin)] if len(origins) > 1 else records
        if train.empty:
            train = records[~test]
        weights, offsets, quantiles = fit_blend(train, steps)
        part = records[test]
        blend = apply_blend(part, weights)
        bounds = blend_bounds(
            blend, _group(part), part["step"].to_numpy(dtype=int), offsets, quantiles
        )
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
    max_origins: int | None = None,
) -> ForecastTrainingResult:
    """Backtest, learn the blend, fit every segment's series model on the whole history."""
    deals = history.deals
    finals = {f: segment_series(deals, f, history.exported_at) for f in freqs}
    final_jobs: list[FitJob] = [
        (f"final/{freq}/{name}", s, freq, 0, False)
        for freq, series in finals.items()
        for name, s in series.items()
    ]
    final_out: dict[str, Any] = {}
    records, fallbacks = run_backtests(
        history,
        seed,
        freqs,
        with_default_prophet,
        snapshots,
        final_jobs,
        final_out,
        max_origins=max_origins,
    )
    models: dict[str, FreqModel] = {}
    scored = []
    choices: dict[str, list[Choice]] = {}
    for freq in freqs:
        h = HORIZON[freq]
        part = records[records["freq"] == freq] if not records.empty else records
        if part.empty:
            weights: list[list[float]] = [[float(c == "series") for c in BLEND_COMPONENTS]]
            offsets: dict[str, float] = {}
            quantiles: dict[str, list[dict[str, float]]] = {}
        else:
            weights, offsets, quantiles = fit_blend(part, h)
            scored.append(cross_fitted_blend(part, h))
        choice = choose_served(history, finals[freq], freq, scored[-1] if not part.empty else None)
        fitted: dict[str, SeriesModel] = {}
        for name in finals[freq]:
            model = final_out[f"final/{freq}/{name}"]["model"]
            fitted[name] = model
            if model.fallback_reason:
                fallbacks[f"{freq}/{name}/final"] = model.fallback_reason
        models[freq] = FreqModel(
            freq,
            fitted,
            weights,
            quantiles,
            offsets,
            BLEND_COMPONENTS,
            new_deal_shares(deals, freq, period_start(history.exported_at, freq), h),
            **served_fields(choice),
        )
        if choice:
            choices[freq] = choice
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
            "served": {f: served_summary(c) for f, c in choices.items()},
        },
    )
    return ForecastTrainingResult(bundle, all_records, metrics, fallbacks, choices)


# --- what is served ----------------------------------------------------------------------------


def choose_served(
    history: History, series: dict[str, pd.Series], freq: str, scored: pd.DataFrame | None
) -> list[Choice]:
    """What carries the company total, by steps ahead (``training.revenue.select``).

    Up to the blend's horizon: the lowest WAPE of the blend, the simple methods and the
    ensemble on the blend's own origins. Past it: the lowest WAPE of the blend's series
    component (what carries the blend that far), the simple methods and the ensemble, on
    ``MIN_LONG_ORIGINS`` or more season-long backtests after two seasons of sales where the
    history allows them; else, when the blend won the near steps, on the near rows (otherwise
    the near steps' winner carries every step). Empty without backtests."""
    if scored is None or scored.empty:
        return []
    h = HORIZON[freq]
    columns = ["origin", "step", "period_start", "actual", BLEND, SERIES]
    total = scored[scored["dimension"] == "total"][[c for c in columns if c in scored]]
    origins = sorted(pd.Timestamp(o) for o in total["origin"].unique())
    full = series[key("total", "total")]
    cands = candidate_records(history.deals, full, freq, origins, h)
    if cands.empty:
        return []
    rows = total.merge(
        cands.drop(columns=["actual", "period_start"]), on=["origin", "step"], how="left"
    ).sort_values(["origin", "step"], ignore_index=True)
    choices = [select(rows, h, [BLEND, *METHODS])]
    far = LONG_HORIZON[freq]
    starts = long_origins(full, freq, far, ORIGIN_EVERY[freq])
    if len(starts) >= MIN_LONG_ORIGINS:
        long_rows = candidate_records(history.deals, full, freq, starts, far, [*METHODS, SERIES])
        choices.append(select(long_rows, far, [SERIES, *METHODS], from_step=h))
    elif choices[0].champion == BLEND:
        # The pipeline does not reach past the horizon; without season-long backtests the
        # near ones (fitted on nearly the whole history) choose what carries the far steps
        # (a served ensemble or simple method carries them itself).
        choices.append(select(rows, h, [SERIES, *METHODS], serve_from=h))
    for choice in choices:
        if choice.champion not in (BLEND, SERIES):
            choice.path, choice.path_from = served_path(
                history.deals, full, freq, history.exported_at, choice.members
            )
    return choices


def served_fields(choices: list[Choice]) -> dict[str, Any]:
    """The FreqModel fields that carry the choice (the blend's defaults without one)."""
    if not choices:
        return {}
    served = [
        Served(
            BLEND if c.champion == SERIES else c.champion,
            c.from_step,
            c.path,
            c.path_from,
            c.log_errors,
            c.offset,
        )
        for c in choices
    ]
    return {
        "served": served,
        "champion_note": "; ".join(c.note for c in choices),
        "candidates": choices[0].scores,
    }


def served_summary(choices: list[Choice]) -> dict[str, Any]:
    """The choice as the card, the report and ``train --json`` show it."""
    first = choices[0]
    return {
        "champion": first.champion,
        "members": first.members,
        "note": "; ".join(c.note for c in choices),
        "candidates": first.scores,
        "far": [
            {
                "from_step": c.from_step,
                "champion": c.champion,
                "members": c.members,
                "candidates": c.scores,
            }
            for c in choices[1:]
        ],
    }

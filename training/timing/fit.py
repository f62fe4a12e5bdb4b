"""Fit, conformalise and evaluate the close-timing model (see ``salesml.models.timing.bundle``).

Deals still open are censored, not dropped: every labelled snapshot is expanded into the time
bins after its as_of date, and a (deal, bin) row is kept only when the bin was at risk (the deal
was still open at its start) and fully observed before the cut-off. Whether a bin is kept then
depends on the snapshot date alone, never on how the deal ended, so long cycles are not
under-represented the way they are when learning from closed deals only.

Protocol:

- **holdout**: the model is trained on the history as known at ``holdout_start`` (export minus
  ``holdout_days``) and evaluated on snapshots in the weeks after it, against what happened by
  the export; censoring at the export is corrected by inverse-probability-of-censoring weights.
- **conformal calibration**: deals are split (deal-disjoint) into fit / early-stopping /
  calibration sets. The PIT values of calibration deals that were won, weighted by the inverse
  probability that a remaining time that long was observed, give the map from nominal to model
  quantile levels stored in the bundle.
- **final model**: the same recipe on the whole history.

Baselines on the same holdout rows: the median remaining days of won snapshots per stage, and a
LightGBM regression on closed (won) deals only — the biased estimate this model replaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import softmax

from features.build import build_snapshots, weekly_as_of_dates
from features.history import History
from features.spec import FEATURE_SPEC_VERSION, Feature, feature_spec
from salesml.models.contract import FeatureContract
from salesml.models.timing.bundle import (
    EDGES,
    LEVELS,
    LOST,
    NONE,
    WON,
    TimingBundle,
    calendar_score,
    expand_bins,
)
from training.data import NotEnoughDataError, truncate_history
from training.win.fit import lgb_params

MAX_SNAPSHOTS_PER_DEAL = 4
MAX_ROUNDS = 1000
MIN_WON_DEALS = 50
MATURE_DAYS = 270
OUT_OF_TIME_DAYS = 365
OUT_OF_TIME = False  # measured: one quarter is too seasonal to calibrate on
NOMINAL = 0.8  # the interval the score rows show


@dataclass
class TimingTrainingResult:
    bundle: TimingBundle
    holdout_metrics: dict[str, float | None]
    baseline_metrics: dict[str, dict[str, float | None]]
    holdout_predictions: pd.DataFrame
    holdout_bundle: TimingBundle
    holdout_start: pd.Timestamp
    holdout_end: pd.Timestamp
    params: dict[str, Any] = field(default_factory=dict)


def holdout_days(history: History) -> int:
    """How long before the export the holdout starts: long enough for most won deals to close
    (p95 of won cycles, 60–365 days) but never more than a third of the history."""
    deals = history.deals
    won = deals[deals["status"] == "won"]
    cycle = (won["closed_at"] - won["created_at"]).dt.days
    p95 = float(np.nanpercentile(cycle, 95)) if len(cycle) else 180.0
    span = (history.exported_at - deals["created_at"].min()).days
    return int(max(14, min(np.clip(p95, 60, 365), span // 3)))


def train_timing_model(
    history: History, seed: int = 0, snapshots: pd.DataFrame | None = None
) -> TimingTrainingResult:
    """Evaluate on a temporal holdout, then fit the final model on the whole history."""
    won = int((history.deals["status"] == "won").sum())
    if won < MIN_WON_DEALS:
        raise NotEnoughDataError(
            f"the timing model needs at least {MIN_WON_DEALS} won deals; the history has {won}"
        )
    spec = feature_spec(history)
    if snapshots is None:
        snapshots = build_snapshots(history, weekly_as_of_dates(history))
    days = holdout_days(history)
    holdout_start = (history.exported_at - pd.Timedelta(days=days)).normalize()
    known = truncate_history(history, holdout_start)
    before = relabel(snapshots[snapshots["as_of"] <= holdout_start], known.exported_at)
    eval_bundle, params = fit_timing(before, spec, seed)
    levels = (
        out_of_time_levels(snapshots, history, spec, seed, holdout_start) if OUT_OF_TIME else None
    )
    if levels is not None:
        eval_bundle.pit_levels = levels.tolist()
    window_end = holdout_start + pd.Timedelta(days=min(91, days))
    holdout = snapshots[(snapshots["as_of"] >= holdout_start) & (snapshots["as_of"] < window_end)]
    metrics, baselines, predictions = evaluate(eval_bundle, before, holdout, spec, seed)
    bundle, params = fit_timing(snapshots, spec, seed)
    if levels is not None:
        bundle.pit_levels = levels.tolist()
    bundle.metadata |= {
        "conformal": "out-of-time" if levels is not None else "in-period",
        "holdout_start": f"{holdout_start:%Y-%m-%d}",
        "holdout_end": f"{window_end:%Y-%m-%d}",
        "holdout": metrics,
        "trained_to": f"{history.exported_at:%Y-%m-%d}",
    }
    return TimingTrainingResult(
        bundle, metrics, baselines, predictions, eval_bundle, holdout_start, window_end, params
    )


def out_of_time_levels(
    snapshots: pd.DataFrame,
    history: History,
    spec: list[Feature],
    seed: int,
    cutoff: pd.Timestamp,
) -> np.ndarray | None:
    """Conformal levels measured out of time, the way the model is used: fit on the history
    known a year before ``cutoff``, then read the PIT values of the next quarter's won deals,
    labelled with what happened by ``cutoff`` (censoring-weighted). ``None`` when the history
    is too short for that (the in-period calibration of ``fit_timing`` then stands)."""
    anchor = cutoff - pd.Timedelta(days=OUT_OF_TIME_DAYS)
    if anchor - history.deals["created_at"].min() < pd.Timedelta(days=180):
        return None
    fit = relabel(snapshots[snapshots["as_of"] <= anchor], anchor)
    calibration = snapshots[
        (snapshots["as_of"] >= anchor) & (snapshots["as_of"] < anchor + pd.Timedelta(days=91))
    ]
    bundle, _ = fit_timing(fit, spec, seed)
    levels = conformal_levels(bundle, relabel(calibration, cutoff), mature_only=False)
    return None if levels is None else levels


def relabel(snapshots: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Snapshot labels as known at ``cutoff``: later closings become open (censored)."""
    out = snapshots.copy()
    later = out["closed_at"] > cutoff
    out.loc[later, "outcome"] = "open"
    out.loc[later, "label_won"] = np.nan
    out.loc[later, "closed_at"] = pd.NaT
    out.loc[later, "days_to_close"] = np.nan
    out["days_observed"] = (cutoff - out["as_of"]).dt.total_seconds() / 86_400.0
    return out


def bin_rows(
    snapshots: pd.DataFrame,
    edges: tuple[int, ...] = EDGES,
    rng: np.random.Generator | None = None,
    calendar: dict[str, list[float]] | None = None,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Fully observed, at-risk (snapshot, bin) rows with their class and weight.

    At most ``MAX_SNAPSHOTS_PER_DEAL`` snapshots per deal are kept (chosen at random), each
    weighted by how many it stands for, so long-open deals keep their share of the risk set.
    """
    rng = rng or np.random.default_rng(0)
    kept, weight = _thin(snapshots, rng)
    k = len(edges) - 1
    starts = np.tile(np.asarray(edges[:-1], dtype=float), len(kept))
    ends = np.tile(np.asarray(edges[1:], dtype=float), len(kept))
    remaining = np.repeat(kept["days_to_close"].to_numpy(dtype=float), k)
    observed = np.repeat(kept["days_observed"].to_numpy(dtype=float), k)
    outcome = np.repeat(kept["outcome"].to_numpy(dtype=object), k)
    closed = ~np.isnan(remaining)
    at_risk = ~closed | (remaining >= starts)
    use = at_risk & (ends <= observed)
    event = closed & (remaining >= starts) & (remaining < ends)
    label = np.where(event & (outcome == "won"), WON, np.where(event, LOST, NONE))
    rows = expand_bins(kept, kept["as_of"], edges, keep=use, calendar=calendar)
    return (
        rows,
        label[use].astype(np.int64),
        np.repeat(weight, k)[use],
    )


def _thin(snapshots: pd.DataFrame, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    order = rng.permutation(len(snapshots))
    shuffled = snapshots.iloc[order]
    rank = shuffled.groupby("deal_id", sort=False).cumcount().to_numpy()
    count = shuffled.groupby("deal_id", sort=False)["deal_id"].transform("size").to_numpy()
    keep = rank < MAX_SNAPSHOTS_PER_DEAL
    weight = count[keep] / np.minimum(count[keep], MAX_SNAPSHOTS_PER_DEAL)
    return shuffled[keep].reset_index(drop=True), weight.astype(float)


def fit_timing(
    snapshots: pd.DataFrame, spec: list[Feature], seed: int
) -> tuple[TimingBundle, dict[str, Any]]:
    """Fit the hazard booster on fit deals, early-stop on others, conformalise on the rest."""
    rng = np.random.default_rng(seed)
    deals = snapshots["deal_id"].unique()
    part = rng.random(len(deals))
    role = pd.Series(np.where(part < 0.7, 0, np.where(part < 0.85, 1, 2)), index=deals)
    which = role.reindex(snapshots["deal_id"]).to_numpy()
    names = [f.name for f in spec]
    kinds = {f.name: f.kind for f in spec}
    vocab = {
        f.name: sorted(snapshots[f.name].dropna().astype(str).unique().tolist())
        for f in spec
        if f.kind == "categorical"
    }
    stub = TimingBundle(names, kinds, vocab, None)
    contract = stub.feature_contract()
    calendar = calendar_weights(snapshots)
    x_fit, y_fit, w_fit = bin_rows(snapshots[which == 0], rng=rng, calendar=calendar)
    x_stop, y_stop, w_stop = bin_rows(snapshots[which == 1], rng=rng, calendar=calendar)
    tail_share, tail_days = _tail(snapshots)
    # The win model's defaults (learning rate 0.05, 31 leaves). The earlier 0.1 / 15 leaves
    # stopped before the trees had learnt how long-cycle deals' hazards fall off: their median
    # came out too short (measured in docs/timing.md).
    params = lgb_params(len(x_fit), seed) | {"objective": "multiclass", "num_class": 3}
    if len(np.unique(y_fit)) < 3 or len(y_stop) == 0:
        table = _constant_hazards(y_fit, w_fit, x_fit["bin_start"].to_numpy())
        bundle = TimingBundle(names, kinds, vocab, None, constant_hazards=table)
    else:
        # The trees start from each bin's class shares, and each bin's scores are then
        # recalibrated on the early-stopping rows: an early-stopped softmax booster left the
        # rare "won within 7 days" 12-20 % too high on held-out deals.
        priors = bin_log_priors(y_fit, w_fit, x_fit["bin_start"].to_numpy())
        train_set = lgb.Dataset(
            contract.matrix(x_fit),
            y_fit,
            weight=w_fit,
            init_score=_init_score(priors, x_fit),
            free_raw_data=False,
        )
        stop_matrix = contract.matrix(x_stop)
        stop_set = lgb.Dataset(
            stop_matrix,
            y_stop,
            weight=w_stop,
            init_score=_init_score(priors, x_stop),
            reference=train_set,
        )
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=MAX_ROUNDS,
            valid_sets=[stop_set],
            callbacks=[lgb.early_stopping(30, verbose=False)],
        )
        raw_stop = np.asarray(booster.predict(stop_matrix, raw_score=True), dtype=float)
        offsets = recalibrated_offsets(
            raw_stop + _init_score(priors, x_stop), y_stop, w_stop, _bin_index(x_stop), priors
        )
        bundle = TimingBundle(
            names, kinds, vocab, booster, bin_log_priors=offsets.tolist(), calendar_in_start=True
        )
    bundle.tail_win_share, bundle.tail_days = tail_share, tail_days
    bundle.calendar_weights = calendar
    # Conformal levels are read on the early-stopping and the calibration deals together: twice
    # the deals for the 10 % and 90 % tails (at 5,000 deals the calibration share alone left the
    # holdout coverage anywhere in 72-82 %). The early-stopping deals chose only the number of
    # trees and the per-bin offsets; holdout coverage at 20,000 deals stayed 78-81 % with them
    # (docs/timing.md).
    levels = conformal_levels(bundle, snapshots[which >= 1])
    bundle.pit_levels = (levels if levels is not None else LEVELS).tolist()
    bundle.metadata = {
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "edges": list(EDGES),
        "best_iteration": int(bundle.booster.best_iteration) if bundle.booster else 0,
        "won_age_max_days": won_age_max_days(snapshots),
    }
    return bundle, params


def won_age_max_days(snapshots: pd.DataFrame) -> float | None:
    """The oldest age at which a deal of the training data closed won (days from creation):
    the data's support for "when will it close" (``TimingBundle.predict``)."""
    won = snapshots[snapshots["label_won"] == 1]
    if not len(won) or "age_days" not in won:
        return None
    ages = pd.to_numeric(won["age_days"], errors="coerce") + won["days_to_close"]
    top = float(np.nanmax(ages.to_numpy(dtype=float))) if ages.notna().any() else np.nan
    return top if np.isfinite(top) else None


def bin_log_priors(y: np.ndarray, w: np.ndarray, start: np.ndarray) -> np.ndarray:
    """(bins, 3) log class shares per bin (none / won / lost), floored so no class is
    impossible: the booster's starting score."""
    shares = np.asarray(_constant_hazards(y, w, start), dtype=float)
    shares = np.maximum(shares, 1e-4)
    return np.asarray(np.log(shares / shares.sum(axis=1, keepdims=True)))


def _bin_index(rows: pd.DataFrame) -> np.ndarray:
    index = np.searchsorted(np.asarray(EDGES[:-1], dtype=float), rows["bin_start"].to_numpy())
    return np.clip(index, 0, len(EDGES) - 2)


def _init_score(priors: np.ndarray, rows: pd.DataFrame) -> np.ndarray:
    return np.asarray(priors[_bin_index(rows)] + calendar_score(rows))


RECALIBRATION_PRIOR = 20.0  # pseudo-events pulling a bin's correction towards none


def recalibrated_offsets(
    raw: np.ndarray, y: np.ndarray, w: np.ndarray, index: np.ndarray, priors: np.ndarray
) -> np.ndarray:
    """Per-bin starting scores, corrected so the held-out rows' mean probabilities match.

    A softmax booster stopped early spreads its scores more than it corrects their mean, and a
    rare class's mean probability grows with the spread (the exponential is convex): closing
    won within 7 days came out 12-20 % too high on held-out deals. Each bin's won and lost
    scores are shifted until their weighted mean probability equals the observed share on the
    early-stopping rows (``RECALIBRATION_PRIOR`` pseudo-events shrink small bins' shifts)."""
    offsets = np.array(priors, dtype=float)
    if len(w) and w.sum() > 0:
        w = w * (len(w) / w.sum())  # weights in row units, so the pseudo-events mean something
    for b in range(len(offsets)):
        rows = index == b
        if not rows.any():
            continue
        weight = w[rows]
        observed = np.array([float(weight[y[rows] == c].sum()) for c in range(3)])
        shift = np.zeros(3)
        for _ in range(25):
            p = softmax(raw[rows] + shift, axis=-1)
            expected = (p * weight[:, None]).sum(axis=0)
            step = np.log((observed + RECALIBRATION_PRIOR) / (expected + RECALIBRATION_PRIOR))
            step[NONE] = 0.0
            shift += step
            if np.abs(step).max() < 1e-6:
                break
        offsets[b] = priors[b] + shift
    return offsets


CALENDAR_MIN_WON = 300  # won closings needed before calendar weights are learnt
CALENDAR_PRIOR = 20.0  # pseudo-closings pulling a month's weight towards 1


def calendar_weights(snapshots: pd.DataFrame) -> dict[str, list[float]] | None:
    """Relative won-closing intensity per calendar month and weekday, from the history.

    Month: won closings in the month per open deal-day in it (each weekly snapshot row is 7
    open days in its month), so a growing pipeline does not read as seasonality; shrunk
    towards 1 by ``CALENDAR_PRIOR`` pseudo-closings. Weekday: the share of won closings on
    each weekday (open deals are exposed on every day alike). Both have mean 1. ``None`` with
    fewer than ``CALENDAR_MIN_WON`` closings or less than a year of months (spread evenly)."""
    won = snapshots[(snapshots["outcome"] == "won") & snapshots["closed_at"].notna()]
    closed = pd.to_datetime(won.drop_duplicates("deal_id")["closed_at"])
    months_seen = pd.to_datetime(snapshots["as_of"]).dt.month
    if len(closed) < CALENDAR_MIN_WON or months_seen.nunique() < 12:
        return None
    closings = np.bincount(closed.dt.month.to_numpy() - 1, minlength=12).astype(float)
    exposure = np.bincount(months_seen.to_numpy() - 1, minlength=12).astype(float) * 7.0
    expected = exposure * closings.sum() / exposure.sum()
    month = (closings + CALENDAR_PRIOR) / (expected + CALENDAR_PRIOR)
    weekday = np.bincount(closed.dt.day_of_week.to_numpy(), minlength=7).astype(float)
    weekday = weekday / weekday.mean()
    return {
        "month": [float(v) for v in month / month.mean()],
        "weekday": [float(v) for v in weekday],
    }


def _constant_hazards(y: np.ndarray, w: np.ndarray, start: np.ndarray) -> list[list[float]]:
    """Per-bin class shares: the model when there is too little to learn from."""
    table = []
    for edge in EDGES[:-1]:
        mask = start == edge
        total = float(w[mask].sum())
        if total <= 0:
            table.append([1.0, 0.0, 0.0])
            continue
        table.append([float(w[mask & (y == c)].sum()) / total for c in (NONE, WON, LOST)])
    return table


def _tail(snapshots: pd.DataFrame) -> tuple[float, float]:
    """Won share and mean extra days of deals still open at the last edge, once closed."""
    last = float(EDGES[-1])
    remaining = snapshots["days_to_close"].to_numpy(dtype=float)
    late = remaining >= last
    if late.sum() < 10:
        return 0.3, 180.0
    won = (snapshots["outcome"].to_numpy(dtype=object) == "won") & late
    return float(won.sum() / late.sum()), float(np.mean(remaining[late] - last))


def ipcw(days: np.ndarray, observed: np.ndarray) -> np.ndarray:
    """1 / P(a remaining time of ``days`` was observed), from the observation windows."""
    ordered = np.sort(observed)
    share = 1.0 - np.searchsorted(ordered, days, side="left") / max(len(ordered), 1)
    return 1.0 / np.clip(share, 0.05, 1.0)


def conformal_levels(
    bundle: TimingBundle, calibration: pd.DataFrame, mature_only: bool = True
) -> np.ndarray | None:
    """Weighted quantiles of won deals' PIT values: the level that held at each nominal one.

    ``None`` when fewer than 30 won deals are there to learn from."""
    if mature_only:
        mature = calibration[calibration["days_observed"] >= MATURE_DAYS]
        calibration = mature if (mature["outcome"] == "won").sum() >= 100 else calibration
    won = calibration[calibration["outcome"] == "won"]
    if len(won) < 30:
        return None
    hz = bundle.hazards(won, won["as_of"].reset_index(drop=True))
    days = won["days_to_close"].to_numpy(dtype=float)
    pit = bundle.pit(hz, days)
    weights = ipcw(days, calibration["days_observed"].to_numpy(dtype=float))
    order = np.argsort(pit)
    cum = np.cumsum(weights[order])
    cum = (cum - 0.5 * weights[order]) / cum[-1]
    levels = np.interp(LEVELS, cum, pit[order])
    levels[0], levels[-1] = 0.0, 1.0
    return np.maximum.accumulate(levels)


def evaluate(
    bundle: TimingBundle,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    spec: list[Feature],
    seed: int,
) -> tuple[dict[str, float | None], dict[str, dict[str, float | None]], pd.DataFrame]:
    """Interval coverage and days-to-close errors on holdout won deals, against baselines."""
    won = holdout[holdout["outcome"] == "won"].reset_index(drop=True)
    if won.empty:
        return {"won_rows": 0.0}, {}, pd.DataFrame()
    hz = bundle.hazards(won, won["as_of"])
    actual = won["days_to_close"].to_numpy(dtype=float)
    weights = ipcw(actual, holdout["days_observed"].to_numpy(dtype=float))
    predictions = won[["deal_id", "as_of"]].copy()
    predictions["actual_days"] = actual
    predictions["low"] = bundle.quantile_days(hz, (1 - NOMINAL) / 2)
    predictions["median"] = bundle.quantile_days(hz, 0.5)
    predictions["high"] = bundle.quantile_days(hz, 1 - (1 - NOMINAL) / 2)
    predictions["stage_median"] = stage_median_baseline(train)(won)
    predictions["closed_only"] = closed_only_baseline(train, spec, seed)(won)
    long = actual >= np.quantile(actual, 0.75)
    inside = (actual >= predictions["low"]) & (actual <= predictions["high"])
    metrics: dict[str, float | None] = {
        "won_rows": float(len(won)),
        "coverage_80": float(np.average(inside, weights=weights)),
        **_errors(actual, predictions["median"], weights, long),
    }
    baselines = {
        name: _errors(actual, predictions[name], weights, long)
        for name in ("stage_median", "closed_only")
    }
    return metrics, baselines, predictions


def _errors(
    actual: np.ndarray, predicted: pd.Series, weights: np.ndarray, long: np.ndarray
) -> dict[str, float | None]:
    """Mean absolute and mean (signed: negative = too early) errors in days, overall and on
    long cycles (the top quarter of actual days to close), censoring-weighted."""
    error = np.asarray(predicted, dtype=float) - actual
    out: dict[str, float | None] = {}
    for suffix, mask in (("", np.ones(len(actual), dtype=bool)), ("_long", long)):
        if not mask.any():
            out[f"mae_days{suffix}"] = out[f"mean_error_days{suffix}"] = None
            continue
        out[f"mae_days{suffix}"] = float(np.average(np.abs(error[mask]), weights=weights[mask]))
        out[f"mean_error_days{suffix}"] = float(np.average(error[mask], weights=weights[mask]))
    return out


def stage_median_baseline(train: pd.DataFrame) -> Any:
    """Median remaining days of won snapshots, per stage (closed deals only)."""
    won = train[train["outcome"] == "won"]
    overall = float(won["days_to_close"].median()) if len(won) else 30.0
    by_stage = won.groupby(won["current_stage"].astype(str), observed=True)["days_to_close"]
    table = by_stage.median().to_dict()

    def predict(frame: pd.DataFrame) -> np.ndarray:
        stage = frame["current_stage"].astype(str)
        return np.asarray([table.get(s, overall) for s in stage], dtype=float)

    return predict


def closed_only_baseline(train: pd.DataFrame, spec: list[Feature], seed: int) -> Any:
    """LightGBM on log days to close of won snapshots whose deal closed by the cut-off."""
    won = train[train["outcome"] == "won"]
    names = [f.name for f in spec]
    kinds = {f.name: f.kind for f in spec}
    vocab = {
        f.name: sorted(won[f.name].dropna().astype(str).unique().tolist())
        for f in spec
        if f.kind == "categorical"
    }
    contract = FeatureContract(names, kinds, vocab)
    params = lgb_params(len(won), seed) | {"objective": "regression"}
    target = np.log1p(won["days_to_close"].to_numpy(dtype=float))
    booster = lgb.train(params, lgb.Dataset(contract.matrix(won), target), num_boost_round=200)

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            np.expm1(np.asarray(booster.predict(contract.matrix(frame)), dtype=float))
        )

    return predict

"""Choose what is served per period length: the blend or a standard forecaster, by backtest.

The pipeline + series blend (``training.revenue.fit``) competes on the company total, on the
same rolling origins, steps and actuals, with few alternatives: the simple methods (seasonal
naive, naive, the mean of the last season) and the ensemble, the mean of the best
``ENSEMBLE_SIZE`` standard forecasters of ``salesml.models.revenue.candidates`` (``POOL``). The
lowest WAPE is served. No single standard forecaster is served alone: picked on a handful of
origins, the best one is mostly the luckiest, and a mean of the best few is what holds on the
year after. Seasonal naive is itself a candidate, so what is served never scores worse than it
on the user's own backtest; when nothing beats the simple methods, the best simple one is
served and the note says so.

The served method's interval widths are normalised split-conformal on its own backtest log
errors (``salesml.models.revenue.intervals``, the blend's rule); each candidate's coverage
is cross-fitted (purged leave-one-origin-out) so the figures logged and shown are out of
sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from salesml.models.revenue.candidates import (
    DAILY,
    ENSEMBLE,
    ENSEMBLE_SIZE,
    METHODS,
    MONTHLY,
    MONTHLY_BASE,
    MONTHLY_PREFIX,
    POOL,
    SERIES,
    SIMPLE,
    candidate_forecasts,
    daily_won,
)
from salesml.models.revenue.intervals import step_widths
from salesml.models.revenue.metrics import wape
from salesml.models.revenue.periods import period_range, period_start, season_length

BLEND = "blend"
# Periods of the served path stored in the bundle: two seasons (and at least 24 periods).
PATH_SEASONS = 2
# Long backtests (how the forecast far ahead is chosen): a season ahead, at most this many.
LONG_HORIZON: dict[str, int] = {"week": 52, "month": 12, "quarter": 4}
LONG_ORIGINS = 12
FIT_SEASONS = 2  # seasons of sales before a season-long backtest origin
MIN_LONG_ORIGINS = 3
LABELS = {
    BLEND: "pipeline + series blend",
    "seasonal_naive": "seasonal naive",
    "naive": "naive (last period)",
    "mean": "mean of the last season",
    "ets": "AutoETS",
    "theta": "AutoTheta",
    "arima": "AutoARIMA",
    "mstl": "MSTL",
    "prophet": "Prophet (default) on periods",
    "prophet_daily": "Prophet on days, summed",
    SERIES: "the blend's series component",
    ENSEMBLE: "mean of the best candidates",
}
LABELS |= {
    MONTHLY_PREFIX + m: f"{LABELS[m].replace(' on periods', '')} on months, spread to weeks"
    for m in MONTHLY_BASE
}


@dataclass
class Choice:
    """What is served for one period length, and why."""

    champion: str
    members: list[str]  # the methods averaged (the champion alone unless it is the ensemble)
    scores: dict[str, dict[str, float | None]]  # method → wape_total, coverage_80_total
    note: str
    log_errors: list[dict[str, float]] = field(default_factory=list)  # per step, total
    offset: float = 0.0
    path: list[float] = field(default_factory=list)
    path_from: str | None = None
    from_step: int = 0  # the steps ahead it serves start here (0, or the blend's horizon)


def candidate_records(
    deals: pd.DataFrame,
    total: pd.Series,
    freq: str,
    origins: Sequence[pd.Timestamp],
    horizon: int,
    methods: Sequence[str] = METHODS,
) -> pd.DataFrame:
    """One row per (origin, step) of the total: the actual and every candidate's forecast,
    each fitted on the complete periods before the origin only."""
    daily = daily_won(deals, max(origins)) if any(m in DAILY + MONTHLY for m in methods) else None
    rows = []
    for origin in origins:
        train = total[total.index < origin]
        if len(train) == 0:
            continue
        known_daily = daily[daily.index < origin] if daily is not None else None
        forecasts = candidate_forecasts(train, freq, horizon, known_daily, methods)
        for step, period in enumerate(period_range(origin, horizon, freq)):
            row: dict[str, object] = {
                "origin": origin,
                "step": step,
                "period_start": period,
                "actual": float(total.get(period, 0.0)),
            }
            row |= {name: float(values[step]) for name, values in forecasts.items()}
            rows.append(row)
    return pd.DataFrame(rows)


def choose(
    rows: pd.DataFrame, steps: int, candidates: Sequence[str]
) -> tuple[str, dict[str, float], dict[str, np.ndarray]]:
    """The served method among few: the blend or its series component (when candidates), the
    simple methods and the
    ensemble, the mean of the ``ENSEMBLE_SIZE`` standard forecasters (``POOL``) with the lowest
    WAPE on ``rows``. A single forecaster of the pool is never served alone: chosen on a few
    origins, the best one is mostly the luckiest (synth-noqe-3 monthly: Prophet on days won
    three season-long origins and scored 1.6 × AutoETS on the year after). Returns
    (champion, member → weight, predictions)."""
    actual = rows["actual"].to_numpy(dtype=float)
    preds = {
        c: rows[c].to_numpy(dtype=float) for c in candidates if c in rows and rows[c].notna().all()
    }
    scores = {c: _wape(actual, p) for c, p in preds.items()}
    ranked = sorted((c for c in scores if c in POOL), key=lambda c: scores[c])
    members = ranked[:ENSEMBLE_SIZE]
    if len(members) >= 2:
        preds[ENSEMBLE] = np.mean([preds[c] for c in members], axis=0)
        scores[ENSEMBLE] = _wape(actual, preds[ENSEMBLE])
    # Ties go to the simpler method: the order of the list is the preference. The blend is
    # served alone only where its pipeline reaches; past that its series component is one
    # forecaster of the pool (in the ensemble or not at all), like the other series methods.
    own = (BLEND,)
    order = [c for c in (*SIMPLE, *own, ENSEMBLE) if c in scores and c in (*candidates, ENSEMBLE)]
    if not order:  # too short a history for the ensemble: the best of what ran
        order = sorted(scores, key=lambda c: scores[c])[:1]
    if not order:
        return "naive", {"naive": 1.0}, preds
    champion = min(dict.fromkeys(order), key=lambda c: scores[c])
    chosen = members if champion == ENSEMBLE else [champion]
    return champion, {c: 1.0 / len(chosen) for c in chosen}, preds


def select(
    rows: pd.DataFrame,
    steps: int,
    candidates: Sequence[str],
    from_step: int = 0,
    serve_from: int | None = None,
) -> Choice:
    """Pick the served method on ``rows`` (total rows with ``actual`` and one column per
    candidate, ``blend`` cross-fitted; only steps from ``from_step`` on are scored) and learn
    its conformal interval widths. It serves from ``serve_from`` steps ahead (default
    ``from_step``): a choice made on the near steps can carry the far ones."""
    rows = rows[rows["step"] >= from_step].reset_index(drop=True)
    champion, weights, preds = choose(rows, steps, candidates)
    offset = float(max(rows["actual"].mean() * 0.05, 1.0))
    scores: dict[str, dict[str, float | None]] = {}
    for name, pred in preds.items():
        scores[name] = {
            "wape_total": _wape(rows["actual"].to_numpy(dtype=float), pred),
            "coverage_80_total": cross_fitted_coverage(rows, pred, offset, steps),
        }
    pred = preds.get(champion, rows["actual"].to_numpy(dtype=float) * 0)
    table = conformal_table(rows, pred, offset, steps)
    served_from = from_step if serve_from is None else serve_from
    note = explain(champion, scores, served_from, judged_from=from_step)
    members = list(weights)
    return Choice(champion, members, scores, note, table, offset, from_step=served_from)


def long_origins(total: pd.Series, freq: str, horizon: int, every: int) -> list[pd.Timestamp]:
    """Origins for backtests ``horizon`` periods long: period starts after ``FIT_SEASONS``
    seasons of sales whose whole horizon is complete; at most ``LONG_ORIGINS``, spread evenly
    over that span (at least ``every`` periods apart) from the latest one back, so their
    horizons overlap as little as the history allows.

    Two seasons, because that is what the forecasters need for their yearly terms (AutoETS,
    AutoTheta, AutoARIMA and MSTL take a season from two of them on; default Prophet from
    two years): fitted on less, a backtest judges models without the seasonality that the
    served fit has. Order histories of seeds 11 and 13 (three years, monthly): on origins with
    12–24 months of sales seasonal naive beat every model, and served alone it scored 2.4 and
    3.5 × AutoETS (seasonal at 36 months) on the year after."""
    values = total.to_numpy(dtype=float)
    nz = np.flatnonzero(values != 0)
    if len(nz) == 0:
        return []
    first = int(nz[0]) + FIT_SEASONS * season_length(freq)
    last = len(values) - horizon  # index of the latest origin with a complete horizon
    if last < first:
        return []
    gap = max(every, (last - first) // max(LONG_ORIGINS - 1, 1))
    picks = list(range(last, first - 1, -gap))[:LONG_ORIGINS]
    return [pd.Timestamp(total.index[i]) for i in sorted(picks)]


def conformal_table(
    rows: pd.DataFrame, pred: np.ndarray, offset: float, steps: int
) -> list[dict[str, float]]:
    """Per step ahead: the 80 % and 95 % log bounds from |log((actual + c) / (forecast + c))|,
    normalised split-conformal with a noise + drift scale per step
    (``salesml.models.revenue.intervals.step_widths``)."""
    err = np.log((rows["actual"].to_numpy(dtype=float) + offset) / (np.maximum(pred, 0) + offset))
    return step_widths(err, rows["step"].to_numpy(dtype=int), steps)


def cross_fitted_coverage(
    rows: pd.DataFrame, pred: np.ndarray, offset: float, steps: int
) -> float | None:
    """80 % coverage with widths learnt, for each origin, on the origins whose forecast periods
    do not overlap it (None with fewer than 3 origins)."""
    origins = rows["origin"].unique()
    if len(origins) < 3:
        return None
    span = rows.groupby("origin")["period_start"].agg(["min", "max"])
    inside = np.zeros(len(rows), dtype=bool)
    for origin in origins:
        test = (rows["origin"] == origin).to_numpy()
        lo, hi = span.loc[origin, "min"], span.loc[origin, "max"]
        clash = span.index[(span["min"] <= hi) & (span["max"] >= lo)]
        train = ~rows["origin"].isin(clash).to_numpy()
        if train.sum() == 0:
            train = ~test
        table = conformal_table(rows[train], pred[train], offset, steps)
        for i in np.flatnonzero(test):
            q = table[min(int(rows["step"].iloc[i]), len(table) - 1)]
            base = max(pred[i], 0.0) + offset
            low = base * np.exp(q["lower_80"]) - offset
            high = base * np.exp(q["upper_80"]) - offset
            inside[i] = low <= rows["actual"].iloc[i] <= high
    return float(inside.mean())


def explain(
    champion: str,
    scores: dict[str, dict[str, float | None]],
    from_step: int = 0,
    judged_from: int | None = None,
) -> str:
    """One sentence for the card, the ``train`` output and the report."""

    def w(name: str) -> str:
        value = scores.get(name, {}).get("wape_total")
        return "—" if value is None else f"{value:.3f}"

    peer = "seasonal_naive" if "seasonal_naive" in scores else "naive"
    label = LABELS.get(champion, champion)
    if from_step > 0 and judged_from == 0:
        what = "the blend" if champion == SERIES else label
        return (
            f"from {from_step + 1} periods ahead: {what}, the best of the standard forecasters "
            f"and the blend's series on the near steps (backtest WAPE {w(champion)}; "
            f"{LABELS[peer]} {w(peer)}; too short a history for season-long backtests)"
        )
    if from_step > 0:
        what = "the blend" if champion == SERIES else label
        return (
            f"from {from_step + 1} periods ahead: {what} (backtest WAPE {w(champion)} over "
            f"those steps; {LABELS[peer]} {w(peer)})"
        )
    if champion == BLEND:
        return (
            f"serving the pipeline + series blend: backtest WAPE {w(BLEND)} against "
            f"{LABELS[peer]} {w(peer)}"
        )
    if champion in SIMPLE:
        return (
            f"every other candidate lost to {label} on this history's backtest "
            f"(WAPE {w(champion)}; blend {w(BLEND)}): serving {label}"
        )
    return (
        f"the pipeline + series blend lost to {label} on this history's backtest "
        f"(WAPE {w(champion)} against {w(BLEND)}; {LABELS[peer]} {w(peer)}): serving {label}"
    )


def served_path(
    deals: pd.DataFrame, total: pd.Series, freq: str, end: pd.Timestamp, members: Sequence[str]
) -> tuple[list[float], str]:
    """The served statistical forecast of the total from the current period on, fitted on the
    complete periods before ``end``: (values, first period start)."""
    m = season_length(freq)
    n = max(PATH_SEASONS * m, 24)
    start = period_start(end, freq)
    daily = daily_won(deals, start) if any(c in DAILY + MONTHLY for c in members) else None
    forecasts = candidate_forecasts(total[total.index < start], freq, n, daily, members)
    usable = [forecasts[c] for c in members if c in forecasts]
    if not usable:  # a method that fitted at every origin failed now: the level instead
        usable = [candidate_forecasts(total[total.index < start], freq, n, None, ["mean"])["mean"]]
    path = np.mean(usable, axis=0)
    return [float(v) for v in path], f"{start:%Y-%m-%d}"


def _wape(actual: np.ndarray, pred: np.ndarray) -> float:
    value = float(wape(actual, pred))
    return value if np.isfinite(value) else float("inf")

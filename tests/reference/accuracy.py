"""The accuracy study behind docs/forecast.md and docs/timing.md: the models measured on
synthetic histories against what the generator knows (its ``_truth/``).

- **revenue**: rolling-origin backtests (``training.revenue.fit.run_backtests``), the blend
  scored cross-fitted (purged leave-one-origin-out), company-total WAPE of every component and
  80 % / 95 % coverage;
- **timing**: the holdout model of ``salesml train``, its 80 % days-to-close coverage against
  the generator's truth (which knows when deals still open at the export close), and the
  long-cycle mean error against the closed-deals-only baseline, on the holdout and on a history
  cut to its first 15 months (the four definitions of docs/timing.md).

``python -m benchmarks.accuracy`` prints the docs' tables from it; the tests assert the targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_snapshots, weekly_as_of_dates
from features.history import History
from features.spec import feature_spec
from tests.helpers.history import SyntheticWorkspace, synthesize, synthetic_workspace
from training.data import truncate_history
from training.revenue import fit as tf
from training.timing.fit import closed_only_baseline, fit_timing, relabel, train_timing_model

SEEDS = (11, 5, 23, 37)  # the seeds of the docs' tables
DEALS = 20_000  # the size the docs' targets are claimed at
Metrics = dict[str, dict[str, dict[str, float | None]]]  # freq → component → metric → value


@dataclass(frozen=True)
class Study:
    """What the study measures on: a history, its weekly snapshots and the generator's truth."""

    history: History
    snapshots: pd.DataFrame
    truth: pd.DataFrame

    @classmethod
    def of(cls, workspace: SyntheticWorkspace) -> Study:
        history = workspace.history
        snapshots = build_snapshots(history, weekly_as_of_dates(history))
        return cls(history, snapshots, workspace.truth)


def synthetic(deals: int, seed: int, root: Path) -> Study:
    """The study of one freshly generated export of ``deals`` deals (in ``root/s<seed>``)."""
    return Study.of(synthesize(root / f"s{seed}", deals, seed))


def documented_study(tmp_path_factory: pytest.TempPathFactory, seed: int) -> Study:
    """The study of one documented seed at 20,000 deals (its export built once per session)."""
    return Study.of(synthetic_workspace(tmp_path_factory, deals=DEALS, seed=seed))


def revenue_metrics(history: History, snapshots: pd.DataFrame) -> Metrics:
    """freq → component → metrics of the rolling-origin backtests, the blend cross-fitted."""
    records, _ = tf.run_backtests(history, 0, ("week", "month"), False, snapshots)
    out = {}
    for freq in ("week", "month"):
        part = records[records["freq"] == freq]
        out[freq] = tf.backtest_metrics(tf.cross_fitted_blend(part, tf.HORIZON[freq]))[freq]
    return out


def truth_rows(
    history: History, truth: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Snapshots in [start, end) of deals eventually won, with their true days to close."""
    dates = list(pd.date_range(start, end, freq="7D", inclusive="left"))
    snaps = build_snapshots(history, dates).merge(
        truth[["deal_id", "eventual_status", "eventual_closed_at"]], on="deal_id"
    )
    won = snaps[snaps["eventual_status"] == "won"].reset_index(drop=True)
    won["true_days"] = (won["eventual_closed_at"] - won["as_of"]) / pd.Timedelta(days=1)
    return won


def short_history_long_errors(history: History, truth: pd.DataFrame) -> tuple[float, float]:
    """Long-cycle mean error (days) of the hazard model and of the closed-deals-only baseline,
    both trained on the history cut to its first 15 months (most long cycles censored), on the
    next 8 weeks' snapshots of eventually won deals, against the truth; "long" is the top
    quarter of actual days to close."""
    cutoff = (history.deals["created_at"].min() + pd.Timedelta(days=450)).normalize()
    short = truncate_history(history, cutoff)
    spec = feature_spec(short)
    snapshots = relabel(build_snapshots(short, weekly_as_of_dates(short)), cutoff)
    model, _ = fit_timing(snapshots, spec, seed=0)
    baseline = closed_only_baseline(snapshots, spec, seed=0)
    rows = truth_rows(history, truth, cutoff, cutoff + pd.Timedelta(days=56))
    actual = rows["true_days"].to_numpy()
    long = actual >= np.quantile(actual, 0.75)
    ours = model.quantile_days(model.hazards(rows, rows["as_of"]), 0.5)
    naive = np.asarray(baseline(rows), dtype=float)
    return float(np.mean(ours[long] - actual[long])), float(np.mean(naive[long] - actual[long]))


@dataclass
class TimingStudy:
    """80 % coverage against the truth, and long-cycle mean errors (ours, closed-only baseline)
    in days, four ways (docs/timing.md); ``short_history`` only when asked for."""

    coverage: float
    holdout: tuple[float, float]
    planted: tuple[float, float]
    top_quarter: tuple[float, float]
    short_history: tuple[float, float] | None


def timing_study(
    history: History, snapshots: pd.DataFrame, truth: pd.DataFrame, short: bool = True
) -> TimingStudy:
    result = train_timing_model(history, snapshots=snapshots)
    rows = truth_rows(history, truth, result.holdout_start, result.holdout_end)
    bundle = result.holdout_bundle
    hz = bundle.hazards(rows, rows["as_of"])
    days = rows["true_days"].to_numpy()
    low, high = bundle.quantile_days(hz, 0.1), bundle.quantile_days(hz, 0.9)
    spec = feature_spec(history)
    before = relabel(snapshots[snapshots["as_of"] <= result.holdout_start], result.holdout_start)
    baseline = closed_only_baseline(before, spec, seed=0)
    ours_err = bundle.quantile_days(hz, 0.5) - days
    base_err = np.asarray(baseline(rows), dtype=float) - days
    planted_days = rows.merge(truth[["deal_id", "cycle_median_days"]], on="deal_id", how="left")[
        "cycle_median_days"
    ]
    planted = (planted_days >= planted_days.quantile(0.75)).to_numpy()
    top = days >= np.quantile(days, 0.75)
    return TimingStudy(
        coverage=float(np.mean((days >= low) & (days <= high))),
        holdout=(
            float(result.holdout_metrics["mean_error_days_long"] or np.nan),
            float(result.baseline_metrics["closed_only"]["mean_error_days_long"] or np.nan),
        ),
        planted=(float(ours_err[planted].mean()), float(base_err[planted].mean())),
        top_quarter=(float(ours_err[top].mean()), float(base_err[top].mean())),
        short_history=short_history_long_errors(history, truth) if short else None,
    )

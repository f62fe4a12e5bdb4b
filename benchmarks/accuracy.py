"""Accuracy study behind docs/forecast.md and docs/timing.md: synthetic histories, checked
against what the generator knows.

For each seed, a synthetic export of ``--deals`` deals (ending 2026-06-30) is generated and
imported, then:

- **revenue**: rolling-origin backtests (``training.revenue.fit.run_backtests``), blend scored
  cross-fitted (purged leave-one-origin-out), company-total WAPE of every component, the
  ``0.8 × seasonal naive`` target and 80 % / 95 % coverage;
- **timing** (``--timing``): the holdout model of ``salesml train``, its 80 % days-to-close
  coverage against the generator's truth (which knows when deals still open at the export
  close), and the long-cycle mean error against the closed-deals-only baseline, on the holdout
  and on a history cut to its first 15 months (the four definitions of docs/timing.md).

Usage: ``python -m benchmarks.accuracy --deals 20000 --seeds 11,5,23,37 [--timing]`` (about
3 minutes per seed for the revenue part on 2 cores). It is a study, not part of ``make bench``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from features.build import build_snapshots, weekly_as_of_dates
from features.history import History, load_history
from features.spec import feature_spec
from salesml.importers import read_export, run_import
from salesml.synth import generate
from salesml.warehouse import connect
from training.data import truncate_history
from training.revenue import fit as tf
from training.timing.fit import closed_only_baseline, fit_timing, relabel, train_timing_model

END = date(2026, 6, 30)


def synthetic(deals: int, seed: int, root: Path) -> tuple[History, pd.DataFrame, pd.DataFrame]:
    """History, weekly snapshots and the generator's truth for one synthetic export."""
    data = root / f"s{seed}"
    generate(deals, seed, data / "export", end_date=END)
    run_import(read_export(data / "export", "canonical"), data / "w.duckdb", data / "rejects")
    con = connect(data / "w.duckdb", read_only=True)
    history = load_history(con)
    con.close()
    truth = pd.read_parquet(data / "export" / "_truth" / "deals_truth.parquet")
    return history, build_snapshots(history, weekly_as_of_dates(history)), truth


def revenue_metrics(
    history: History, snapshots: pd.DataFrame
) -> dict[str, dict[str, dict[str, float | None]]]:
    """freq → component → metrics of the rolling-origin backtests, the blend cross-fitted."""
    records, _ = tf.run_backtests(history, 0, ("week", "month"), False, snapshots)
    out = {}
    for freq in ("week", "month"):
        part = records[records["freq"] == freq]
        out[freq] = tf.backtest_metrics(tf.cross_fitted_blend(part, tf.HORIZON[freq]))[freq]
    return out


def revenue_rows(seed: int, metrics: dict[str, dict[str, dict[str, float | None]]]) -> list[str]:
    rows = []
    for freq, m in metrics.items():
        blend, sn = m["blend"], m["seasonal_naive"]["wape_total"] or float("nan")
        wape = {c: m[c]["wape_total"] or float("nan") for c in m}
        ratio = (blend["wape_total"] or float("nan")) / sn
        rows.append(
            f"| {seed} | {freq} | {wape['blend']:.3f} | {wape['series']:.3f} | "
            f"{wape['pipeline']:.3f} | {sn:.3f} | {wape.get('prophet_default', float('nan')):.3f} "
            f"| {ratio:.2f} {'yes' if ratio <= 0.8 else 'no'} | {blend['coverage_80_total']:.2f} "
            f"| {blend['coverage_80_all']:.2f} | {blend['coverage_95_all']:.2f} |"
        )
    return rows


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


def _smaller(pair: tuple[float, float]) -> str:
    ours, baseline = pair
    return f"{ours:.1f} vs {baseline:.1f} ({1 - abs(ours) / abs(baseline):.0%} smaller)"


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


def timing_row(seed: int, study: TimingStudy) -> str:
    cells = [f"{study.coverage:.1%}", _smaller(study.holdout), _smaller(study.planted)]
    cells.append(_smaller(study.top_quarter))
    cells.append(_smaller(study.short_history) if study.short_history else "—")
    return f"| {seed} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--seeds", default="11,5,23,37")
    parser.add_argument("--timing", action="store_true", help="also the close-timing study")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    revenue = [
        "| seed | freq | blend | series | pipeline | seasonal naive | Prophet default "
        "| blend / SN ≤ 0.8 | cov80 total | cov80 all | cov95 all |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    timing = [
        "| seed | 80 % coverage (truth) | holdout | planted | top quarter (truth) "
        "| short history |",
        "|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            history, snapshots, truth = synthetic(args.deals, seed, Path(tmp))
            revenue += revenue_rows(seed, revenue_metrics(history, snapshots))
            print(*revenue[-2:], sep="\n", flush=True)
            if args.timing:
                timing.append(timing_row(seed, timing_study(history, snapshots, truth)))
                print(timing[-1], flush=True)
    print(f"\nRevenue, {args.deals:,} deals (company total, cross-fitted):")
    print("\n".join(revenue))
    if args.timing:
        print(f"\nClose timing, {args.deals:,} deals (long-cycle mean error in days):")
        print("\n".join(timing))


if __name__ == "__main__":
    main()

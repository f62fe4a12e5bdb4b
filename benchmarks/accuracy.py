"""Accuracy study behind docs/forecast.md and docs/timing.md, as the docs' tables: synthetic
histories checked against what the generator knows (the study itself, also asserted by the
tests, is ``tests/reference/accuracy.py``).

For each seed, a synthetic export of ``--deals`` deals (ending 2026-06-30) is generated and
imported, then:

- **revenue**: company-total WAPE of every component of the rolling-origin backtests, the
  ``0.8 × seasonal naive`` target and 80 % / 95 % coverage;
- **timing** (``--timing``): the 80 % days-to-close coverage against the generator's truth and
  the long-cycle mean error against the closed-deals-only baseline, four ways.

Usage: ``python -m benchmarks.accuracy --deals 20000 --seeds 11,5,23,37 [--timing]`` (about
3 minutes per seed for the revenue part on 2 cores). It is a study, not part of ``make bench``.

``--foreign``: instead, the histories salesml.synth did not make (flat exports from
``benchmarks.foreign.flat``, order histories from ``benchmarks.foreign.orders``, the Maven
export, synth without stage history or quarter-end effect), each against its plain peers
measured in the same run: the win model (``benchmarks.foreign_win``: AUC, Brier, ECE against a
default LightGBM, the oracle, noise among the top-3 drivers) and the revenue forecast
(``benchmarks.foreign_revenue``: WAPE against seasonal naive, default Prophet and AutoETS, 80 %
coverage). ``--json`` prints the rows as one JSON object (``make bench`` reads it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from tests.reference.accuracy import (
    Metrics,
    TimingStudy,
    revenue_metrics,
    synthetic,
    timing_study,
)


def revenue_rows(seed: int, metrics: Metrics) -> list[str]:
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


def _smaller(pair: tuple[float, float]) -> str:
    ours, baseline = pair
    return f"{ours:.1f} vs {baseline:.1f} ({1 - abs(ours) / abs(baseline):.0%} smaller)"


def timing_row(seed: int, study: TimingStudy) -> str:
    cells = [f"{study.coverage:.1%}", _smaller(study.holdout), _smaller(study.planted)]
    cells.append(_smaller(study.top_quarter))
    cells.append(_smaller(study.short_history) if study.short_history else "—")
    return f"| {seed} | " + " | ".join(cells) + " |"


def foreign(as_json: bool) -> dict[str, Any]:
    """The foreign-history benchmarks of the win model and the revenue forecast, one run."""
    from benchmarks import foreign_revenue, foreign_win

    win = foreign_win.foreign_rows()
    revenue = foreign_revenue.foreign_rows()
    out = {
        "win": win,
        "revenue": [dataclasses.asdict(r) | {"meets_bar": r.meets_bar} for r in revenue],
    }
    if as_json:
        print(json.dumps(out))
    else:
        print("\nWin model against its plain peer (foreign exports):")
        print(foreign_win.markdown(win))
        print("\nRevenue forecast against the standard forecasters (foreign histories):")
        print(foreign_revenue.table(revenue))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--seeds", default="11,5,23,37")
    parser.add_argument("--timing", action="store_true", help="also the close-timing study")
    parser.add_argument("--foreign", action="store_true", help="the foreign-history benchmarks")
    parser.add_argument("--json", action="store_true", help="--foreign: print JSON")
    args = parser.parse_args()
    if args.foreign:
        foreign(args.json)
        return
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
            study = synthetic(args.deals, seed, Path(tmp))
            revenue += revenue_rows(seed, revenue_metrics(study.history, study.snapshots))
            print(*revenue[-2:], sep="\n", flush=True)
            if args.timing:
                timing.append(
                    timing_row(seed, timing_study(study.history, study.snapshots, study.truth))
                )
                print(timing[-1], flush=True)
    print(f"\nRevenue, {args.deals:,} deals (company total, cross-fitted):")
    print("\n".join(revenue))
    if args.timing:
        print(f"\nClose timing, {args.deals:,} deals (long-cycle mean error in days):")
        print("\n".join(timing))


if __name__ == "__main__":
    main()

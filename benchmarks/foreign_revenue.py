"""Foreign-history benchmark of the revenue forecast (issue 17): histories salesml.synth did
not make, against the standard forecasters measured in the same run.

Cases (all fixed before any result was seen):

- ``orders-<seed>``: won-only order histories from ``benchmarks.foreign.orders`` (seeds
  101, 202, 303), 2021-07-01 to 2025-07-01 inclusive; trained on the first three years,
  judged on the fourth (12 months, 52 weeks);
- ``synth-noqe-<seed>``: ``salesml.synth`` CRM histories (5,000 deals, seeds 3 and 13, ending
  2026-06-30) with the quarter-end effect switched off; trained to 2025-09-01, judged on the
  complete months and weeks after it;
- ``maven``: the public Maven CRM export (``/work/shared/data/maven-crm``), trained to
  2017-10-02 and judged on October–December 2017.

Each history is imported through the product's normal path (``salesml import`` code), cut at
the cut-off like ``salesml train --as-of``, trained as ``salesml train`` does (win and timing
models where the history has a pipeline, then the forecast with 8 backtest origins) and
forecast from the cut-off as ``salesml forecast`` does. The peers are fitted on the same
complete periods before the cut-off: seasonal naive (naive before a season of sales),
Prophet with default settings, statsforecast AutoETS. Reported per case and period length:
WAPE of each, salesml's ratio to the best peer (target ≤ 0.85), and salesml's 80 % coverage
(target 70–90 %).

The **oracle** (generated cases only; ``benchmarks.foreign.oracle``) is the WAPE of forecasting
the generator's own expected values: what is left is the history's noise, which no forecaster
removes. Where ``oracle ÷ best peer`` exceeds 0.85, the bar is out of reach in expectation on
that case (a lucky forecaster can still beat it on one draw).

**Rolling origins** (``--origins N``, default 1): a cell's 80 % coverage is a count over its
own periods; with 12 months, even perfectly calibrated intervals land in 70–90 % (9 or 10
inside) only about half the time, and Maven's two months can only score 0.5 or 1.0. With
``N`` > 1 each case is also trained and forecast from ``N − 1`` earlier cut-offs, a quarter
apart (``ORIGIN_SHIFT``), each judged on the same number of periods after it as the bar's
cell (so the steps ahead are the same), with the same peers fitted at each cut-off; the row
then also carries every method's WAPE and salesml's coverage pooled over all origins' periods
(``pooled``), one rule for every method. The bar itself stays the first origin's figures.

``python -m benchmarks.foreign_revenue [--cases orders,synth,maven] [--origins N] [--json]``;
``foreign_rows(cases, origins)`` returns the rows for other scripts.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.foreign.oracle import order_expected, period_totals, synth_expected
from benchmarks.foreign.orders import SEEDS as ORDER_SEEDS
from benchmarks.foreign.orders import write_orders
from features.build import build_snapshots, weekly_as_of_dates
from features.history import History
from salesml.models.revenue.bundle import Served
from salesml.models.revenue.candidates import candidate_forecasts
from salesml.models.revenue.metrics import coverage, wape
from salesml.models.revenue.periods import period_range, period_start, periods_between
from salesml.models.revenue.prophet_model import default_prophet_forecast, seasonal_naive
from salesml.scoring import Scorer
from salesml.synth import generate
from serving.forecast import forecast_rows
from tests.helpers.history import import_history
from training.data import NotEnoughDataError, truncate_history
from training.revenue.fit import segment_series, train_forecast
from training.timing.fit import train_timing_model
from training.win.fit import train_win_model

FREQS = ("month", "week")
SYNTH_SEEDS = (3, 13)
SYNTH_DEALS = 5000
MAVEN = Path("/work/shared/data/maven-crm")
TARGET_RATIO = 0.85
TARGET_COVERAGE = (0.70, 0.90)
ORIGIN_SHIFT = pd.DateOffset(months=3)  # between the cut-offs of ``--origins``


@dataclass(frozen=True)
class Case:
    name: str
    history: History
    cutoff: pd.Timestamp
    expected: pd.Series | None = None  # the generator's expected won revenue per day


@dataclass(frozen=True)
class Row:
    case: str
    freq: str
    periods: int
    salesml: float
    served: str
    seasonal_naive: float
    prophet_default: float
    auto_ets: float
    ratio_to_best_peer: float
    coverage_80: float
    oracle: float | None = None  # WAPE of the generator's expected values (None: not known)
    # With several origins: the cut-offs used and, pooled over their periods, salesml's and
    # each peer's WAPE ("salesml", "seasonal_naive", "prophet_default", "auto_ets"), the ratio
    # to the best peer ("ratio") and salesml's 80 % coverage ("coverage_80", "periods").
    origins: int = 1
    pooled: dict[str, float] | None = None

    @property
    def oracle_ratio(self) -> float | None:
        """The oracle's WAPE ÷ the best peer's: above the target ratio, the bar is out of
        reach in expectation."""
        if self.oracle is None or self.ratio_to_best_peer <= 0:
            return None
        best = self.salesml / self.ratio_to_best_peer
        return self.oracle / best if best > 0 else None

    @property
    def meets_bar(self) -> bool:
        lo, hi = TARGET_COVERAGE
        return self.ratio_to_best_peer <= TARGET_RATIO and lo <= self.coverage_80 <= hi


def order_cases(root: Path) -> list[Case]:
    out = []
    for seed in ORDER_SEEDS:
        export = root / f"orders-{seed}"
        write_orders(export, seed, date(2021, 7, 1), date(2025, 7, 2))
        history = import_history(export, "canonical", root / f"orders-{seed}-home")
        expected = order_expected(seed, date(2021, 7, 1), date(2025, 7, 2))
        out.append(Case(f"orders-{seed}", history, pd.Timestamp("2024-07-01"), expected))
    return out


def synth_cases(root: Path) -> list[Case]:
    out = []
    for seed in SYNTH_SEEDS:
        export = root / f"synth-{seed}"
        generate(SYNTH_DEALS, seed, export, end_date=date(2026, 6, 30), quarter_end=False)
        history = import_history(export, "canonical", root / f"synth-{seed}-home")
        expected = synth_expected(export, history.deals)
        out.append(Case(f"synth-noqe-{seed}", history, pd.Timestamp("2025-09-01"), expected))
    return out


def maven_cases(root: Path) -> list[Case]:
    if not MAVEN.exists():
        return []
    history = import_history(MAVEN, "maven", root / "maven-home")
    return [Case("maven", history, pd.Timestamp("2017-10-02"))]


def trained_scorer(history: History) -> tuple[Scorer | None, pd.DataFrame | None]:
    """The win model with its timing model, as ``salesml train`` fits them (None without a
    pipeline: a won-only history)."""
    if not ((history.deals["status"] == "open").any() or (history.deals["status"] == "lost").any()):
        return None, None
    try:
        win = train_win_model(history, seed=0)
    except NotEnoughDataError:
        return None, None
    snapshots = build_snapshots(history, weekly_as_of_dates(history))
    timing = train_timing_model(history, seed=0, snapshots=snapshots)
    return Scorer(win.bundle, timing.bundle), snapshots


def peer_forecasts(train: pd.Series, freq: str, h: int) -> dict[str, np.ndarray]:
    """Seasonal naive, default Prophet and AutoETS fitted on ``train``."""
    ets = candidate_forecasts(train, freq, h, None, ["ets"]).get("ets")
    return {
        "seasonal_naive": np.asarray(seasonal_naive(train, h, freq).forecast, dtype=float),
        "prophet_default": np.asarray(default_prophet_forecast(train, h, freq).forecast),
        "auto_ets": ets if ets is not None else np.full(h, np.nan),
    }


@dataclass(frozen=True)
class Judged:
    """One cut-off's forecast of one period length against what happened."""

    actual: np.ndarray
    forecast: np.ndarray
    lower_80: np.ndarray
    upper_80: np.ndarray
    peers: dict[str, np.ndarray]
    served: str
    truth: np.ndarray | None


def judged_periods(case: Case) -> dict[str, int]:
    """Period length → the complete periods from the case's cut-off to its export."""
    out = {}
    for freq in FREQS:
        first = period_start(case.cutoff, freq)
        end = period_start(case.history.exported_at, freq)
        out[freq] = len(periods_between(first, end, freq))
    return out


def judge_from(case: Case, cutoff: pd.Timestamp, horizons: dict[str, int]) -> dict[str, Judged]:
    """Train at ``cutoff`` as ``salesml train --as-of`` does, forecast ``horizons[freq]``
    periods from it as ``salesml forecast`` does, fit the peers on the same complete periods."""
    cut = truncate_history(case.history, cutoff)
    scorer, snapshots = trained_scorer(cut)
    result = train_forecast(cut, seed=0, freqs=FREQS, snapshots=snapshots, max_origins=8)
    out = {}
    for freq in FREQS:
        h = horizons.get(freq, 0)
        if h < 1:
            continue
        first = period_start(cutoff, freq)
        periods = period_range(first, h, freq)
        full = segment_series(case.history.deals, freq, case.history.exported_at)["total|total"]
        actual = full.reindex(periods).fillna(0.0).to_numpy(dtype=float)
        ours = forecast_rows(cut, scorer, result.bundle, freq, h, cutoff, draws=200)
        ours = ours[ours["segment"] == "total"].set_index("period_start").reindex(periods)
        truth = None
        if case.expected is not None:
            expected = period_totals(case.expected, freq).reindex(periods).fillna(0.0)
            truth = expected.to_numpy(dtype=float)
        out[freq] = Judged(
            actual,
            ours["forecast"].to_numpy(dtype=float),
            ours["lower_80"].to_numpy(dtype=float),
            ours["upper_80"].to_numpy(dtype=float),
            peer_forecasts(full[full.index < first], freq, h),
            served_label(result.bundle.model(freq).served),
            truth,
        )
    return out


def pooled_scores(judged: Sequence[Judged]) -> dict[str, float]:
    """WAPE of salesml and of each peer, and salesml's 80 % coverage, over the periods of every
    origin together (one rule for every method)."""
    actual = np.concatenate([j.actual for j in judged])
    out = {"salesml": float(wape(actual, np.concatenate([j.forecast for j in judged])))}
    for name in judged[0].peers:
        out[name] = float(wape(actual, np.concatenate([j.peers[name] for j in judged])))
    best = min(out[n] for n in judged[0].peers if np.isfinite(out[n]))
    out["ratio"] = out["salesml"] / best if best > 0 else float("inf")
    lower = np.concatenate([j.lower_80 for j in judged])
    upper = np.concatenate([j.upper_80 for j in judged])
    out["coverage_80"] = float(coverage(actual, lower, upper))
    out["periods"] = float(len(actual))
    return out


def case_rows(case: Case, origins: int = 1) -> list[Row]:
    """Train at the cut-off, forecast every complete period after it, score against peers
    (and with ``origins`` > 1 also from earlier cut-offs, ``ORIGIN_SHIFT`` apart)."""
    horizons = judged_periods(case)
    runs = [judge_from(case, case.cutoff, horizons)]
    for i in range(1, origins):
        try:
            runs.append(judge_from(case, case.cutoff - i * ORIGIN_SHIFT, horizons))
        except NotEnoughDataError:  # too early in this history to train
            break
    rows = []
    for freq, first in runs[0].items():
        scores = {name: float(wape(first.actual, values)) for name, values in first.peers.items()}
        best = min(v for v in scores.values() if np.isfinite(v))
        mine = float(wape(first.actual, first.forecast))
        oracle = None if first.truth is None else float(wape(first.actual, first.truth))
        judged = [run[freq] for run in runs if freq in run]
        rows.append(
            Row(
                case.name,
                freq,
                len(first.actual),
                mine,
                first.served,
                scores["seasonal_naive"],
                scores["prophet_default"],
                scores["auto_ets"],
                mine / best if best > 0 else float("inf"),
                float(coverage(first.actual, first.lower_80, first.upper_80)),
                oracle,
                len(judged),
                pooled_scores(judged) if len(judged) > 1 else None,
            )
        )
    return rows


def served_label(served: Sequence[Served]) -> str:
    """ "blend", or what carries the near steps → what carries the far ones."""
    return " → ".join(part.method for part in served) or "blend"


def foreign_rows(
    cases: Sequence[str] = ("orders", "synth", "maven"), origins: int = 1
) -> list[Row]:
    """Every case's rows (generated, imported and trained in a temporary folder)."""
    makers = {"orders": order_cases, "synth": synth_cases, "maven": maven_cases}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            for case in makers[name](Path(tmp)):
                rows += case_rows(case, origins)
    return rows


def table(rows: Sequence[Row]) -> str:
    """The rows as a markdown table (with the pooled columns when a row has several origins)."""
    several = any(r.pooled for r in rows)
    extra = " origins | pooled ÷ best peer | pooled cov80 (periods) |" if several else ""
    lines = [
        "| history | freq | periods | salesml | served | seasonal naive | Prophet default "
        "| AutoETS | ÷ best peer (≤ 0.85) | cov80 (70–90 %) | oracle | oracle ÷ best peer |"
        + extra,
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|---|---|" if several else ""),
    ]
    for r in rows:
        oracle = "—" if r.oracle is None else f"{r.oracle:.3f}"
        reach = "—" if r.oracle_ratio is None else f"{r.oracle_ratio:.2f}"
        line = (
            f"| {r.case} | {r.freq} | {r.periods} | {r.salesml:.3f} | {r.served} | "
            f"{r.seasonal_naive:.3f} | {r.prophet_default:.3f} | {r.auto_ets:.3f} | "
            f"{r.ratio_to_best_peer:.2f} | {r.coverage_80:.2f} | {oracle} | {reach} |"
        )
        if several:
            p = r.pooled
            line += (
                f" {r.origins} | {p['ratio']:.2f} | {p['coverage_80']:.2f} ({p['periods']:.0f}) |"
                if p
                else f" {r.origins} | — | — |"
            )
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="orders,synth,maven")
    parser.add_argument(
        "--origins",
        type=int,
        default=1,
        help="cut-offs per case, a quarter apart (pooled WAPE and coverage over them)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    rows = foreign_rows(cases, max(args.origins, 1))
    if args.json:
        out: list[dict[str, Any]] = [
            asdict(r) | {"meets_bar": r.meets_bar, "oracle_ratio": r.oracle_ratio} for r in rows
        ]
        print(json.dumps(out, indent=2))
    else:
        print(table(rows))


if __name__ == "__main__":
    main()

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

``python -m benchmarks.foreign_revenue [--cases orders,synth,maven] [--json]``;
``foreign_rows(cases)`` returns the rows for other scripts.
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


def case_rows(case: Case) -> list[Row]:
    """Train at the cut-off, forecast every complete period after it, score against peers."""
    cut = truncate_history(case.history, case.cutoff)
    scorer, snapshots = trained_scorer(cut)
    result = train_forecast(cut, seed=0, freqs=FREQS, snapshots=snapshots, max_origins=8)
    rows = []
    for freq in FREQS:
        first = period_start(case.cutoff, freq)
        end = period_start(case.history.exported_at, freq)
        h = len(periods_between(first, end, freq))
        if h < 1:
            continue
        periods = period_range(first, h, freq)
        full = segment_series(case.history.deals, freq, case.history.exported_at)["total|total"]
        actual = full.reindex(periods).fillna(0.0).to_numpy(dtype=float)
        ours = forecast_rows(cut, scorer, result.bundle, freq, h, case.cutoff, draws=200)
        ours = ours[ours["segment"] == "total"].set_index("period_start").reindex(periods)
        train = full[full.index < first]
        peers = peer_forecasts(train, freq, h)
        scores = {name: float(wape(actual, values)) for name, values in peers.items()}
        best = min(v for v in scores.values() if np.isfinite(v))
        mine = float(wape(actual, ours["forecast"].to_numpy(dtype=float)))
        oracle = None
        if case.expected is not None:
            truth = period_totals(case.expected, freq).reindex(periods).fillna(0.0)
            oracle = float(wape(actual, truth.to_numpy(dtype=float)))
        cover = float(
            coverage(
                actual,
                ours["lower_80"].to_numpy(dtype=float),
                ours["upper_80"].to_numpy(dtype=float),
            )
        )
        rows.append(
            Row(
                case.name,
                freq,
                h,
                mine,
                served_label(result.bundle.model(freq).served),
                scores["seasonal_naive"],
                scores["prophet_default"],
                scores["auto_ets"],
                mine / best if best > 0 else float("inf"),
                cover,
                oracle,
            )
        )
    return rows


def served_label(served: Sequence[Served]) -> str:
    """ "blend", or what carries the near steps → what carries the far ones."""
    return " → ".join(part.method for part in served) or "blend"


def foreign_rows(cases: Sequence[str] = ("orders", "synth", "maven")) -> list[Row]:
    """Every case's rows (generated, imported and trained in a temporary folder)."""
    makers = {"orders": order_cases, "synth": synth_cases, "maven": maven_cases}
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            for case in makers[name](Path(tmp)):
                rows += case_rows(case)
    return rows


def table(rows: Sequence[Row]) -> str:
    lines = [
        "| history | freq | periods | salesml | served | seasonal naive | Prophet default "
        "| AutoETS | ÷ best peer (≤ 0.85) | cov80 (70–90 %) | oracle | oracle ÷ best peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        oracle = "—" if r.oracle is None else f"{r.oracle:.3f}"
        reach = "—" if r.oracle_ratio is None else f"{r.oracle_ratio:.2f}"
        lines.append(
            f"| {r.case} | {r.freq} | {r.periods} | {r.salesml:.3f} | {r.served} | "
            f"{r.seasonal_naive:.3f} | {r.prophet_default:.3f} | {r.auto_ets:.3f} | "
            f"{r.ratio_to_best_peer:.2f} | {r.coverage_80:.2f} | {oracle} | {reach} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="orders,synth,maven")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = foreign_rows([c.strip() for c in args.cases.split(",") if c.strip()])
    if args.json:
        out: list[dict[str, Any]] = [
            asdict(r) | {"meets_bar": r.meets_bar, "oracle_ratio": r.oracle_ratio} for r in rows
        ]
        print(json.dumps(out, indent=2))
    else:
        print(table(rows))


if __name__ == "__main__":
    main()

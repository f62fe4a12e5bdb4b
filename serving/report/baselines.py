"""Models against the simple rules they replace: a model that does not beat its baseline is
flagged wherever the report shows its figures (docs/report.md, "Model health").

- **win**: holdout log loss and Brier against each logged baseline (base rate, stage win
  rate, rep win rate, logistic regression), the rule of the model card: it beats a baseline
  when both are lower;
- **timing**: mean absolute error of the close date against the stage-median baseline;
- **forecast**: backtest WAPE of the blend against seasonal naive, per period length; the
  backtest figures are undefined (``—``, never compared) when the data holds no won revenue,
  since every error is then 0 / 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from features.history import History
from salesml.models.evaluation import baselines_not_beaten
from serving.report import format as fmt

WIN_BASELINES = {
    "base_rate": "base rate",
    "stage_probability": "stage win rate",
    "rep_win_rate": "rep win rate",
    "logistic_regression": "logistic regression",
}


@dataclass(frozen=True)
class Flag:
    """A model that does not beat its baseline: which (``win`` / ``timing`` / ``forecast``),
    why in words, and the pill's tone."""

    model: str
    text: str
    tone: str = "bad"


def _value(metrics: dict[str, Any], name: str) -> float | None:
    value = metrics.get(name)
    if value is None or fmt.missing(value):
        return None
    return float(value)


def win_flag(metrics: dict[str, Any]) -> Flag | None:
    """The baselines the win model does not beat on holdout log loss and Brier (None: it
    beats every one logged, or its own figures were not logged)."""
    not_beaten = baselines_not_beaten(
        {name: _value(metrics, name) for name in metrics if not isinstance(metrics[name], str)}
    )
    lost = [label for key, label in WIN_BASELINES.items() if key in (not_beaten or [])]
    if not lost:
        return None
    return Flag(
        "win",
        f"the win model does not beat {', '.join(lost)} on holdout log loss and Brier: "
        "read its probabilities as no better than that baseline",
        "bad" if "base rate" in lost else "warn",
    )


def timing_flag(metrics: dict[str, Any]) -> Flag | None:
    """The close-timing model's mean error against the stage-median baseline's (None: it is
    at least as good, or either was not logged)."""
    mine = _value(metrics, "timing_mae_days")
    baseline = _value(metrics, "timing_baseline_stage_median_mae_days")
    if mine is None or baseline is None or mine <= baseline:
        return None
    return Flag(
        "timing",
        f"the close-timing model misses by {fmt.days(mine)} on average, the stage-median "
        f"baseline by {fmt.days(baseline)}: read its close dates with care",
    )


def backtests_defined(history: History) -> bool:
    """Whether the forecast's backtests measured anything: some won deal in the data has an
    amount (without one every actual is 0, so WAPE, MASE and coverage are 0 / 0)."""
    deals = history.deals
    if not len(deals) or "amount" not in deals:
        return False
    won = deals[deals["status"] == "won"]
    return bool((pd.to_numeric(won["amount"], errors="coerce").fillna(0.0).abs() > 0).any())


def forecast_flags(
    backtest: dict[str, Any], defined: bool = True, served: dict[str, Any] | None = None
) -> list[Flag]:
    """Per period length, what the backtest chose to serve when it is not the blend (a
    warning when nothing beat the simple methods); for bundles without a choice, a flag where
    the blend's backtest WAPE is higher than seasonal naive's."""
    if not defined:
        return []
    flags = []
    for freq, choice in (served or {}).items():
        champion = str((choice or {}).get("champion", "blend"))
        if champion == "blend":
            continue
        simple = champion in ("seasonal_naive", "naive", "mean")
        flags.append(
            Flag("forecast", f"{freq}: {choice.get('note', '')}", "warn" if simple else "")
        )
    for freq, comps in backtest.items():
        if freq in (served or {}):
            continue
        blend = (comps or {}).get("blend") or {}
        naive = (comps or {}).get("seasonal_naive") or {}
        b, n = _value(blend, "wape_total"), _value(naive, "wape_total")
        if b is not None and n is not None and b > n:
            flags.append(
                Flag(
                    "forecast",
                    f"{freq}: the forecast does not beat seasonal naive in backtests (WAPE "
                    f"{fmt.pct(b)} vs {fmt.pct(n)}); read its ranges with care",
                    "warn",
                )
            )
    return flags


def model_flags(
    history: History, win_metrics: dict[str, Any], forecast: Any | None
) -> dict[str, list[Flag]]:
    """Every flag of the registered models, by model."""
    flags: dict[str, list[Flag]] = {"win": [], "timing": [], "forecast": []}
    for flag in (win_flag(win_metrics), timing_flag(win_metrics)):
        if flag is not None:
            flags[flag.model].append(flag)
    if forecast is not None:
        metadata = forecast.bundle.metadata
        defined = backtests_defined(history)
        flags["forecast"] = forecast_flags(
            metadata.get("backtest") or {}, defined, metadata.get("served")
        )
    return flags

"""Log the revenue forecast's backtests to MLflow, and register the forecast bundle
(``salesml-forecast``) the way the win model is registered.

The forecast is refitted on the latest history every time it is trained, so the newest version
becomes ``champion``; earlier versions stay in the registry, and moving the alias back is a
rollback. Each version carries its backtest table (WAPE, MASE, interval coverage per component)
and a plot of backtest forecasts against actuals.
"""

from __future__ import annotations

import importlib.util
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from salesml import jsonio
from salesml.models.registry import (
    CHAMPION,
    FORECAST_EXPERIMENT,
    FORECAST_MODEL_NAME,
    artifact_root,
    configure,
    set_champion,
)
from salesml.models.revenue.candidates import ENSEMBLE
from training.revenue.fit import ForecastTrainingResult
from training.revenue.select import LABELS


@dataclass(frozen=True)
class ForecastRegistration:
    version: str
    alias: str
    reason: str
    run_id: str


def forecast_model_code() -> Path:
    spec = importlib.util.find_spec("salesml.models.revenue.pyfunc")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


def flat_metrics(metrics: dict[str, dict[str, dict[str, float | None]]]) -> dict[str, float]:
    out = {}
    for freq, comps in metrics.items():
        for comp, values in comps.items():
            for name, value in values.items():
                if value is not None:
                    out[f"{freq}_{comp}_{name}"] = float(value)
    return out


def candidate_metrics(result: ForecastTrainingResult) -> dict[str, float]:
    """``<freq>_candidate_<method>_<metric>`` (``<freq>_far_candidate_…`` past the blend's
    horizon): every candidate's backtest WAPE and coverage."""
    out = {}
    for freq, choices in result.choices.items():
        for choice in choices:
            prefix = f"{freq}_far" if choice.from_step else freq
            for method, values in choice.scores.items():
                for name, value in values.items():
                    if value is not None and math.isfinite(value):
                        out[f"{prefix}_candidate_{method}_{name}"] = float(value)
    return out


def forecast_card(result: ForecastTrainingResult) -> str:
    """The forecast's card (Markdown): per period length what is served and why, and every
    candidate's backtest WAPE and 80 % coverage on the company total."""
    lines = [
        "# Revenue forecast",
        "",
        "Served per period length: the pipeline + series blend, a simple method (seasonal naive, "
        "naive, the mean) or the mean of the best three standard forecasters on the backtest — "
        "never one standard forecaster alone (the best of a few origins is mostly the luckiest). "
        "Past the pipeline's horizon the blend's series component is one forecaster of the "
        "ensemble, not served alone. Weekly candidates include the monthly forecasters spread "
        "to weeks by the weekday profile of the last year's sales.",
        "",
        "80 % / 95 % intervals: split-conformal on the served method's own backtest errors "
        "(relative, per step ahead, finite-sample corrected); past the backtested steps they "
        "grow as noise + drift fitted to those steps' widths (at most as √ steps).",
        "",
    ]
    for freq, choices in result.choices.items():
        for choice in choices:
            steps = f"from step {choice.from_step + 1}" if choice.from_step else "near steps"
            lines += [f"## {freq}, {steps}", "", choice.note, ""]
            lines += ["| candidate | WAPE (total) | 80 % coverage (total) |", "|---|---|---|"]
            ranked = sorted(
                choice.scores.items(), key=lambda kv: kv[1].get("wape_total") or float("inf")
            )
            for method, values in ranked:
                served = " (served)" if method == choice.champion else ""
                lines.append(
                    f"| {LABELS.get(method, method)}{served} | {_cell(values.get('wape_total'))} "
                    f"| {_cell(values.get('coverage_80_total'))} |"
                )
            if choice.champion == ENSEMBLE:
                members = ", ".join(LABELS.get(m, m) for m in choice.members)
                lines += ["", f"Ensemble of: {members}"]
            lines.append("")
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.3f}"


def backtest_plot(records: pd.DataFrame, path: Path) -> Path:
    """Backtest forecasts of the company total against actuals, one panel per period length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    total = records[records["dimension"] == "total"]
    freqs = list(dict.fromkeys(total["freq"]))
    fig, axes = plt.subplots(len(freqs) or 1, 1, figsize=(9, 3.2 * max(len(freqs), 1)))
    axes_list = list(axes) if len(freqs) > 1 else [axes]
    for ax, freq in zip(axes_list, freqs, strict=False):
        part = total[(total["freq"] == freq) & (total["step"] == 0)].sort_values("period_start")
        ax.plot(part["period_start"], part["actual"], "k.-", label="actual")
        for comp, style in (("blend", "C0-"), ("seasonal_naive", "C1--"), ("series", "C2:")):
            if comp in part:
                ax.plot(part["period_start"], part[comp], style, label=comp)
        if "blend_lower_80" in part:
            ax.fill_between(
                part["period_start"],
                part["blend_lower_80"].astype(float),
                part["blend_upper_80"].astype(float),
                alpha=0.2,
                label="blend 80 %",
            )
        ax.set_title(f"{freq}: one period ahead, company total")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def log_forecast(result: ForecastTrainingResult, as_of: str | None) -> ForecastRegistration:
    """Log backtests and register the forecast bundle; the new version becomes champion."""
    import mlflow

    client = configure()
    if mlflow.get_experiment_by_name(FORECAST_EXPERIMENT) is None:
        mlflow.create_experiment(FORECAST_EXPERIMENT, artifact_location=artifact_root())
    mlflow.set_experiment(FORECAST_EXPERIMENT)
    meta = result.bundle.metadata
    with (
        mlflow.start_run(run_name=f"forecast-{meta.get('trained_to')}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        work = Path(tmp)
        params: dict[str, Any] = {
            "as_of": as_of or "latest",
            "trained_to": meta.get("trained_to"),
            "freqs": ",".join(result.bundle.freqs),
            "has_pipeline": meta.get("has_pipeline"),
            "fallbacks": len(result.fallbacks),
        }
        params |= {f"served_{freq}": c[0].champion for freq, c in result.choices.items()}
        mlflow.log_params(params)
        mlflow.log_metrics(flat_metrics(result.metrics) | candidate_metrics(result))
        if result.choices:
            (work / "forecast_card.md").write_text(forecast_card(result), encoding="utf-8")
            mlflow.log_artifact(str(work / "forecast_card.md"))
        if not result.records.empty:
            records = result.records.drop(columns=["train_values"], errors="ignore")
            records.to_csv(work / "backtest_records.csv", index=False)
            mlflow.log_artifact(str(work / "backtest_records.csv"))
            mlflow.log_artifact(str(backtest_plot(result.records, work / "backtest.png")))
        (work / "backtest.json").write_text(
            jsonio.dumps({"metrics": result.metrics, "fallbacks": result.fallbacks}, indent=2),
            encoding="utf-8",
        )
        mlflow.log_artifact(str(work / "backtest.json"))
        bundle_dir = result.bundle.save(work / "forecast")
        example = pd.DataFrame(
            {"freq": ["month"], "horizon": [3], "as_of": [str(meta.get("trained_to"))]}
        )
        info = mlflow.pyfunc.log_model(
            name="forecast_model",
            python_model=str(forecast_model_code()),
            artifacts={"forecast": str(bundle_dir)},
            registered_model_name=FORECAST_MODEL_NAME,
            input_example=example,
        )
        version = str(info.registered_model_version)
        reason = (
            "refitted on the latest history (the previous version stays for rollback)"
            if version != "1"
            else "the first forecast trained on this history"
        )
        set_champion("forecast", version, reason)  # remembers the champion it replaces
        client.set_model_version_tag(
            FORECAST_MODEL_NAME, version, "backtest", jsonio.dumps(result.metrics)[:5000]
        )
        for freq, choices in result.choices.items():
            note = "; ".join(c.note for c in choices)
            client.set_model_version_tag(
                FORECAST_MODEL_NAME, version, f"served_{freq}", note[:5000]
            )
        if result.choices:
            client.update_model_version(
                FORECAST_MODEL_NAME, version, description=forecast_card(result)[:5000]
            )
        return ForecastRegistration(version, CHAMPION, reason, run.info.run_id)

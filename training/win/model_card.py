"""The model card: a markdown page a revenue-ops analyst can read to decide whether to trust it."""

from __future__ import annotations

import pandas as pd

from salesml.models.evaluation import ece_floor
from training.win.fit import LEAVES, MODEL_NAME, WinTrainingResult

METRIC_NAMES = ("auc", "pr_auc", "brier", "log_loss", "ece")


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join(lines)


def baseline_flag(beats: dict[str, bool]) -> list[str]:
    """The warning at the top of the card when the model loses to a baseline ([] if not)."""
    lost = [name for name, beaten in beats.items() if not beaten]
    if not lost:
        return []
    return [
        f"> **⚠ Does not beat its baselines: {', '.join(lost)}.** On the holdout its log loss "
        "and Brier score are not both lower than theirs; its probabilities are no better than "
        "that simple rule.",
        "",
    ]


def render_model_card(result: WinTrainingResult, version: str, decision: str) -> str:
    """Markdown: data window, holdout metrics against baselines, calibration, known limits."""
    bundle = result.bundle
    window = result.split.window()
    rows = [("**model**", result.holdout_metrics)]
    beats = result.beats_baselines
    rows += [
        (name if beats.get(name, True) else f"{name} ⚠ beats the model", m)
        for name, m in result.baseline_metrics.items()
    ]
    lines = [
        f"# Win-probability model, version {version}",
        "",
        f"Registry decision: {decision}",
        "",
        *baseline_flag(beats),
        *served_lines(result),
        "## Data",
        "",
        f"- trained on history up to {bundle.metadata.get('trained_to')}, feature spec "
        f"{bundle.spec_version}",
        f"- train snapshots: {window['train']} ({len(result.split.train):,} rows)",
        f"- validation (early stopping, calibration): {window['validation']} "
        f"({len(result.split.validation):,} rows)",
        f"- holdout (never seen in training): {window['holdout']} "
        f"({len(result.split.holdout):,} rows); snapshots from the last "
        f"{window['maturity_days']} days are left out so their outcomes have had time to show",
        "",
        "## Holdout metrics against baselines",
        "",
        "| model | " + " | ".join(METRIC_NAMES) + " |",
        "|---|" + "---|" * len(METRIC_NAMES),
    ]
    for name, metrics in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(k)) for k in METRIC_NAMES) + " |")
    lines += [
        "",
        "Lower is better for brier, log_loss and ece; higher for auc and pr_auc. The model "
        + (
            "beats every baseline on log loss and Brier."
            if all(beats.values())
            else "does not beat: " + ", ".join(n for n, b in beats.items() if not b) + "."
        ),
        "",
        "## Calibration",
        "",
        f"Calibrator: **{bundle.calibrator.name}**, chosen by cross-validated log loss on the "
        "validation period among:",
        "",
        _markdown_table(result.calibrator_table),
        "",
        "The reliability plot (reliability.png) compares predicted and observed win rates on "
        "the holdout.",
        *_ece_floor_lines(result),
        "",
        "## Known limits",
        "",
    ]
    if result.little_signal:
        booster = result.booster_holdout_metrics
        lines.append(
            "- **Little signal.** The features carry too little information about winning: the "
            "calibrated LightGBM model did not beat the base rate on validation (its holdout AUC "
            f"was {_fmt(booster.get('auc'))}). This model therefore predicts the base rate "
            f"({bundle.base_rate:.1%}: the win rate of the matured deals, each deal counted "
            "once however many weeks it stayed open) for every deal — an honest answer, not a "
            "ranking. Add "
            "stage history and activities to the export to give it something to learn from."
        )
    lines += [
        "- Probabilities are calibrated on the period just before the holdout; if win rates "
        "drift, retrain (the champion is only replaced by a model that beats it on the same "
        "holdout).",
        "- Outcomes of recent snapshots are known only for deals that closed quickly; the "
        "holdout stops before the most recent weeks to limit that bias.",
        "- Deal amount, stage and expected close date are read from stage history as of each "
        "date; a deal without any reads the deals table's value only where the leakage screen "
        "keeps that column (below), and leaves it unknown otherwise.",
    ]
    for name, why in result.excluded.items():
        lines.append(f"- Custom attribute `{name}` was left out: {why}.")
    lines += flat_lines(result)
    return "\n".join(lines) + "\n"


SERVED = {
    "lightgbm": "the regularised LightGBM model on every screened feature",
    "plain_lightgbm": (
        "**the plain peer** — a default LightGBM (300 trees) on the deal-table columns — "
        "because it beat the full model on the holdout (log loss, then Brier)"
    ),
    "base_rate": "**the base rate** for every deal (neither model beat it)",
}


def served_lines(result: WinTrainingResult) -> list[str]:
    """What is served and why, what the screen dropped, and the refit."""
    lines = [
        "## Served model",
        "",
        f"Served: {SERVED.get(result.served, result.served)}. Both the model and the plain peer "
        "were fitted on the same training snapshots, calibrated on the same validation period "
        "and scored on the same holdout; the other one is listed among the baselines below.",
        "",
    ]
    if result.refit:
        lines += [
            f"After the choice it was refitted with the same settings on every matured snapshot "
            f"up to {result.refit['to']} ({result.refit['rows']:,} rows, "
            f"{result.refit['deals']:,} deals), so the newest deals count; its calibrator (same "
            "kind) was refitted on out-of-sample scores of the validation and holdout periods. "
            "The holdout metrics below are those of the fit made before the holdout.",
            "",
        ]
    drift = result.bundle.metadata.get("calibration_drift")
    if drift:
        what = {
            "trend": "carries the win rate's trend over creation dates",
            "cohort": "is levelled to the newest creation cohort's early closes",
        }.get(str(drift.get("adopted")), "carries the drift")
        verdict = (
            f"served: the calibration {what} up to {drift['at']}"
            if drift.get("served")
            else "not served: the plain calibrator stays"
        )
        lines += [
            f"Calibration under drift (a trend over creation dates, or the newest creation "
            f"cohort's level from its early closes; checked on the deals created after an "
            f"earlier as-of, {drift.get('judged_deals', 0):,} deals, open ones counted by "
            f"their age): {drift.get('reason')}; {verdict}.",
            "",
        ]
    leaves = result.params.get("num_leaves")
    if result.served == MODEL_NAME and leaves is not None:
        lines += [
            f"Tree size: {leaves} leaves per tree, chosen on the validation period among "
            f"{', '.join(map(str, LEAVES))} (the lower log loss per deal on the cross-fitted "
            "halves the screen judges on; few leaves make a nearly additive model).",
            "",
        ]
    if result.dropped:
        lines += ["Features dropped by the screen on the validation period:", ""]
        lines += [f"- `{name}`: {why}" for name, why in result.dropped.items()]
        lines.append("")
    return lines


def flat_lines(result: WinTrainingResult) -> list[str]:
    """Which deals-table columns a deal without stage history reads, and which it does not."""
    lines = [
        f"- Deals without stage history read the deals table's `{name}` as its creation-time "
        f"value: {why}."
        for name, why in result.flat.items()
    ]
    lines += [
        f"- Deals without stage history leave `{name}` unknown: {why}."
        for name, why in result.excluded_flat.items()
    ]
    return lines


def _ece_floor_lines(result: WinTrainingResult) -> list[str]:
    """ECE's sampling floor on the holdout: what a perfectly calibrated model would score."""
    p = result.holdout_predictions.get("win_probability")
    if p is None or not len(p) or result.holdout_metrics.get("ece") is None:
        return []
    return [
        "",
        f"ECE on {len(p):,} holdout rows has a sampling floor: a perfectly calibrated model "
        f"with these probabilities would score about {ece_floor(p.to_numpy()):.4f} (the median "
        "over outcomes drawn from them); an ECE near it cannot be told from perfect calibration.",
    ]

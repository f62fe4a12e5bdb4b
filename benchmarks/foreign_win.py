"""The win model on exports salesml/synth did not make, against a plain peer in the same run.

Cases (fixed before any result was seen): the flat generator of ``benchmarks.foreign.flat``
on seeds ``FLAT_SEEDS``, its variant with stage history on half of the deals, the Maven CRM
export (``/work/shared/data/maven-crm``) and salesml/synth's history with its stage history
removed.

Per case, in one run:

1. ``salesml import`` the whole export into a fresh workspace (the flat exports through
   ``--format mapping`` with the generator's mapping file);
2. sort the closed deals by creation; the oldest 75 % are the training side and the cut ``T``
   is the day the first of the newest 25 % was created; ``salesml train --as-of T --models win``
   (the product sees exactly the history known at T);
3. score the newest 25 % with the registered champion, as ``salesml score`` does, each at the
   first Monday at least a week after its creation (its first meetings logged), or at the last
   Monday it was open, or at its creation when it lived less than a week between Mondays;
4. the peer: ``LGBMClassifier`` (300 trees, defaults) on the deal-table columns of the same
   closed deals (those closed by T), the columns salesml may read (amount / stage / expected
   close only where its leakage screen keeps them, never a won-only column), predicting the
   same newest 25 %.

Reported: AUC, Brier, ECE of both; the oracle AUC (the generators' true probabilities); the
share of scored deals whose top-3 drivers include a noise attribute; what training served.

Usage: ``python -m benchmarks.foreign_win [--deals 28000] [--seeds 101,202,303]`` (``--deals``
sizes the flat exports; salesml/synth's stays at ``SYNTH_DEALS``); the rows
come from :func:`foreign_rows` (for ``benchmarks.accuracy --foreign`` and ``make bench``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FLAT_SEEDS = (101, 202, 303)
PARTIAL_SEED = 404
SYNTH_SEED = 505
# Deals per flat export. ECE's sampling floor (a perfectly calibrated model's median ECE over
# the newest quarter's outcomes) is about 0.030 at 6,000 deals (1,410 scored): the bar of
# 0.025 was not measurable. Fixed before any model was run at the new size, from the flat
# generator's true probabilities alone (seed 101): floor 0.0185 at 16,000 deals, 0.0171 at
# 20,000, 0.0154 at 24,000, 0.0141 at 28,000 (6,613 scored). 28,000 is the smallest of these
# with the floor at most 0.015. Seeds and generator settings are unchanged.
DEALS = 28_000
# salesml/synth's history stays at 6,000 deals (its generator writes leads, reps, accounts
# and NPS too; the flat cases are where the ECE bar is judged at a measurable size).
SYNTH_DEALS = 6000
MAVEN = Path("/work/shared/data/maven-crm")
TRAIN_SHARE = 0.75
# The bar of issue 16.
AUC_MARGIN, BRIER_MARGIN, MAX_ECE, ORACLE_MARGIN, MAX_NOISE = 0.003, 0.001, 0.025, 0.02, 0.05
# The censoring-weighted ECE (``censoring_weights``) reads the deals created after the cut and
# at least this share of whose won and lost deals (by the cycles of the deals created before
# the cut) had closed by the export: weights stay at most 1 / 0.8.
MIN_CLOSED_SHARE = 0.8


@dataclass(frozen=True)
class Case:
    """One export: where it is, how it is imported, what is known about it."""

    name: str
    export: Path
    fmt: str
    mapping: Path | None = None
    truth: pd.DataFrame | None = None  # deal_id, true_probability
    noise: tuple[str, ...] = ()  # noise attributes (as imported, without attr_)
    # salesml/synth's latent drivers (deals_truth.parquet), for the observable oracle
    latent: pd.DataFrame | None = None


def flat_case(root: Path, seed: int, deals: int, stage_share: float = 0.0) -> Case:
    from benchmarks.foreign.flat import generate_flat

    name = f"flat seed {seed}" if not stage_share else f"flat seed {seed}, stages on half"
    export = generate_flat(root / f"flat-{seed}", seed, deals, stage_share=stage_share)
    return Case(
        name,
        export.folder,
        "mapping",
        export.folder / "mapping.yaml",
        export.truth[["deal_id", "true_probability"]],
        export.noise,
    )


def synth_case(root: Path, seed: int, deals: int) -> Case:
    """salesml/synth's history with its stage history removed (a flat export of it)."""
    from salesml.synth import generate

    export = root / f"synth-{seed}"
    generate(deals, seed, export)
    truth = pd.read_parquet(export / "_truth" / "deals_truth.parquet")
    shutil.rmtree(export / "_truth")
    (export / "stage_history.parquet").unlink()
    truth = truth.rename(columns={"true_win_probability": "true_probability"})
    return Case(
        f"synth seed {seed}, no stage history",
        export,
        "canonical",
        truth=truth[["deal_id", "true_probability"]],
        noise=("noise_label", "noise_score"),
        latent=truth,
    )


def observable_oracle(
    latent: pd.DataFrame,
    ids: np.ndarray,
    age_days: np.ndarray,
    logged: np.ndarray,
    draws: int = 4000,
) -> np.ndarray:
    """salesml/synth's win probability given what the data shows at the scoring date.

    The true probability (``win_logit``) includes the deal's latent engagement (1.2 on the
    log-odds per standard deviation, the largest single effect), which the data shows only
    through the activities it produces: ``Poisson(rate * cycle)`` over the deal's life, front-
    loaded for lost deals and late for won ones (``salesml.synth.activities``). A deal scored
    a week after creation has logged about 0.7. This is the Bayes probability given the deal's
    other drivers (taken as known: rep skill, price ratio, competitor, ...), the ``logged``
    activities by the scoring date and the deal being open at ``age_days``: engagement, the
    outcome, a lost deal's exit stage and the cycle drawn from the generator's laws (Monte
    Carlo, seeded; quarter-end slips and weekdays left out)."""
    from salesml.synth import catalog, effects

    rows = latent.set_index("deal_id").loc[ids]
    rest = rows["win_logit"].to_numpy() - effects.ENGAGEMENT_COEF * rows["engagement_z"].to_numpy()
    factors = np.asarray(effects.CYCLE_LOST_EXIT_FACTOR)
    exit_stage = rows["exit_stage"].astype(str).to_numpy()
    stages = list(catalog.STAGES)
    lost_factor = np.array(
        [factors[stages.index(e)] if stages.index(e) < len(factors) else 1.0 for e in exit_stage]
    )
    won = (rows["eventual_status"].astype(str) == "won").to_numpy()
    log_base = np.log(rows["cycle_median_days"].to_numpy()) - np.where(
        won, 0.0, np.log(lost_factor)
    )
    rng = np.random.default_rng(0)
    share = np.asarray(catalog.LOST_EXIT_STAGE_SHARE) / np.sum(catalog.LOST_EXIT_STAGE_SHARE)
    out = np.empty(len(ids))
    for i in range(len(ids)):
        z = rng.standard_normal(draws)
        w = rng.random(draws) < 1 / (1 + np.exp(-(rest[i] + effects.ENGAGEMENT_COEF * z)))
        exit_factor = factors[rng.choice(len(share), draws, p=share)]
        cycle = np.exp(
            log_base[i]
            + np.where(w, 0.0, np.log(exit_factor))
            + effects.CYCLE_SIGMA * rng.standard_normal(draws)
        )
        rate = effects.ENGAGEMENT_BASE_RATE * np.exp(effects.ENGAGEMENT_SIGMA * z)
        s = np.clip(age_days[i] / cycle, 0.0, 1.0)
        mass = np.where(w, 0.6 * s + 0.4 * s**2, 2 * s - s**2)  # share of life's activities
        mu = rate * cycle * mass
        like = np.exp(logged[i] * np.log(np.maximum(mu, 1e-300)) - mu) * (cycle > age_days[i])
        total = like.sum()
        out[i] = float((like * w).sum() / total) if total > 0 else float(w.mean())
    return out


def cases(root: Path, seeds: tuple[int, ...], deals: int) -> list[tuple[str, Callable[[], Case]]]:
    """(name, make) per case; ``make`` writes the export when called."""
    found: list[tuple[str, Callable[[], Case]]] = [
        (f"flat seed {s}", partial(flat_case, root, s, deals)) for s in seeds
    ]
    found.append(
        (
            f"flat seed {PARTIAL_SEED}, stages on half",
            partial(flat_case, root, PARTIAL_SEED, deals, 0.5),
        )
    )
    if MAVEN.is_dir():
        found.append(("Maven CRM export", lambda: Case("Maven CRM export", MAVEN, "maven")))
    found.append(
        (
            f"synth seed {SYNTH_SEED}, no stage history",
            partial(synth_case, root, SYNTH_SEED, min(deals, SYNTH_DEALS)),
        )
    )
    return found


def _cli(env: dict[str, str], *args: str) -> str:
    cli = str(Path(sys.executable).parent / "salesml")
    done = subprocess.run([cli, *args], check=False, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"salesml {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def run_case(case: Case, root: Path) -> dict[str, Any]:
    """Import, train at the cut, score the newest quarter; the peer on the same deals."""
    home = root / "home"
    env = os.environ | {
        "SALESML_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    args = ["import", str(case.export), "--format", case.fmt]
    _cli(env, *args, *(["--mapping", str(case.mapping)] if case.mapping else []))
    os.environ.update(env)  # the scorer below reads this workspace's registry
    history = _history(home)
    deals = history.deals
    closed = deals[deals["closed_at"].notna()].sort_values("created_at", kind="stable")
    cut = pd.Timestamp(closed["created_at"].iloc[int(len(closed) * TRAIN_SHARE)]).normalize()
    trained = json.loads(
        _cli(env, "train", "--as-of", f"{cut:%Y-%m-%d}", "--models", "win", "--json")
    )["win_model"]
    newest = closed[closed["created_at"] >= cut]
    y = (newest["status"] == "won").to_numpy(dtype=float)
    scored = _score(history, newest)
    ours = scored["win_probability"].to_numpy()
    peer = _peer(history, cut, newest)
    row = _row(case, trained, newest, y, ours, peer, scored)
    row["drift"] = _drift_verdict()
    # the deals table's last creation or close: a stage history may carry later stamps (flat
    # 404 writes stage changes of open deals past its export date)
    export = max(deals["created_at"].max(), closed["closed_at"].max())
    row.update(_censoring_weighted(case, deals, closed, cut, newest, y, ours, export))
    row["oracle_at_cut_ece"], row["oracle_cohort_ece"] = _oracle_at_cut_ece(
        case, history, closed, cut, newest, y
    )
    seen = _observable(case, history, newest)
    if seen is not None:
        from sklearn.metrics import roc_auc_score

        row["observable_auc"] = float(roc_auc_score(y, seen))
        row["passes"] = _passes(row)
    return row


def _drift_verdict() -> str:
    """The served model's drift check (``training.win.drift``) in a few words."""
    from salesml.scoring import load_scorer

    check = load_scorer().bundle.metadata.get("calibration_drift") or {}
    if not check:
        return "—"
    ts = ", ".join(f"{name} t {t:.1f}" for name, t in (check.get("t") or {}).items())
    slope = check.get("slope_per_year")
    trend = "" if slope is None else f"; trend {slope:+.2f}/yr"
    shift, se = check.get("cohort_shift"), check.get("cohort_shift_se")
    if shift is not None:
        trend += f"; cohort shift {shift:+.2f}" + ("" if se is None else f" ± {se:.2f}")
    verdict = check.get("adopted") if check.get("served") else "off"
    return f"{verdict} ({ts or 'not judged'}{trend})"


def _oracle_at_cut_ece(
    case: Case,
    history: Any,
    closed: pd.DataFrame,
    cut: pd.Timestamp,
    newest: pd.DataFrame,
    y: np.ndarray,
) -> tuple[float | None, float | None]:
    """The oracle under drift: the generator's true probabilities, Platt-calibrated on the
    deals closed by the cut (what anyone fitting at T sees), then judged by ECE on the scored
    deals. What a model that ranks perfectly but is levelled at T scores against the bar.
    Second: the same, then moved to the level of the deals created in the last maturity
    before the cut as their states at the cut tell (``training.win.calibration_cohort``, as
    the ``cohort`` drift candidate does): what that levelling reaches with perfect ranking."""
    if case.truth is None:
        return None, None
    from scipy.special import expit, logit
    from sklearn.linear_model import LogisticRegression

    from salesml.models.evaluation import expected_calibration_error
    from training.data import maturity_days, truncate_history
    from training.win.calibration_cohort import CycleLaw, fit_shift, states_at

    known = closed[(closed["created_at"] < cut) & (closed["closed_at"] <= cut)]
    truth = case.truth.set_index("deal_id")["true_probability"]

    def x(rows: pd.DataFrame) -> np.ndarray:
        p = truth.reindex(rows["deal_id"]).to_numpy(dtype=float)
        return np.asarray(logit(np.clip(p, 1e-6, 1 - 1e-6)))[:, None]

    fitted = LogisticRegression(C=1e4).fit(x(known), (known["status"] == "won").to_numpy(float))
    at_cut = expected_calibration_error(y, fitted.predict_proba(x(newest))[:, 1])
    seen = truncate_history(history, cut).deals
    maturity = maturity_days(truncate_history(history, cut))
    law = CycleLaw.at(seen, cut, 2 * maturity)
    recent = seen[seen["created_at"] > cut - pd.Timedelta(days=maturity)]
    if law is None or recent.empty:
        return at_cut, None
    shift = fit_shift(fitted.decision_function(x(recent)), states_at(recent, cut), law)
    if shift is None:
        return at_cut, None
    levelled = expit(fitted.decision_function(x(newest)) + shift.shift)
    return at_cut, expected_calibration_error(y, levelled)


def censoring_weights(
    closed: pd.DataFrame, cut: pd.Timestamp, newest: pd.DataFrame, export: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-probability-of-censoring weights for the scored deals, and which ones count.

    The scored deals are those created after the cut that *closed by the export*; a deal
    created late is among them only if it closed fast, and won deals take longer (flat: 1.15
    against 0.9 times the cycle), so the scored outcomes lean to losses whatever the model.
    A scored deal with outcome ``o`` created ``a`` days before the export stands for
    ``1 / G_o(a)`` deals of its creation cohort, ``G_o`` the share of the deals with outcome
    ``o`` created before the cut that closed within ``a`` days. Only deals with both ``G`` at
    least ``MIN_CLOSED_SHARE`` count (no deal weighs more than 1.25; the newest, hardly
    observed, are left out). On Maven this estimates the deals that close at all (its stale
    open deals never do)."""
    ref = closed[closed["created_at"] < cut]
    ref_cycle = (ref["closed_at"] - ref["created_at"]).dt.total_seconds().to_numpy() / 86400
    ref_won = (ref["status"] == "won").to_numpy()
    age = (export - newest["created_at"]).dt.total_seconds().to_numpy() / 86400
    won = (newest["status"] == "won").to_numpy()
    weights = np.ones(len(newest))
    keep = np.ones(len(newest), dtype=bool)
    for outcome in (True, False):
        cycles = np.sort(ref_cycle[ref_won == outcome])
        if not len(cycles):
            return weights, np.zeros(len(newest), dtype=bool)
        share = np.searchsorted(cycles, age, side="right") / len(cycles)
        keep &= share >= MIN_CLOSED_SHARE
        weights[won == outcome] = 1.0 / np.maximum(share[won == outcome], 1e-9)
    return weights, keep


def weighted_ece(y: np.ndarray, p: np.ndarray, w: np.ndarray, n_bins: int = 10) -> float:
    """ECE with weights: equal-mass bins of ``p`` (as ``expected_calibration_error``), each
    bin's weighted win rate against its weighted mean prediction, weighted by bin weight."""
    edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    bins = np.searchsorted(edges[1:-1], p)
    total = 0.0
    for b in np.unique(bins):
        m = bins == b
        gap = abs(np.average(y[m], weights=w[m]) - np.average(p[m], weights=w[m]))
        total += float(w[m].sum()) * gap
    return total / float(w.sum())


def _censoring_weighted(
    case: Case,
    deals: pd.DataFrame,
    closed: pd.DataFrame,
    cut: pd.Timestamp,
    newest: pd.DataFrame,
    y: np.ndarray,
    ours: np.ndarray,
    export: pd.Timestamp,
) -> dict[str, Any]:
    """ECE and win rate of the scored deals with the benchmark's censoring undone
    (``censoring_weights``), and the mean true probability of every deal created in the same
    window, open ones included (where the truth is known)."""
    w, keep = censoring_weights(closed, cut, newest, export)
    if keep.sum() < 100:
        return {"ece_weighted": None, "win_rate_weighted": None, "true_mean_window": None}
    true_mean = None
    if case.truth is not None:
        last = newest.loc[keep, "created_at"].max()
        window = deals[(deals["created_at"] >= cut) & (deals["created_at"] <= last)]
        truth = case.truth.set_index("deal_id")["true_probability"]
        true_mean = float(truth.reindex(window["deal_id"]).mean())
    return {
        "ece_weighted": weighted_ece(y[keep], ours[keep], w[keep]),
        "win_rate_weighted": float(np.average(y[keep], weights=w[keep])),
        "mean_p_weighted": float(np.average(ours[keep], weights=w[keep])),
        "true_mean_window": true_mean,
        "weighted_deals": int(keep.sum()),
    }


def _history(home: Path) -> Any:
    from features.history import load_history
    from salesml.warehouse import connect

    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        return load_history(con)
    finally:
        con.close()


def scoring_dates(newest: pd.DataFrame) -> pd.Series:
    """Each deal's scoring date: the first Monday at least a week after its creation, or the
    last Monday it was open, or its creation when it lived less than a week between Mondays."""
    created = newest["created_at"]
    closing = newest["closed_at"]
    first = created.dt.normalize() + pd.Timedelta(days=7)
    monday = first + pd.to_timedelta((7 - first.dt.day_of_week) % 7, unit="D")
    last_open = (closing - pd.Timedelta(microseconds=1)).dt.normalize()
    last_open -= pd.to_timedelta(last_open.dt.day_of_week, unit="D")
    when = monday.where(monday < closing, last_open)
    return when.where(when >= created, created)


def _observable(case: Case, history: Any, newest: pd.DataFrame) -> np.ndarray | None:
    """``observable_oracle`` of the scored deals, when the case has salesml/synth's latents."""
    if case.latent is None:
        return None
    when = scoring_dates(newest)
    acts = history.activities[["deal_id", "occurred_at"]].merge(
        pd.DataFrame({"deal_id": newest["deal_id"].to_numpy(), "when": when.to_numpy()}),
        on="deal_id",
    )
    logged = acts[acts["occurred_at"] <= acts["when"]].groupby("deal_id").size()
    counts = logged.reindex(newest["deal_id"]).fillna(0).to_numpy(dtype=float)
    age = (when - newest["created_at"]).dt.total_seconds().to_numpy() / 86400.0
    return observable_oracle(case.latent, newest["deal_id"].to_numpy(), age, counts)


def _score(history: Any, newest: pd.DataFrame) -> pd.DataFrame:
    """The champion's scores and top-3 drivers of ``newest``, each at its scoring date."""
    from features.build import build_snapshots
    from salesml.scoring import load_scorer

    scorer = load_scorer()
    when = scoring_dates(newest)
    dates = sorted(set(when))
    snaps = build_snapshots(history, dates)
    wanted = pd.DataFrame({"deal_id": newest["deal_id"].to_numpy(), "as_of": when.to_numpy()})
    rows = wanted.merge(snaps, on=["deal_id", "as_of"], how="left", validate="one_to_one")
    predicted = scorer.predict(rows, explain=True, top=3)
    predicted["deal_id"] = rows["deal_id"].to_numpy()
    return predicted


def _peer(history: Any, cut: pd.Timestamp, newest: pd.DataFrame) -> np.ndarray:
    """A default LightGBM on the deal-table columns of the deals closed by the cut."""
    import lightgbm as lgb

    from features.spec import excluded_attributes, flat_columns
    from training.data import truncate_history

    known = truncate_history(history, cut)
    columns: list[str] = [
        c for c in ("amount", "stage", "expected_close_date") if c in flat_columns(known)
    ]
    profile = ("product", "lead_source", "deal_type", "team", "region", "owner_id", "account_id")
    columns += [c for c in profile if history.deals[c].notna().any()]
    dropped = excluded_attributes(known)
    columns += [f"attr_{a}" for a in sorted(history.attributes) if a not in dropped]
    train = known.deals[known.deals["closed_at"].notna()]

    def frame(rows: pd.DataFrame) -> pd.DataFrame:
        out = pd.DataFrame(index=rows.index)
        for c in columns:
            values = rows[c]
            if c == "expected_close_date":
                out[c] = (values - rows["created_at"]).dt.total_seconds() / 86400
            elif pd.api.types.is_numeric_dtype(values):
                out[c] = values.astype(float)
            else:
                vocab = sorted(history.deals[c].dropna().astype(str).unique())
                out[c] = pd.Categorical(values.astype(object).where(values.notna()), vocab)
        return out

    model = lgb.LGBMClassifier(n_estimators=300, random_state=0, verbose=-1)
    model.fit(frame(train), (train["status"] == "won").to_numpy(dtype=float))
    return np.asarray(model.predict_proba(frame(newest)), dtype=float)[:, 1]


def _row(
    case: Case,
    trained: dict[str, Any],
    newest: pd.DataFrame,
    y: np.ndarray,
    ours: np.ndarray,
    peer: np.ndarray,
    scored: pd.DataFrame,
) -> dict[str, Any]:
    from sklearn.metrics import roc_auc_score

    from salesml.models.evaluation import (
        binary_metrics,
        ece_against_truth,
        ece_floor,
        expected_calibration_error,
    )

    mine, theirs = binary_metrics(y, ours), binary_metrics(y, peer)
    oracle = oracle_ece = ece_truth = peer_ece_truth = None
    if case.truth is not None:
        truth = newest[["deal_id"]].merge(case.truth, on="deal_id", how="left")
        true_p = truth["true_probability"].to_numpy(dtype=float)
        oracle = float(roc_auc_score(y, true_p))
        oracle_ece = expected_calibration_error(y, true_p)
        ece_truth, peer_ece_truth = ece_against_truth(true_p, ours), ece_against_truth(true_p, peer)
    noise = None
    if case.noise:
        names = {f"attr_{n}" for n in case.noise}
        tops = [json.loads(d) if isinstance(d, str) else [] for d in scored["drivers"]]
        noise = float(np.mean([any(d.get("feature") in names for d in top) for top in tops]))
    row = {
        "case": case.name,
        "scored": len(y),
        "served": trained.get("served", "?"),
        "auc": mine["auc"],
        "brier": mine["brier"],
        "ece": mine["ece"],
        "peer_auc": theirs["auc"],
        "peer_brier": theirs["brier"],
        "peer_ece": theirs["ece"],
        "oracle_auc": oracle,
        # The oracle on what the data shows at the scoring date (``observable_oracle``), where
        # the true probabilities include a latent the data only hints at; else None.
        "observable_auc": None,
        # ECE's sampling floor at this n (a perfectly calibrated model's median ECE), the
        # oracle's own ECE on these outcomes, and the ECE against the true probabilities.
        "ece_floor": ece_floor(ours),
        "oracle_ece": oracle_ece,
        "ece_truth": ece_truth,
        "peer_ece_truth": peer_ece_truth,
        "mean_p": float(np.mean(ours)),
        # the scored deals' mean true probability (their outcomes are drawn from it)
        "true_mean": None if oracle is None else float(np.mean(true_p)),
        "win_rate": float(np.mean(y)),
        "noise_top3": noise,
        # ECE taken apart, for ours, the peer and the oracle alike (``calibration_decomposition``)
        "decomposition": {
            "ours": calibration_decomposition(y, ours),
            "peer": calibration_decomposition(y, peer),
            **({} if oracle is None else {"oracle": calibration_decomposition(y, true_p)}),
        },
    }
    row["passes"] = _passes(row)
    return row


def calibration_decomposition(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Where a model's ECE comes from, on the same deals: calibration in the large (mean
    prediction minus win rate), the logistic recalibration ``logit P(won) = a + b logit p``
    fitted on these outcomes (``a`` 0 and ``b`` 1 when calibrated; ``b`` above 1: too timid,
    below: too bold), and the ECE left once the level alone is corrected (every prediction
    moved by one log-odds shift so that the mean prediction equals the win rate). An ECE that
    falls to about the floor when levelled is a miss in the large; one that does not is the
    slope's (or the shape's)."""
    from scipy.optimize import brentq
    from scipy.special import expit, logit
    from sklearn.linear_model import LogisticRegression

    from salesml.models.evaluation import expected_calibration_error

    z = np.asarray(logit(np.clip(p, 1e-6, 1 - 1e-6)), dtype=float)
    fitted = LogisticRegression(C=1e6).fit(z[:, None], y)
    shift = brentq(lambda d: float(np.mean(expit(z + d)) - np.mean(y)), -10.0, 10.0)
    return {
        "in_the_large": float(np.mean(p) - np.mean(y)),
        "intercept": float(fitted.intercept_[0]),
        "slope": float(fitted.coef_[0, 0]),
        "level_shift": float(shift),
        "ece_levelled": expected_calibration_error(y, expit(z + shift)),
    }


def _passes(r: dict[str, Any]) -> bool:
    ok = (
        r["auc"] >= r["peer_auc"] - AUC_MARGIN
        and r["brier"] <= r["peer_brier"] + BRIER_MARGIN
        and r["ece"] <= MAX_ECE
    )
    oracle = r["observable_auc"] if r.get("observable_auc") is not None else r["oracle_auc"]
    if oracle is not None:
        ok = ok and r["auc"] >= oracle - ORACLE_MARGIN
    if r["noise_top3"] is not None:
        ok = ok and r["noise_top3"] < MAX_NOISE
    return bool(ok)


def foreign_rows(
    seeds: tuple[int, ...] = FLAT_SEEDS, deals: int = DEALS, only: str | None = None
) -> list[dict[str, Any]]:
    """One row per case (see the module docstring); ``only`` keeps cases whose name has it."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="salesml-foreign-") as tmp:
        root = Path(tmp)
        for i, (name, make) in enumerate(cases(root / "exports", seeds, deals)):
            if only and only not in name:
                continue
            rows.append(run_case(make(), root / f"case-{i}"))
            print(markdown([rows[-1]], header=not rows[:-1]), flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], header: bool = True) -> str:
    def f(value: Any, digits: int = 3) -> str:
        return "—" if value is None else f"{value:.{digits}f}"

    lines = (
        [
            "| case | scored | served | AUC | peer AUC | oracle AUC | observable oracle AUC "
            "| Brier | peer Brier "
            "| ECE | peer ECE | ECE floor | oracle ECE | ECE vs truth | peer ECE vs truth "
            "| mean p | win rate | mean true p | noise in top 3 | drift calibration "
            "| oracle at T ECE | oracle at T, cohort-levelled ECE "
            "| ECE, censoring-weighted (deals) | mean p / win rate, weighted "
            "| mean true p, window | bar |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
            "---|---|---|---|---|",
        ]
        if header
        else []
    )
    for r in rows:
        noise = "—" if r["noise_top3"] is None else f"{r['noise_top3']:.1%}"
        lines.append(
            f"| {r['case']} | {r['scored']:,} | {r['served']} | {f(r['auc'])} | "
            f"{f(r['peer_auc'])} | {f(r['oracle_auc'])} | {f(r.get('observable_auc'))} | "
            f"{f(r['brier'], 4)} | "
            f"{f(r['peer_brier'], 4)} | {f(r['ece'])} | {f(r['peer_ece'])} | "
            f"{f(r['ece_floor'])} | {f(r['oracle_ece'])} | {f(r['ece_truth'])} | "
            f"{f(r['peer_ece_truth'])} | {f(r['mean_p'])} | {f(r['win_rate'])} | "
            f"{f(r.get('true_mean'))} | {noise} | {r.get('drift', '—')} | "
            f"{f(r.get('oracle_at_cut_ece'))} | {f(r.get('oracle_cohort_ece'))} | "
            f"{_weighted_cell(r)} | "
            f"{f(r.get('mean_p_weighted'))} / {f(r.get('win_rate_weighted'))} | "
            f"{f(r.get('true_mean_window'))} | {'pass' if r['passes'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def decomposition_markdown(rows: list[dict[str, Any]]) -> str:
    """Per case and model (ours, peer, oracle): ECE, mean prediction minus win rate, the
    logistic recalibration's intercept and slope, and the ECE left when levelled
    (``calibration_decomposition``)."""
    lines = [
        "| case | model | ECE | mean p − win rate | recalibration a | recalibration b "
        "| level shift | ECE levelled |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ece = {"ours": r["ece"], "peer": r["peer_ece"], "oracle": r.get("oracle_ece")}
        for name, d in r.get("decomposition", {}).items():
            lines.append(
                f"| {r['case']} | {name} | {ece[name]:.3f} | {d['in_the_large']:+.3f} | "
                f"{d['intercept']:+.2f} | {d['slope']:.2f} | {d['level_shift']:+.2f} | "
                f"{d['ece_levelled']:.3f} |"
            )
    return "\n".join(lines)


def _weighted_cell(r: dict[str, Any]) -> str:
    if r.get("ece_weighted") is None:
        return "—"
    return f"{r['ece_weighted']:.3f} ({r['weighted_deals']:,})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=DEALS)
    parser.add_argument("--seeds", default=",".join(map(str, FLAT_SEEDS)))
    parser.add_argument("--only", default=None, help="run only cases whose name contains this")
    args = parser.parse_args()
    seeds = tuple(int(s) for s in args.seeds.split(","))
    rows = foreign_rows(seeds, args.deals, args.only)
    print("\n" + markdown(rows))
    print("\n" + decomposition_markdown(rows))


if __name__ == "__main__":
    main()

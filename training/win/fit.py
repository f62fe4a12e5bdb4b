"""Fit, calibrate and evaluate the win-probability model (no MLflow here: see ``tracking``).

LightGBM learns on the train period with early stopping on the validation period; calibrators
(Platt, isotonic, beta, Venn-Abers) are compared on the validation period and the best one is
kept. If the calibrated model does not beat the base rate on validation, the data carries too
little signal: the bundle becomes the base rate, flagged ``little_signal`` (better an honest
constant than invented confidence). Everything is then scored on the untouched holdout,
against the baselines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from features.build import build_snapshots, weekly_as_of_dates
from features.history import History
from features.spec import (
    FEATURE_SPEC_VERSION,
    Feature,
    excluded_attributes,
    excluded_flat_columns,
    feature_spec,
    flat_columns,
)
from salesml.actions import fit_action_stats
from salesml.explain import contributions, fit_explainer, global_drivers, importance
from salesml.models.calibration import Calibrator, select_calibrator
from salesml.models.contract import FeatureContract
from salesml.models.evaluation import binary_metrics, reliability_curve
from salesml.models.win.bundle import WinBundle
from salesml.models.win.seen import SEEN_KEY, SeenInputs
from salesml.schemas import ATTRIBUTE_PREFIX
from salesml.scoring import OLDEST_CLOSE_KEY
from salesml.settings import Settings
from training.data import TemporalSplit, temporal_split
from training.win.baselines import fit_baselines
from training.win.drift import Cohorts, DriftCheck, deal_weights, drift_check, fit_candidate
from training.win.peer import PEER_NAME, PEER_TREES, fit_peer, peer_features
from training.win.screening import Fold, concept_screen, judged_log_loss

# Directions sales teams take as given: recent activity never lowers a deal's chance, and a
# longer silence never raises it. LightGBM enforces them, so no explanation ever says otherwise.
MONOTONE = {
    "activities_7d": 1,
    "activities_30d": 1,
    "activities_90d": 1,
    "days_since_last_activity": -1,
    "meetings_total": 1,
}
# Tree sizes the model may take, chosen on the validation period (``_fit_model``): trees that
# read interactions (a stage with its days in stage), or a nearly additive model, which reads
# weak main effects with less noise when there are no interactions worth their variance.
LEAVES = (15, 4)
# Validation log loss must improve on the base rate by this fraction to count as signal.
SIGNAL_MARGIN = 0.005
MODEL_NAME = "lightgbm"
# Rows of the holdout on which the global driver importance is measured (logged to MLflow).
IMPORTANCE_ROWS = 20_000


@dataclass
class WinTrainingResult:
    """Everything a training run produced, for logging, the model card and the CLI."""

    bundle: WinBundle
    split: TemporalSplit
    holdout_metrics: dict[str, float | None]
    baseline_metrics: dict[str, dict[str, float | None]]
    reliability: dict[str, pd.DataFrame]
    calibrator_table: pd.DataFrame
    params: dict[str, Any]
    little_signal: bool
    booster_holdout_metrics: dict[str, float | None]
    excluded: dict[str, str] = field(default_factory=dict)
    holdout_predictions: pd.DataFrame = field(default_factory=pd.DataFrame)
    # What is served: "lightgbm" (the model), "plain_lightgbm" (the peer won) or "base_rate".
    served: str = MODEL_NAME
    dropped: dict[str, str] = field(default_factory=dict)  # features the screen dropped, why
    flat: dict[str, str] = field(default_factory=dict)  # deals-table columns read, why
    excluded_flat: dict[str, str] = field(default_factory=dict)  # those not read, why
    refit: dict[str, Any] = field(default_factory=dict)  # rows, deals, to

    @property
    def beats_baselines(self) -> dict[str, bool]:
        """Per baseline: lower holdout log loss and Brier than it."""
        mine = self.holdout_metrics
        return {
            name: bool(
                (mine["log_loss"] or np.inf) < (m["log_loss"] or np.inf)
                and (mine["brier"] or np.inf) < (m["brier"] or np.inf)
            )
            for name, m in self.baseline_metrics.items()
        }


def lgb_params(n_rows: int, seed: int = 0) -> dict[str, Any]:
    """Conservative defaults that scale with the data (bigger leaves on bigger data)."""
    return {
        "objective": "binary",
        "learning_rate": 0.05,
        "num_leaves": 15,
        "min_data_in_leaf": int(max(50, n_rows // 200)),
        "feature_fraction": 0.8,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "lambda_l2": 10.0,
        "max_cat_to_onehot": 8,
        # Categorical splits are where noise hides (a 30-level field always has some level
        # that looks good by chance): each side of a split needs many rows per category,
        # category statistics are smoothed, and a split groups few categories.
        "min_data_per_group": int(max(100, n_rows // 100)),
        "cat_smooth": 50.0,
        "cat_l2": 20.0,
        "max_cat_threshold": 16,
        "seed": seed,
        "deterministic": True,
        "force_row_wise": True,
        "num_threads": Settings().threads,  # 0: every core
        "verbosity": -1,
    }


def train_win_model(
    history: History, seed: int = 0, snapshots: pd.DataFrame | None = None
) -> WinTrainingResult:
    """Train, screen, calibrate, compare with the plain peer, pick, refit and evaluate on
    ``history`` (already cut at the training date). ``snapshots``: the history's weekly
    snapshots when the caller already built them (the timing model reads the same ones)."""
    spec = feature_spec(history)
    if snapshots is None:
        snapshots = build_snapshots(history, weekly_as_of_dates(history))
    split = temporal_split(snapshots, history)
    params = lgb_params(len(split.train), seed)
    main, dropped, params = _fit_model(spec, split, params, seed)
    peer = _fit_peer(spec, split, seed, dropped)
    y_val = split.validation["label_won"].to_numpy(dtype=float)
    base_ll = _log_loss_constant(y_val, float(y_val.mean()))  # validation's own win rate
    chosen_ll = float(main.table[main.table["chosen"]].iloc[0]["log_loss"])
    little_signal = not chosen_ll < base_ll * (1 - SIGNAL_MARGIN)
    seen_rate = deal_rate(pd.concat([split.train, split.validation]))
    metadata: dict[str, Any] = {
        "feature_spec_version": FEATURE_SPEC_VERSION,
        "best_iteration": main.rounds,
        "little_signal": little_signal,
        "trained_to": f"{history.exported_at:%Y-%m-%d}",
        "data_window": split.window(),
        "dropped_features": dropped,
        "flat_columns": flat_columns(history),
        OLDEST_CLOSE_KEY: oldest_close_age(history),
    }
    full = main.bundle(seen_rate, metadata)
    candidates = {
        MODEL_NAME: full if not little_signal else full.constant(),
        PEER_NAME: peer.bundle(seen_rate, metadata),
    }
    y = split.holdout["label_won"].to_numpy(dtype=float)
    predicted = {n: _probabilities(b, split) for n, b in candidates.items()}
    scored = {n: binary_metrics(y, p) for n, p in predicted.items()}
    served = min(scored, key=lambda n: (_num(scored[n]["log_loss"]), _num(scored[n]["brier"])))
    chosen = main if served == MODEL_NAME else peer
    labelled = snapshots[snapshots["label_won"].notna() & (snapshots["as_of"] <= split.holdout_end)]
    extra = {"served": served if candidates[served].booster is not None else "base_rate"}
    cohorts = Cohorts.of(history.deals, snapshots, split.maturity_days, history.exported_at)
    bundle = _refit(chosen, candidates[served], split, labelled, spec, seed, extra, cohorts)
    # The early-stopped model's own holdout scores (already predicted unless it was replaced
    # by the base rate for little signal).
    booster_p = predicted[MODEL_NAME] if not little_signal else _probabilities(full, split)
    result = _evaluate(bundle, booster_p, split, spec, main, params, little_signal, history)
    result.served = str(extra["served"])
    result.dropped = dropped
    result.flat = flat_columns(history)
    result.excluded_flat = excluded_flat_columns(history)
    result.holdout_metrics = scored[served]
    result.holdout_predictions["win_probability"] = predicted[served]
    for name, metrics in scored.items():
        if name != served:
            result.baseline_metrics[name] = metrics
            result.reliability[name] = reliability_curve(y, predicted[name])
    result.reliability["model"] = reliability_curve(y, predicted[served])
    result.calibrator_table = chosen.table
    result.refit = {
        "rows": len(labelled),
        "deals": int(labelled["deal_id"].nunique()),
        "to": f"{split.holdout_end:%Y-%m-%d}",
    }
    return result


@dataclass
class Candidate:
    """One model fitted on the training period and calibrated on the validation period,
    with what its refit needs: how to fit it again on more rows."""

    name: str
    features: list[str]
    kinds: dict[str, str]
    vocab: dict[str, list[str]]
    booster: lgb.Booster
    calibrator: Calibrator
    table: pd.DataFrame
    rounds: int
    fit: Callable[[pd.DataFrame, FeatureContract], lgb.Booster]  # fixed settings, any rows
    val_scores: np.ndarray

    def bundle(self, base_rate: float, metadata: dict[str, Any]) -> WinBundle:
        meta = {**metadata, "calibrator": self.calibrator.name, "model": self.name}
        return WinBundle(
            self.features, self.kinds, self.vocab, self.calibrator, self.booster, base_rate, meta
        )


def _fit_model(
    spec: list[Feature], split: TemporalSplit, params: dict[str, Any], seed: int
) -> tuple[Candidate, dict[str, str], dict[str, Any]]:
    """The regularised LightGBM: fitted with early stopping on the validation period, screened
    there concept by concept (``training.win.screening``), refitted on what the screen keeps;
    with the chosen settings.

    The screen is cross-fitted: a fit that stopped early on half of the validation deals is
    judged on the other half, and the other way round (rounds chosen on the rows that judge
    them would flatter every feature, noise included). The tree size (``LEAVES``) is chosen on
    the same cross-fit: the lower log loss per deal on the judging halves."""
    concepts = {f.name: f.concept for f in spec}
    y_train = split.train["label_won"].to_numpy(dtype=float)
    deals = split.validation["deal_id"].unique()
    half = set(np.random.default_rng(seed).permutation(deals)[: len(deals) // 2])
    in_half = split.validation["deal_id"].isin(half).to_numpy()

    weights = deal_weights(split.train)
    # The training rows binned once per feature set: every candidate (tree size, judging
    # half) reads the same bins, so building them again would only repeat the same work.
    built: dict[tuple[str, ...], tuple[FeatureContract, lgb.Dataset]] = {}

    def early(
        features: list[str], validations: list[pd.DataFrame], settings: dict[str, Any]
    ) -> tuple[list[lgb.Booster], FeatureContract]:
        if tuple(features) not in built:
            contract = _contract(spec, features, split.train)
            matrix = contract.matrix(split.train)
            data = lgb.Dataset(matrix, y_train, weight=weights, free_raw_data=False)
            built[tuple(features)] = contract, data
        contract, train_set = built[tuple(features)]
        p = {**settings, "monotone_constraints": [MONOTONE.get(n, 0) for n in features]}
        return early_stopped(p, train_set, contract, validations), contract

    names = [f.name for f in spec]
    # One boosting run per tree size serves both judging halves and the whole validation
    # period: the trees do not depend on the rows that stop them, so each early stop is a
    # prefix of the same run (``early_stopped``), as if fitted alone.
    sets = [split.validation[in_half], split.validation[~in_half], split.validation]
    tried: dict[int, tuple[float, list[Fold], dict[str, Any], lgb.Booster]] = {}
    for leaves in LEAVES:
        settings = {**params, "num_leaves": leaves}
        boosters, contract = early(names, sets, settings)
        folds = []
        for booster, judge in ((boosters[0], ~in_half), (boosters[1], in_half)):
            rows = split.validation[judge]
            folds.append(
                Fold(
                    booster,
                    contract.model_matrix(rows),
                    rows["label_won"].to_numpy(dtype=float),
                    rows["deal_id"].to_numpy(dtype=object),
                )
            )
        tried[leaves] = (judged_log_loss(folds), folds, settings, boosters[2])
    _, folds, params, whole = tried[min(tried, key=lambda leaves: tried[leaves][0])]
    screened = screened_features(spec, contract)
    dropped = concept_screen(folds, names, concepts, seed, screened=screened)
    kept = [n for n in names if n not in dropped] or names
    if kept == names:  # the whole validation period's stop of the chosen run
        booster = whole
    else:
        stopped, contract = early(kept, [split.validation], params)
        booster = stopped[0]
    rounds = max(1, int(booster.best_iteration))
    fixed = {**params, "monotone_constraints": [MONOTONE.get(n, 0) for n in kept]}

    def fit(rows: pd.DataFrame, on: FeatureContract) -> lgb.Booster:
        y = rows["label_won"].to_numpy(dtype=float)
        data = lgb.Dataset(on.matrix(rows), y, weight=deal_weights(rows))
        return lgb.train(fixed, data, num_boost_round=rounds)

    return _calibrated(MODEL_NAME, contract, booster, rounds, fit, split), dropped, params


# Early stopping: at most MAX_ROUNDS trees, stopped when the validation log loss has not
# improved for STOPPING_ROUNDS rounds (as ``lgb.early_stopping(STOPPING_ROUNDS)``).
MAX_ROUNDS = 2000
STOPPING_ROUNDS = 50


def early_stopped(
    params: dict[str, Any],
    train_set: lgb.Dataset,
    contract: FeatureContract,
    validations: list[pd.DataFrame],
) -> list[lgb.Booster]:
    """One booster per validation frame, each stopped early on that frame alone.

    LightGBM's trees do not depend on the rows that only evaluate them, so one boosting run
    evaluated on every frame, cut at each frame's own early stop, gives the boosters that
    separate runs with ``lgb.early_stopping(STOPPING_ROUNDS)`` would (the same trees, the
    same ``best_iteration``), for the cost of the longest of them.
    """
    valid = [
        lgb.Dataset(contract.matrix(v), v["label_won"].to_numpy(dtype=float), reference=train_set)
        for v in validations
    ]
    stops = _EachStops(len(valid), STOPPING_ROUNDS)
    run = lgb.train(
        params, train_set, num_boost_round=MAX_ROUNDS, valid_sets=valid, callbacks=[stops]
    )
    return [_cut(run, rounds) for rounds in stops.rounds]


class _EachStops:
    """``lgb.early_stopping``'s rule applied to each validation set on its own; the run ends
    when every set has stopped (or at the last round). ``rounds[k]``: set k's best iteration
    (1-based), as ``Booster.best_iteration`` after a run stopped on set k alone."""

    order = 30  # where LightGBM runs its own early stopping among callbacks
    before_iteration = False

    def __init__(self, n_sets: int, stopping_rounds: int) -> None:
        self.stopping_rounds = stopping_rounds
        self.best_score = [np.inf] * n_sets
        self.best_iter = [0] * n_sets
        self.done = [False] * n_sets

    @property
    def rounds(self) -> list[int]:
        return [i + 1 for i in self.best_iter]

    def __call__(self, env: Any) -> None:
        results = env.evaluation_result_list
        if len(results) != len(self.done):
            raise ValueError(f"expected one metric per validation set, got {len(results)}")
        for k, result in enumerate(results):
            if self.done[k]:
                continue
            # lgb.early_stopping: the first round is the best so far; later ones only when
            # strictly lower; stopped once the best is ``stopping_rounds`` rounds old.
            if env.iteration == env.begin_iteration or result[2] < self.best_score[k]:
                self.best_score[k] = float(result[2])
                self.best_iter[k] = env.iteration
            last = env.iteration == env.end_iteration - 1
            if env.iteration - self.best_iter[k] >= self.stopping_rounds or last:
                self.done[k] = True
        if all(self.done):
            raise lgb.callback.EarlyStopException(env.iteration, [])


def _cut(run: lgb.Booster, rounds: int) -> lgb.Booster:
    """The first ``rounds`` trees of ``run`` (what ``lgb.train`` keeps after an early stop)."""
    booster = lgb.Booster(model_str=run.model_to_string(num_iteration=rounds))
    booster.best_iteration = rounds
    return booster


def oldest_close_age(history: History) -> float | None:
    """Days from creation to close of the longest-lived closed deal (None: none closed). An
    open deal older than that is at an age no outcome was ever observed at, and its score is
    flagged (``salesml.scoring.score_basis``)."""
    deals = history.deals[history.deals["closed_at"].notna()]
    if deals.empty:
        return None
    days = (deals["closed_at"] - deals["created_at"]).dt.total_seconds() / 86400.0
    return float(days.max())


def deal_rate(rows: pd.DataFrame) -> float:
    """The win rate of the deals among ``rows``, each deal once (``deal_weights``): a base
    rate of snapshots counts a deal open for a year 52 times, and long deals are more often
    won (Maven: 0.704 over snapshots against 0.660 over deals)."""
    y = rows["label_won"].to_numpy(dtype=float)
    return float(np.average(y, weights=deal_weights(rows)))


def one_row_per_deal(rows: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """One snapshot of each deal, drawn at random (seeded): what a plain model fitted on the
    deals table sees — each closed deal once, not once per week it stayed open."""
    shuffled = rows.sample(frac=1.0, random_state=seed)
    return shuffled.drop_duplicates("deal_id").sort_index()


def screened_features(spec: list[Feature], contract: FeatureContract) -> list[str]:
    """The features the validation screen may drop: custom attributes (nobody here knows what
    they mean) and categoricals with more levels than LightGBM one-hot encodes (where splits
    on noise hide). The fixed features are defined for what they mean and always kept."""
    limit = int(lgb_params(0)["max_cat_to_onehot"])
    return [
        f.name
        for f in spec
        if f.name.startswith(ATTRIBUTE_PREFIX)
        or (f.kind == "categorical" and len(contract.vocabularies.get(f.name, [])) > limit)
    ]


def _fit_peer(
    spec: list[Feature], split: TemporalSplit, seed: int, dropped: Mapping[str, str]
) -> Candidate:
    """The plain peer (``training.win.peer``) on the same training snapshots, without the
    columns the screen found to be noise (served, it must not be driven by them either)."""
    columns = [n for n in peer_features(spec) if n not in dropped] or peer_features(spec)
    contract = _contract(spec, columns, split.train)

    def fit(rows: pd.DataFrame, on: FeatureContract) -> lgb.Booster:
        once = one_row_per_deal(rows, seed)
        return fit_peer(on.matrix(once), once["label_won"].to_numpy(dtype=float), seed)

    booster = fit(split.train, contract)
    return _calibrated(PEER_NAME, contract, booster, PEER_TREES, fit, split)


def _contract(spec: list[Feature], features: list[str], rows: pd.DataFrame) -> FeatureContract:
    kinds = {f.name: f.kind for f in spec if f.name in features}
    chosen = [f for f in spec if f.name in features]
    return FeatureContract(features, kinds, _vocabularies(rows, chosen))


def _calibrated(
    name: str,
    contract: FeatureContract,
    booster: lgb.Booster,
    rounds: int,
    fit: Callable[[pd.DataFrame, FeatureContract], lgb.Booster],
    split: TemporalSplit,
) -> Candidate:
    y_val = split.validation["label_won"].to_numpy(dtype=float)
    scores = np.asarray(
        booster.predict(contract.matrix(split.validation), raw_score=True), dtype=float
    )
    calibrator, table = select_calibrator(scores, y_val)
    return Candidate(
        name,
        list(contract.features),
        dict(contract.kinds),
        dict(contract.vocabularies),
        booster,
        calibrator,
        table,
        rounds,
        fit,
        scores,
    )


def _refit(
    chosen: Candidate,
    served: WinBundle,
    split: TemporalSplit,
    labelled: pd.DataFrame,
    spec: list[Feature],
    seed: int,
    extra: dict[str, Any],
    cohorts: Cohorts,
) -> WinBundle:
    """The served model fitted again, with the chosen settings, on every matured snapshot up to
    the as-of (``labelled``: outcome known, at least the maturity before the export), so the
    newest deals count. Its calibrator (the kind chosen on validation) is refitted on
    out-of-sample scores in time order: the training-period fit's on the validation period and
    a train + validation fit's on the holdout period."""
    as_of = split.holdout_end + pd.Timedelta(days=split.maturity_days)
    rate = deal_rate(labelled)
    metadata = {**served.metadata, **extra, "refit_rows": len(labelled)}
    if served.booster is None:
        rate = _drift_rate(split, labelled, as_of, metadata, cohorts)
        bundle = WinBundle(
            served.features,
            served.kinds,
            served.vocabularies,
            served.calibrator,
            None,
            rate,
            metadata,
        )
    else:
        seen = pd.concat([split.train, split.validation])
        before = _contract(spec, chosen.features, seen)
        b2 = chosen.fit(seen, before)
        h_scores = np.asarray(b2.predict(before.matrix(split.holdout), raw_score=True), dtype=float)
        # Both periods: the newest alone reads fewer outcomes of its long (often won) deals.
        y_h = split.holdout["label_won"].to_numpy(float)
        scores = np.concatenate([chosen.val_scores, h_scores])
        y = np.concatenate([split.validation["label_won"].to_numpy(float), y_h])
        calibrator = select_calibrator(scores, y, candidates=(chosen.calibrator.name,))[0]
        contract = _contract(spec, chosen.features, labelled)
        booster = chosen.fit(labelled, contract)
        # What the served booster saw: a score reads an input it never saw as typical.
        metadata[SEEN_KEY] = SeenInputs.fit(labelled, contract).as_dict()
        served_score = _scorer(booster, contract)
        drift = _drift_calibrator(chosen, split, scores, as_of, metadata, cohorts, served_score)
        calibrator = drift or calibrator
        bundle = WinBundle(
            list(contract.features),
            dict(contract.kinds),
            dict(contract.vocabularies),
            calibrator,
            booster,
            rate,
            metadata,
        )
    kept = [f for f in spec if f.name in bundle.features]
    bundle.explainer = fit_explainer_stats(labelled, kept)
    if bundle.booster is not None and len(split.holdout):
        rows = min(len(split.holdout), IMPORTANCE_ROWS)
        sample = split.holdout.sample(rows, random_state=seed)
        c = contributions(bundle, sample)
        bundle.explainer["global"] = {
            "concepts": importance(global_drivers(bundle, sample, contribution=c)),
            "features": importance(global_drivers(bundle, sample, level="feature", contribution=c)),
            "rows": len(sample),
        }
    return bundle


def _scorer(
    booster: lgb.Booster, contract: FeatureContract
) -> Callable[[pd.DataFrame], np.ndarray]:
    """Raw scores of snapshot rows by ``booster`` (what the drift candidates calibrate)."""

    def score(rows: pd.DataFrame) -> np.ndarray:
        return np.asarray(booster.predict(contract.matrix(rows), raw_score=True), dtype=float)

    return score


def _drift_rate(
    split: TemporalSplit,
    labelled: pd.DataFrame,
    as_of: pd.Timestamp,
    metadata: dict[str, Any],
    cohorts: Cohorts,
) -> float:
    """The served base rate: each matured deal once, or the drift candidate the nested check
    keeps (``training.win.drift``); the check's figures go to ``metadata``."""
    seen = pd.concat([split.train, split.validation, split.holdout])
    check = drift_check(seen, None, cohorts, split.holdout_start, None)
    fitted = None
    if check.adopted is not None:
        weights = deal_weights(labelled)
        fitted = fit_candidate(check.adopted, labelled, None, None, weights, as_of, cohorts)
    metadata["calibration_drift"] = _drift_metadata(check, fitted is not None, as_of)
    return fitted if isinstance(fitted, float) else deal_rate(labelled)


def _drift_calibrator(
    chosen: Candidate,
    split: TemporalSplit,
    scores: np.ndarray,
    as_of: pd.Timestamp,
    metadata: dict[str, Any],
    cohorts: Cohorts,
    served_score: Callable[[pd.DataFrame], np.ndarray],
) -> Calibrator | None:
    """The drift candidate the nested check keeps, fitted on the validation and holdout
    periods' out-of-sample ``scores`` (None: the plain calibrator stays); the check judges the
    holdout with the training-period fit, the one that scored the validation period."""
    inner = _scorer(chosen.booster, FeatureContract(chosen.features, chosen.kinds, chosen.vocab))
    kind = chosen.calibrator.name
    rows = pd.concat([split.validation, split.holdout])
    out_of_sample = np.concatenate([chosen.val_scores, inner(split.holdout)])
    check = drift_check(rows, out_of_sample, cohorts, split.holdout_start, kind, score=inner)
    fitted = None
    if check.adopted is not None:
        both = pd.concat([split.validation, split.holdout])
        fitted = fit_candidate(
            check.adopted, both, scores, kind, None, as_of, cohorts, served_score
        )
    calibrator = None if fitted is None or isinstance(fitted, float) else fitted
    metadata["calibration_drift"] = _drift_metadata(check, calibrator is not None, as_of)
    return calibrator


def _drift_metadata(check: DriftCheck, served: bool, as_of: pd.Timestamp) -> dict[str, Any]:
    """The nested drift check's figures (``training.win.drift``), for the card and MLflow."""
    return {**check.as_dict(), "served": served, "at": f"{as_of:%Y-%m-%d}"}


def _probabilities(bundle: WinBundle, split: TemporalSplit) -> np.ndarray:
    return np.asarray(bundle.predict(split.holdout)["win_probability"].to_numpy(), dtype=float)


def _evaluate(
    bundle: WinBundle,
    booster_p: np.ndarray,
    split: TemporalSplit,
    spec: list[Feature],
    main: Candidate,
    params: dict[str, Any],
    little_signal: bool,
    history: History,
) -> WinTrainingResult:
    """The result with the baselines' holdout metrics (the candidates' are added by the
    caller)."""
    names = [f.name for f in spec]
    kinds: dict[str, str] = {f.name: f.kind for f in spec}
    y = split.holdout["label_won"].to_numpy(dtype=float)
    reliability: dict[str, pd.DataFrame] = {}
    baseline_metrics = {}
    for name, predict in fit_baselines(split.train, names, kinds).items():
        p = predict(split.holdout)
        baseline_metrics[name] = binary_metrics(y, p)
        reliability[name] = reliability_curve(y, p)
    holdout = split.holdout[["deal_id", "as_of", "label_won"]].copy()
    return WinTrainingResult(
        bundle=bundle,
        split=split,
        holdout_metrics={},
        baseline_metrics=baseline_metrics,
        reliability=reliability,
        calibrator_table=main.table,
        params=params,
        little_signal=little_signal,
        booster_holdout_metrics=binary_metrics(y, booster_p),
        excluded=excluded_attributes(history),
        holdout_predictions=holdout,
    )


def fit_explainer_stats(frame: pd.DataFrame, spec: list[Feature]) -> dict[str, Any]:
    """Won-deal statistics and action thresholds from labelled training snapshots."""
    meta = {
        f.name: {"concept": f.concept, "actionable": f.actionable, "description": f.description}
        for f in spec
    }
    kinds = {f.name: f.kind for f in spec}
    explainer = fit_explainer(frame, [f.name for f in spec], kinds, meta)
    explainer["actions"] = fit_action_stats(frame)
    return explainer


def _vocabularies(train: pd.DataFrame, spec: list[Feature]) -> dict[str, list[str]]:
    vocab = {}
    for f in spec:
        if f.kind == "categorical":
            values = train[f.name].dropna().astype(str)
            vocab[f.name] = sorted(values.unique().tolist())
    return vocab


def _num(value: float | None) -> float:
    return np.inf if value is None else float(value)


def _log_loss_constant(y: np.ndarray, rate: float) -> float:
    rate = float(np.clip(rate, 1e-6, 1 - 1e-6))
    return float(-np.mean(y * np.log(rate) + (1 - y) * np.log(1 - rate)))

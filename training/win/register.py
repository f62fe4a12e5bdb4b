"""Log a training run to MLflow, register the bundle, and decide champion or challenger.

A new model becomes ``champion`` only if it beats the current champion on the same holdout
(lower log loss; Brier breaks ties); otherwise it is registered as ``challenger``. Both
decisions are logged with their reason (run tags, model-version tags, the model card).
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import INFO_COLUMNS
from salesml import jsonio
from salesml.models.evaluation import binary_metrics, plot_reliability
from salesml.models.registry import (
    CHALLENGER,
    CHAMPION,
    WIN_EXPERIMENT,
    WIN_MODEL_NAME,
    NoModelError,
    artifact_root,
    configure,
    set_champion,
)
from salesml.models.timing.bundle import TimingBundle
from salesml.models.win.bundle import WinBundle
from salesml.scoring import Scorer, load_scorer
from training.win.fit import WinTrainingResult
from training.win.model_card import render_model_card


def bundle_model_code() -> Path:
    """The models-from-code file MLflow stores (found, not imported: importing runs it)."""
    spec = importlib.util.find_spec("salesml.scoring.pyfunc")
    assert spec is not None and spec.origin is not None
    return Path(spec.origin)


# The distributions the registered scorer imports when served (``salesml.scoring.pyfunc``),
# pinned to the installed versions. Without them MLflow infers them by importing the model
# again in a subprocess: about 10 s of every registration, for the same list each time.
# ``tests/training/test_registry.py`` checks it against that inference.
SERVING_DISTRIBUTIONS = (
    "cloudpickle",
    "duckdb",
    "lightgbm",
    "numpy",
    "orjson",
    "pandas",
    "psutil",
    "pydantic-settings",
    "rich",
    "scikit-learn",
    "scipy",
)


def pip_requirements() -> list[str]:
    """``SERVING_DISTRIBUTIONS`` pinned to this environment's versions (MLflow adds itself)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in SERVING_DISTRIBUTIONS]


@dataclass(frozen=True)
class Registration:
    """What the registry now says about the new model."""

    version: str
    alias: str
    reason: str
    run_id: str
    champion_metrics: dict[str, float | None] | None


def decide(
    result: WinTrainingResult, champion: WinBundle | None
) -> tuple[str, str, dict[str, float | None] | None]:
    """(alias, reason, champion's holdout metrics) for a new model."""
    if champion is None:
        return CHAMPION, "no champion yet", None
    holdout = result.split.holdout
    try:
        theirs = champion.predict(holdout)["win_probability"].to_numpy()
    except Exception as exc:  # a champion on another feature spec cannot be scored here
        return CHAMPION, f"the champion cannot score this holdout ({exc}); replaced", None
    y = holdout["label_won"].to_numpy(dtype=float)
    their = binary_metrics(y, theirs)
    mine = result.holdout_metrics
    ours = (_num(mine["log_loss"]), _num(mine["brier"]))
    them = (_num(their["log_loss"]), _num(their["brier"]))
    verdict = (
        f"log loss {ours[0]:.5f} vs champion {them[0]:.5f}, Brier {ours[1]:.5f} vs {them[1]:.5f} "
        "on the same holdout"
    )
    if ours < them:
        return CHAMPION, f"beats the champion: {verdict}", their
    return CHALLENGER, f"does not beat the champion: {verdict}", their


def _num(value: float | None) -> float:
    return np.inf if value is None else float(value)


def open_store() -> None:
    """Import MLflow and open the workspace store with the win experiment in it (the first use
    creates the store's tables: seconds of single-threaded work, the same for every model)."""
    import mlflow

    configure()
    if mlflow.get_experiment_by_name(WIN_EXPERIMENT) is None:
        mlflow.create_experiment(WIN_EXPERIMENT, artifact_location=artifact_root())


def open_store_in_background() -> Future[None]:
    """``open_store`` in a background thread, started before training so that it runs while
    LightGBM boosts; hand the future to ``log_and_register``, which waits for it."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="mlflow-store")
    future = pool.submit(open_store)
    pool.shutdown(wait=False)  # the thread ends after its one task
    return future


def log_and_register(
    result: WinTrainingResult,
    as_of: str | None,
    timing: TimingBundle | None = None,
    store: Future[None] | None = None,
) -> Registration:
    """Log params, metrics, plots and the model card; register the scorer (the win bundle with
    ``timing`` beside it); set the alias. ``store``: ``open_store_in_background``'s future,
    when the store was opened during training (its error, if any, is raised here)."""
    import mlflow

    if store is not None:
        store.result()
    open_store()  # nothing left to do when the background opening finished it
    client = configure()
    mlflow.set_experiment(WIN_EXPERIMENT)
    try:
        champion: WinBundle | None = load_scorer(CHAMPION).bundle
    except NoModelError:
        champion = None
    alias, reason, champion_metrics = decide(result, champion)
    lost = [name for name, beaten in result.beats_baselines.items() if not beaten]
    if lost:  # never silently: the flag travels with the version, the run and the card
        reason += f"; ⚠ does not beat its baseline(s) {', '.join(lost)} on the holdout"
    bundle = result.bundle
    with (
        mlflow.start_run(run_name=f"win-{bundle.metadata.get('trained_to')}") as run,
        tempfile.TemporaryDirectory() as tmp,
    ):
        work = Path(tmp)
        mlflow.log_params(_params(result, as_of))
        mlflow.log_metrics(_metrics(result))
        mlflow.set_tags(
            {
                "promotion": alias,
                "promotion_reason": reason,
                "little_signal": str(result.little_signal),
                "served": result.served,
                "loses_to_baseline": ",".join(lost),
            }
        )
        plot = plot_reliability(
            result.reliability, work / "reliability.png", "Holdout reliability: model vs baselines"
        )
        mlflow.log_artifact(str(plot))
        result.calibrator_table.to_csv(work / "calibrators.csv", index=False)
        mlflow.log_artifact(str(work / "calibrators.csv"))
        log_global_drivers(bundle, work)
        bundle_dir = Scorer(bundle, timing).save(work / "bundle")
        example = plain_dtypes(result.split.holdout[[*INFO, *bundle.features]].head(5))
        info = mlflow.pyfunc.log_model(
            name="win_model",
            python_model=str(bundle_model_code()),
            artifacts={"bundle": str(bundle_dir)},
            registered_model_name=WIN_MODEL_NAME,
            signature=_signature(bundle, example),
            input_example=example,
            pip_requirements=pip_requirements(),
        )
        version = str(info.registered_model_version)
        card = render_model_card(result, version, f"{alias} — {reason}")
        (work / "model_card.md").write_text(card, encoding="utf-8")
        mlflow.log_artifact(str(work / "model_card.md"))
        if alias == CHAMPION:
            set_champion("win", version, reason)  # remembers the champion it replaces
        else:
            client.set_registered_model_alias(WIN_MODEL_NAME, alias, version)
            client.set_model_version_tag(WIN_MODEL_NAME, version, "promotion_reason", reason)
        client.set_model_version_tag(
            WIN_MODEL_NAME, version, "holdout", jsonio.dumps(result.holdout_metrics)
        )
        client.set_model_version_tag(WIN_MODEL_NAME, version, "served", result.served)
        if lost:
            client.set_model_version_tag(
                WIN_MODEL_NAME, version, "loses_to_baseline", ",".join(lost)
            )
        client.update_model_version(WIN_MODEL_NAME, version, description=card)
        return Registration(version, alias, reason, run.info.run_id, champion_metrics)


GLOBAL_DRIVERS = "global_drivers.json"
# Not features, but the owner, team and stage let actions use the rep's and stage's thresholds;
# optional in the pyfunc's input schema.
INFO = tuple(c for c in INFO_COLUMNS if c != "account_id")


def _signature(bundle: WinBundle, example: pd.DataFrame) -> Any:
    """Input schema from the example; params ``explain`` and ``top`` so the API can ask for
    drivers and actions through the pyfunc."""
    from mlflow.models import infer_signature
    from mlflow.types.schema import ColSpec, Schema

    params = {"explain": False, "top": 5}
    signature = infer_signature(example, bundle.predict(example), params=params)
    inputs: list[Any] = [
        ColSpec(c.type, c.name, required=c.name not in INFO) for c in signature.inputs.inputs
    ]
    signature.inputs = Schema(inputs)
    return signature


def log_global_drivers(bundle: WinBundle, work: Path) -> None:
    """The global driver importance (holdout, probability points) as an artifact and metrics,
    so two runs can be compared (``compare_last_runs``)."""
    import mlflow

    doc = bundle.explainer.get("global")
    if not doc:
        return
    path = work / GLOBAL_DRIVERS
    path.write_text(jsonio.dumps(doc, indent=2), encoding="utf-8")
    mlflow.log_artifact(str(path))
    ranked = sorted(doc["concepts"].items(), key=lambda kv: -kv[1])
    mlflow.log_params({f"driver_rank_{i}": name for i, (name, _) in enumerate(ranked[:5], 1)})
    mlflow.log_metrics(
        {f"driver_points_{_metric_name(name)}": float(v) for name, v in doc["concepts"].items()}
    )


def _metric_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in name.lower())


def compare_last_runs(level: str = "concepts") -> pd.DataFrame:
    """How the global drivers changed between the last two training runs (newest first).

    Reads ``global_drivers.json`` of the two latest runs of the win experiment that logged it;
    returns ``salesml.explain.compare_importance`` of (older, newer).
    """
    import mlflow

    from salesml.explain import compare_importance

    client = configure()
    experiment = mlflow.get_experiment_by_name(WIN_EXPERIMENT)
    if experiment is None:
        raise NoModelError("no training runs yet; train one first: salesml train")
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"], max_results=50
    )
    docs: list[dict[str, Any]] = []
    for run in runs:
        names = {a.path for a in client.list_artifacts(run.info.run_id)}
        if GLOBAL_DRIVERS in names:
            local = mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path=GLOBAL_DRIVERS
            )
            docs.append(json.loads(Path(local).read_text(encoding="utf-8")))
        if len(docs) == 2:
            break
    if len(docs) < 2:
        raise NoModelError("fewer than two training runs logged global drivers; train again")
    return compare_importance(docs[1][level], docs[0][level])


def plain_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Text for categoricals, float64 for numbers: what MLflow's signature (and a JSON client)
    can express — it has no categorical type, and integers cannot be missing."""
    return frame.astype(
        {
            c: "object"
            if isinstance(frame[c].dtype, pd.CategoricalDtype)
            or not pd.api.types.is_numeric_dtype(frame[c])
            else "float64"
            for c in frame.columns
        }
    )


def _params(result: WinTrainingResult, as_of: str | None) -> dict[str, Any]:
    window = result.split.window()
    meta = result.bundle.metadata
    return {
        **{f"lgb_{k}": v for k, v in result.params.items()},
        "best_iteration": meta.get("best_iteration"),
        "calibrator": meta.get("calibrator"),
        "feature_spec_version": meta.get("feature_spec_version"),
        "as_of": as_of or "latest",
        "trained_to": meta.get("trained_to"),
        "window_train": window["train"],
        "window_validation": window["validation"],
        "window_holdout": window["holdout"],
        "maturity_days": window["maturity_days"],
        "n_features": len(result.bundle.features),
        "served": result.served,
        "dropped_features": len(result.dropped),
        "flat_columns": ",".join(result.flat) or "none",
        "refit_rows": result.refit.get("rows"),
        "rows_train": len(result.split.train),
        "rows_validation": len(result.split.validation),
        "rows_holdout": len(result.split.holdout),
    }


def _metrics(result: WinTrainingResult) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in result.holdout_metrics.items():
        if value is not None:
            out[f"holdout_{key}"] = float(value)
    for name, metrics in result.baseline_metrics.items():
        for key, value in metrics.items():
            if value is not None:
                out[f"baseline_{name}_{key}"] = float(value)
    return out

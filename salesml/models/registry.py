"""Where MLflow lives for a workspace, and loading registered bundles (shared by training and
serving).

The default store is the workspace's (``$SALESML_HOME/mlflow.db``, artifacts in
``$SALESML_HOME/mlartifacts``), overridden by MLflow's own ``MLFLOW_TRACKING_URI``. The
registry holds the win model under ``WIN_MODEL_NAME`` with aliases ``champion`` and
``challenger``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salesml.errors import SalesmlError
from salesml.models.evaluation import baselines_not_beaten
from salesml.models.revenue.bundle import ForecastBundle
from salesml.settings import Settings

WIN_MODEL_NAME = "salesml-win"
WIN_EXPERIMENT = "salesml-win"
FORECAST_MODEL_NAME = "salesml-forecast"
FORECAST_EXPERIMENT = "salesml-forecast"
CHAMPION, CHALLENGER = "champion", "challenger"


class NoModelError(SalesmlError):
    """No registered model to score with."""


ARTIFACTS_DIR = "mlartifacts"  # beside a local SQLite store


def tracking_uri() -> str:
    """MLflow's own variable if set, else a SQLite store in the workspace
    (``$SALESML_HOME/mlflow.db``): copy the workspace and its registry comes along."""
    settings = Settings()
    if settings.mlflow_tracking_uri:
        return settings.mlflow_tracking_uri
    root = settings.home.resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_root() -> str | None:
    """Where new experiments keep their artifacts: beside a local SQLite store (its folder's
    ``mlartifacts``), so the store and its artifacts travel together; ``None`` (the tracking
    server's own default) for any other store."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return str((database.parent / ARTIFACTS_DIR).resolve())


def configure() -> Any:
    """Point MLflow at the workspace store; returns an ``MlflowClient``."""
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def registered_artifact(name: str, alias: str, artifact: str) -> tuple[Path, str]:
    """The local copy of artifact folder ``artifact`` of ``name@alias``, and its version."""
    import mlflow

    client = configure()
    version = registered_version(name, alias, client)
    moved = _in_this_workspace(client, name, version)
    local = moved or mlflow.artifacts.download_artifacts(f"models:/{name}/{version}")
    return Path(local) / "artifacts" / artifact, version


def _in_this_workspace(client: Any, name: str, version: str) -> Path | None:
    """The model's artifact folder under this store's own ``mlartifacts`` when the store was
    copied from elsewhere (MLflow records absolute paths: without this a copied workspace
    would silently read, or fail to find, the original folder's artifacts)."""
    root = artifact_root()
    if root is None:
        return None
    try:
        source = str(client.get_model_version(name, version).source)
        location = (
            str(client.get_logged_model(source.removeprefix("models:/")).artifact_location)
            if source.startswith("models:/")
            else source
        )
    except Exception:  # an older store layout: let MLflow resolve it
        return None
    marker = f"/{ARTIFACTS_DIR}/"
    if marker not in location:
        return None
    candidate = Path(root) / location.split(marker, 1)[1]
    return candidate if candidate.is_dir() else None


def registered_version(name: str, alias: str, client: Any = None) -> str:
    """The version ``name@alias`` points at now (``NoModelError`` when there is none)."""
    from mlflow.exceptions import MlflowException

    client = client or configure()
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        raise NoModelError(
            f"no {name}@{alias} in the registry at {tracking_uri()}; train one first: salesml "
            "train (a win model needs at least 200 closed deals, both won and lost: train "
            "says when the history is too small)"
        ) from exc


@dataclass(frozen=True)
class LoadedForecast:
    """A registered revenue-forecast bundle and where it came from."""

    bundle: ForecastBundle
    version: str
    alias: str


def load_forecast_bundle(alias: str = CHAMPION) -> LoadedForecast:
    """Load the bundle behind ``salesml-forecast@alias`` from the registry."""
    folder, version = registered_artifact(FORECAST_MODEL_NAME, alias, "forecast")
    return LoadedForecast(ForecastBundle.load(folder), version, alias)


MODEL_NAMES = {"win": WIN_MODEL_NAME, "forecast": FORECAST_MODEL_NAME}
CHAMPION_HISTORY_TAG = "champion_history"  # on the registered model: earlier champions, JSON


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as ``salesml models list`` shows it."""

    model: str
    version: str
    aliases: tuple[str, ...]
    created_at: str | None
    promotion_reason: str | None
    run_id: str | None
    # The baselines the version does not beat on its holdout (win model; None: not known)
    loses_to: tuple[str, ...] | None = None


def _loses_to(client: Any, run_id: str | None) -> tuple[str, ...] | None:
    """The baselines the training run's model does not beat (``baselines_not_beaten``)."""
    if not run_id:
        return None
    try:
        metrics = client.get_run(run_id).data.metrics
    except Exception:  # a run deleted from the store: unknown, not "beats everything"
        return None
    lost = baselines_not_beaten(metrics)
    return None if lost is None else tuple(lost)


def model_versions(model: str) -> list[VersionInfo]:
    """Every registered version of ``model`` ("win" or "forecast"), newest first."""
    from datetime import UTC, datetime

    name = _model_name(model)
    client = configure()
    try:
        registered = client.get_registered_model(name)
    except Exception:  # no such registered model yet
        return []
    aliases: dict[str, list[str]] = {}
    for alias, version in (registered.aliases or {}).items():
        aliases.setdefault(str(version), []).append(str(alias))
    out = []
    for v in client.search_model_versions(f"name='{name}'"):
        created = (
            datetime.fromtimestamp(v.creation_timestamp / 1000, UTC).isoformat(timespec="seconds")
            if v.creation_timestamp
            else None
        )
        out.append(
            VersionInfo(
                model=model,
                version=str(v.version),
                aliases=tuple(sorted(aliases.get(str(v.version), []))),
                created_at=created,
                promotion_reason=(v.tags or {}).get("promotion_reason"),
                run_id=v.run_id,
                loses_to=_loses_to(client, v.run_id) if model == "win" else None,
            )
        )
    return sorted(out, key=lambda i: int(i.version), reverse=True)


def set_champion(model: str, version: str, reason: str) -> str | None:
    """Point ``model@champion`` at ``version`` and remember the champion it replaces (for
    ``rollback_champion``); returns that previous champion's version, if any."""
    name = _model_name(model)
    client = configure()
    _require_version(client, name, version)
    try:
        previous: str | None = str(client.get_model_version_by_alias(name, CHAMPION).version)
    except Exception:
        previous = None
    if previous == version:
        return previous
    if previous is not None:
        history = [*_champion_history(client, name), previous]
        client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history[-50:]))
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(name, version, "promotion_reason", reason)
    return previous


def rollback_champion(model: str) -> tuple[str, str]:
    """Move ``model@champion`` back to the champion before it; returns (from, to)."""
    name = _model_name(model)
    client = configure()
    current = registered_version(name, CHAMPION)
    history = [v for v in _champion_history(client, name) if v != current]
    if not history:
        raise NoModelError(
            f"{name} has no earlier champion to roll back to; promote a version instead: "
            "salesml models promote VERSION"
        )
    target = history[-1]
    _require_version(client, name, target)
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_registered_model_tag(name, CHAMPION_HISTORY_TAG, json.dumps(history[:-1]))
    client.set_model_version_tag(name, target, "promotion_reason", f"rollback from {current}")
    return current, target


def _model_name(model: str) -> str:
    if model not in MODEL_NAMES:
        raise NoModelError(f"unknown model {model!r}; use one of {', '.join(MODEL_NAMES)}")
    return MODEL_NAMES[model]


def _champion_history(client: Any, name: str) -> list[str]:
    tags = client.get_registered_model(name).tags or {}
    try:
        return [str(v) for v in json.loads(tags.get(CHAMPION_HISTORY_TAG, "[]"))]
    except ValueError:
        return []


def _require_version(client: Any, name: str, version: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise NoModelError(
            f"{name} has no version {version!r}; see the versions with: salesml models list"
        ) from None

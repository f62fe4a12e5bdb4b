"""Where MLflow lives for a workspace, and loading registered bundles (shared by training and
serving).

The default store is ``./mlruns`` (a SQLite file plus an artifact folder), overridden by
MLflow's own ``MLFLOW_TRACKING_URI``. The registry holds the win model under
``WIN_MODEL_NAME`` with aliases ``champion`` and ``challenger``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from salesml.errors import SalesmlError
from salesml.models.revenue.bundle import ForecastBundle
from salesml.settings import Settings

WIN_MODEL_NAME = "salesml-win"
WIN_EXPERIMENT = "salesml-win"
FORECAST_MODEL_NAME = "salesml-forecast"
FORECAST_EXPERIMENT = "salesml-forecast"
CHAMPION, CHALLENGER = "champion", "challenger"


class NoModelError(SalesmlError):
    """No registered model to score with."""


def tracking_uri() -> str:
    """MLflow's own variable if set, else a SQLite store in ./mlruns."""
    uri = Settings().mlflow_tracking_uri
    if uri:
        return uri
    root = Path("mlruns").resolve()
    root.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{root / 'mlflow.db'}"


def artifact_root() -> str:
    """Artifact location for new experiments in the default store."""
    return str(Path("mlruns", "artifacts").resolve())


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

    version = registered_version(name, alias)
    local = mlflow.artifacts.download_artifacts(f"models:/{name}/{version}")
    return Path(local) / "artifacts" / artifact, version


def registered_version(name: str, alias: str) -> str:
    """The version ``name@alias`` points at now (``NoModelError`` when there is none)."""
    from mlflow.exceptions import MlflowException

    client = configure()
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        raise NoModelError(
            f"no {name}@{alias} in the registry at {tracking_uri()}; train one first: salesml train"
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

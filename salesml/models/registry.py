"""Where MLflow lives for a workspace, and loading registered bundles (shared by training and
serving).

The default store is the workspace's (``$SALESML_HOME/mlflow.db``, artifacts in
``$SALESML_HOME/mlartifacts``), overridden by MLflow's own ``MLFLOW_TRACKING_URI``. The
registry holds the win model under ``WIN_MODEL_NAME`` with aliases ``champion`` and
``challenger``.
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

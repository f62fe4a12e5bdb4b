"""``GET /v1/models`` flags a registered win model that loses to one of its baselines on the
holdout (the metrics its training run logged in MLflow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient
from typer.testing import CliRunner

from salesml.cli import app
from salesml.models.registry import WIN_MODEL_NAME, configure
from serving.api.app import create_app
from serving.keys import KeyStore
from tests.serving.conftest import make_app_settings


def _register(client: MlflowClient, metrics: dict[str, float]) -> str:
    """A version of the win model whose training run logged ``metrics`` (through the client:
    no process-wide MLflow state)."""
    run = client.create_run("0")
    for name, value in metrics.items():
        client.log_metric(run.info.run_id, name, value)
    client.set_terminated(run.info.run_id)
    version = client.create_model_version(WIN_MODEL_NAME, "file:///nowhere", run.info.run_id)
    return str(version.version)


def test_a_model_losing_to_a_baseline_is_flagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("SALESML_HOME", str(tmp_path))
    client = configure()  # the workspace's store, as the server finds it
    client.create_registered_model(WIN_MODEL_NAME)
    baselines = {"baseline_base_rate_log_loss": 0.69, "baseline_base_rate_brier": 0.25}
    losing = _register(
        client,
        {
            "holdout_log_loss": 0.60,
            "holdout_brier": 0.21,
            "baseline_stage_probability_log_loss": 0.55,
            "baseline_stage_probability_brier": 0.19,
            **baselines,
        },
    )
    winning = _register(client, {"holdout_log_loss": 0.50, "holdout_brier": 0.17, **baselines})
    _, key = KeyStore.for_home(tmp_path).add("reader", ["scores:read"])
    with TestClient(create_app(make_app_settings(tmp_path))) as api:
        response = api.get("/v1/models", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    versions = {v["version"]: v for v in response.json()["versions"]}
    assert versions[losing]["loses_to_baseline"] is True
    assert versions[losing]["baseline"] == "stage_probability"
    assert versions[losing]["baselines"]["base_rate"] == {"log_loss": 0.69, "brier": 0.25}
    assert versions[winning]["loses_to_baseline"] is False
    assert versions[winning]["baseline"] is None
    # salesml models list says the same, in its JSON and its table
    listed = CliRunner().invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    loses = {v["version"]: v["loses_to"] for v in json.loads(listed.stdout)}
    assert loses == {losing: ["stage_probability"], winning: []}
    from salesml import cli

    monkeypatch.setattr(cli.console, "_width", 200)
    table = CliRunner().invoke(app, ["models", "list"])
    assert "loses to stage_probability" in table.stdout
    assert "beats every baseline" in table.stdout

"""``salesml models`` and ``salesml runs``: the registry and the score runs as a user manages
them (on a private copy of the session's registry)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app
from tests.serving.conftest import Workspace


@pytest.fixture
def private_registry(workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    database = Path(workspace.tracking_uri.removeprefix("sqlite:///"))
    copy = tmp_path / "mlflow.db"
    shutil.copy(database, copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy}")
    monkeypatch.setenv("SALESML_HOME", str(workspace.copy_home(tmp_path / "home")))
    return copy


def _json(args: list[str]) -> object:
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_promote_then_rollback_moves_the_champion_back(private_registry: Path) -> None:
    listed = _json(["models", "list"])
    assert isinstance(listed, list)
    win = {v["version"]: v["aliases"] for v in listed if v["model"] == "win"}
    assert win == {"2": ["challenger"], "1": ["champion"]}
    promoted = _json(["models", "promote", "2"])
    assert promoted == {"model": "win", "champion": "2", "previous": "1"}
    listed = _json(["models", "list"])
    assert isinstance(listed, list)
    assert {v["version"]: v["aliases"] for v in listed if v["model"] == "win"}["2"] == [
        "challenger",
        "champion",
    ]
    rolled = _json(["models", "rollback"])
    assert rolled == {"model": "win", "champion": "1", "previous": "2"}
    again = CliRunner().invoke(app, ["models", "rollback"])
    assert again.exit_code == 1 and "no earlier champion" in again.stderr


def test_promoting_a_version_that_does_not_exist_says_how_to_find_one(
    private_registry: Path,
) -> None:
    result = CliRunner().invoke(app, ["models", "promote", "99"])
    assert result.exit_code == 1
    assert "no version '99'" in result.stderr and "salesml models list" in result.stderr


def test_runs_list_marks_the_run_the_api_serves(private_registry: Path) -> None:
    runs = _json(["runs", "list"])
    assert isinstance(runs, list)
    assert [(r["run_id"], r["latest"]) for r in runs] == [("r1", True)]


def test_a_copied_workspace_reads_its_own_registry_artifacts(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow stores absolute artifact paths; a copy must not read the original's folder."""
    from salesml.models.registry import WIN_MODEL_NAME, registered_artifact
    from salesml.scoring import load_scorer

    source = Path(workspace.tracking_uri.removeprefix("sqlite:///")).parent
    copy = tmp_path / "moved"
    copy.mkdir()
    shutil.copy(source / "mlflow.db", copy / "mlflow.db")
    shutil.copytree(source / "mlartifacts", copy / "mlartifacts")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{copy / 'mlflow.db'}")
    folder, version = registered_artifact(WIN_MODEL_NAME, "champion", "bundle")
    assert folder.is_relative_to(copy) and folder.is_dir()
    assert load_scorer().version == version

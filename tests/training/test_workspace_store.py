"""The registry store and its artifacts live in the workspace, not wherever a command runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesml.models.registry import artifact_root, tracking_uri


def test_default_store_and_artifacts_are_under_salesml_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "workspace"
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("SALESML_HOME", str(home))
    assert tracking_uri() == f"sqlite:///{home.resolve() / 'mlflow.db'}"
    assert artifact_root() == str(home.resolve() / "mlartifacts")
    assert not (elsewhere / "mlruns").exists()


def test_artifacts_sit_beside_a_sqlite_store_and_a_server_keeps_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}")
    assert artifact_root() == str((tmp_path / "store" / "mlartifacts").resolve())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert artifact_root() is None

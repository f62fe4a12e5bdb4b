"""LATEST only moves forward in as-of, and only once every output of a score is written."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from salesml.cli import app
from serving.batch import run_batch
from serving.runs import RunStore
from tests.serving.conftest import Workspace


def test_a_backfill_does_not_move_latest_back(workspace: Workspace, tmp_path: Path) -> None:
    store = RunStore(workspace.copy_home(tmp_path / "home"))
    history, model = workspace.history, workspace.model
    assert store.latest_id() == "r1"
    earlier = history.exported_at - pd.Timedelta(days=30)
    backfill = run_batch(history, model, earlier, store, run_id="backfill")
    assert store.info("backfill") is not None  # written beside the others…
    assert store.latest_id() == "r1"  # …but the API keeps serving the newer run
    assert not store.advance_latest(backfill.run.run_id)
    rerun = run_batch(history, model, history.exported_at, store, run_id="r3")
    assert store.latest_id() == rerun.run.run_id  # same as-of: the newer run wins
    store.set_latest("backfill")  # a deliberate rollback still can
    assert store.latest_id() == "backfill"


def test_a_score_whose_export_fails_does_not_publish_its_run(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = workspace.copy_home(tmp_path / "home")
    monkeypatch.setenv("SALESML_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", workspace.tracking_uri)
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be", encoding="utf-8")
    result = CliRunner().invoke(
        app, ["score", "--all", "--run-id", "r9", "--out", str(blocked / "scores.csv")]
    )
    assert result.exit_code != 0
    store = RunStore(home)
    assert store.latest_id() == "r1"  # the API never served the half-delivered run

"""One small workspace for the report tests: 3000 synthetic deals, a win model with its timing
model (registered, as ``salesml train --models win,timing`` does), a registered monthly revenue
forecast (fewer backtest origins) and two score runs four weeks apart."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.history import History
from salesml.models.registry import LoadedForecast, load_forecast_bundle
from salesml.scoring import Scorer, load_scorer
from serving.batch import run_batch
from serving.runs import RunStore
from tests.helpers.history import synthetic_workspace

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@dataclass(frozen=True)
class ReportWorkspace:
    root: Path
    home: Path
    history: History
    win: Scorer
    forecast: LoadedForecast
    store: RunStore
    teams: list[str]

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse.duckdb"


@pytest.fixture(scope="session")
def report_workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportWorkspace]:
    from typer.testing import CliRunner

    from salesml.cli import app
    from training.revenue import fit as tf
    from training.revenue.register import log_forecast

    synthetic = synthetic_workspace(
        tmp_path_factory, deals=3000, seed=5, end_date=date(2026, 3, 31)
    )
    root = tmp_path_factory.mktemp("report")
    home = synthetic.copy_home(root / "home")
    history = synthetic.history
    saved = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "SALESML_HOME")}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    os.environ["SALESML_HOME"] = str(home)
    cwd = Path.cwd()
    os.chdir(root)  # the default artifact root is ./mlruns
    try:
        trained = CliRunner().invoke(app, ["train", "--models", "win,timing", "--json"])
        assert trained.exit_code == 0, trained.output
        win = load_scorer("champion")
        saved_origins = dict(tf.MAX_ORIGINS)
        tf.MAX_ORIGINS["month"] = 4  # fewer backtest origins: a test budget
        try:
            fc = tf.train_forecast(history, freqs=("month",))
        finally:
            tf.MAX_ORIGINS.update(saved_origins)
        log_forecast(fc, None)  # registered as salesml train does, for the CLI
        forecast = load_forecast_bundle("champion")
        store = RunStore(home)
        earlier = pd.Timestamp(history.exported_at.normalize() - pd.Timedelta(days=28))
        run_batch(history, win, earlier, store, run_id="r0")
        run_batch(history, win, history.exported_at, store, run_id="r1")
        teams = sorted(history.deals["team"].dropna().astype(str).unique())
        yield ReportWorkspace(root, home, history, win, forecast, store, teams)
    finally:
        os.chdir(cwd)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(autouse=True)
def _report_environment(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point MLflow and salesml at the report workspace for each test that uses it (another
    package's session workspace may have moved the variables since it was built)."""
    if "report_workspace" in request.fixturenames:
        ws: ReportWorkspace = request.getfixturevalue("report_workspace")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{ws.root / 'mlflow.db'}")
        monkeypatch.setenv("SALESML_HOME", str(ws.home))

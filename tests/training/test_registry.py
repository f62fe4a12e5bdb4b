"""Champion / challenger promotion, the MLflow round trip and the train → score CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.build import build_features
from features.history import History
from salesml.cli import app
from tests.helpers.history import SyntheticWorkspace, synthetic_workspace
from training.win.fit import WinTrainingResult, train_win_model
from training.win.register import decide, plain_dtypes


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> SyntheticWorkspace:
    return synthetic_workspace(tmp_path_factory, deals=3000, seed=5, end_date=date(2026, 3, 31))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, synthetic: SyntheticWorkspace) -> Path:
    """A folder with a SALESML_HOME of its own (``home``) that the CLI trains and scores in."""
    root = tmp_path_factory.mktemp("registry")
    synthetic.copy_home(root / "home")
    return root


@pytest.fixture(scope="module")
def history(synthetic: SyntheticWorkspace) -> History:
    return synthetic.history


@pytest.fixture(scope="module")
def result(history: History) -> WinTrainingResult:
    return train_win_model(history)


def test_first_model_becomes_champion(result: WinTrainingResult) -> None:
    alias, reason, _ = decide(result, None)
    assert (alias, reason) == ("champion", "no champion yet")


def test_a_model_that_beats_the_champion_replaces_it(result: WinTrainingResult) -> None:
    constant = replace(result.bundle, booster=None)  # predicts the base rate
    alias, reason, theirs = decide(result, constant)
    assert alias == "champion"
    assert reason.startswith("beats the champion")
    assert theirs is not None


def test_a_model_no_better_than_the_champion_stays_challenger(result: WinTrainingResult) -> None:
    alias, reason, _ = decide(result, result.bundle)
    assert alias == "challenger"
    assert reason.startswith("does not beat the champion")


def test_train_registers_and_score_uses_the_champion(
    workspace: Path, history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESML_HOME", str(workspace / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{workspace / 'mlflow.db'}")
    monkeypatch.chdir(workspace)
    runner = CliRunner()
    first = runner.invoke(app, ["train", "--models", "win", "--json"])
    assert first.exit_code == 0, first.output
    win = json.loads(first.stdout)["win_model"]
    assert win["alias"] == "champion"
    assert set(win["holdout"]) == {"auc", "pr_auc", "brier", "log_loss", "ece"}
    assert set(win["baselines"]) >= {"base_rate", "rep_win_rate", "logistic_regression"}
    second = runner.invoke(app, ["train", "--models", "win", "--json"])
    assert second.exit_code == 0, second.output
    again = json.loads(second.stdout)["win_model"]
    assert again["alias"] == "challenger"  # identical data and seed: not better
    assert int(again["version"]) == int(win["version"]) + 1

    out = workspace / "scores.csv"
    scored = runner.invoke(app, ["score", "--all", "--out", str(out), "--json"])
    assert scored.exit_code == 0, scored.output
    rows = pd.read_csv(out)
    assert list(rows.columns) == [
        "deal_id",
        "owner_id",
        "team",
        "win_probability",
        "score",
        "model_version",
        "as_of",
        "score_basis",
        "score_warning",
        "drivers",
        "actions",
        "drivers_base",
    ]
    open_now = history.deals[history.deals["status"] == "open"]
    assert len(rows) == len(open_now)
    assert rows["score"].between(1, 99).all()
    assert (rows["model_version"].astype(str) == win["version"]).all()

    # The registered pyfunc predicts exactly like the bundle it wraps.
    import mlflow

    from salesml.scoring import load_scorer

    loaded = load_scorer("champion")
    pyfunc = mlflow.pyfunc.load_model("models:/salesml-win@champion")
    features = build_features(history, history.exported_at)
    direct = loaded.bundle.predict(features)
    through_mlflow = pyfunc.predict(plain_dtypes(features[loaded.bundle.features]))
    pd.testing.assert_frame_equal(direct, through_mlflow, check_names=False)

    # ... and so do the drivers and actions the API will serve.
    info = ["owner_id", "team", "stage"]
    explained = pyfunc.predict(
        plain_dtypes(features[[*info, *loaded.bundle.features]]),
        params={"explain": True, "top": 5},
    )
    direct_explained = loaded.predict(features, explain=True)
    pd.testing.assert_frame_equal(
        direct_explained.reset_index(drop=True), explained.reset_index(drop=True)
    )
    first_deal = str(features.index[0])
    shown = runner.invoke(app, ["explain", first_deal, "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    assert doc["win_probability"] == pytest.approx(direct["win_probability"].iloc[0])
    assert doc["drivers"] == json.loads(direct_explained["drivers"].iloc[0])
    assert doc["actions"] == json.loads(direct_explained["actions"].iloc[0])
    text = runner.invoke(app, ["explain", first_deal])
    assert text.exit_code == 0 and "Drivers" in text.stdout
    unknown = runner.invoke(app, ["explain", "NO-SUCH-DEAL"])
    assert unknown.exit_code != 0
    assert "unknown deal id 'NO-SUCH-DEAL'" in unknown.output
    assert "Traceback" not in unknown.output


def test_registered_requirements_are_those_mlflow_would_infer(
    result: WinTrainingResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pinned list logged in place of MLflow's inference (a subprocess importing the model,
    ~10 s per registration) names the same distributions that inference finds."""
    import mlflow
    from mlflow.pyfunc.model import get_default_pip_requirements
    from mlflow.utils.environment import infer_pip_requirements

    from training.win.register import log_and_register

    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    reg = log_and_register(result, None)
    local = mlflow.artifacts.download_artifacts(f"models:/salesml-win/{reg.version}")
    logged = Path(local, "requirements.txt").read_text(encoding="utf-8").split()
    # What ``log_model`` would log: the inference plus pyfunc's defaults (cloudpickle).
    inferred = [
        *infer_pip_requirements(local, "python_function"),  # type: ignore[no-untyped-call]
        *get_default_pip_requirements(),  # type: ignore[no-untyped-call]
    ]

    def pins(requirements: list[str]) -> set[str]:  # MLflow pins itself either way
        return {r.lower().replace("_", "-") for r in requirements if not r.startswith("mlflow")}

    assert pins(inferred), "MLflow inferred no requirements: the check would prove nothing"
    assert pins(logged) == pins(inferred)  # same pins too: both read this environment

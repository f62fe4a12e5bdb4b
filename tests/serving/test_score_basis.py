"""A deal older than any training deal was at close is outside what the data supports: its
score says so (``score_basis``, ``score_warning``) in the batch run and the API answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
from fastapi.testclient import TestClient

from salesml.models.calibration import PlattCalibrator
from salesml.models.win.bundle import WinBundle
from salesml.scoring import BASIS_BEYOND, OLDEST_CLOSE_KEY, score_basis
from serving.runs import RunStore
from tests.serving.conftest import Workspace, headers


def _constant(metadata: dict[str, object]) -> WinBundle:
    calibrator = PlattCalibrator().fit(np.array([-1.0, 0.0, 1.0, 2.0]), np.array([0, 1, 0, 1]))
    return WinBundle([], {}, {}, calibrator, None, 0.64, metadata)


def test_only_ages_past_the_oldest_close_are_flagged() -> None:
    features = pd.DataFrame({"age_days": [10.0, 150.0, 150.5, np.nan, 400.0]})
    basis, warning = score_basis(features, _constant({OLDEST_CLOSE_KEY: 150.0}))
    assert basis.tolist() == ["base_rate", "base_rate", BASIS_BEYOND, "base_rate", BASIS_BEYOND]
    assert warning[0] is None and warning[1] is None and warning[3] is None
    assert "open 400 days" in str(warning[4]) and "(150 days)" in str(warning[4])


def test_a_model_without_the_oldest_age_flags_nothing() -> None:
    features = pd.DataFrame({"age_days": [10.0, 4000.0]})
    basis, warning = score_basis(features, _constant({}))
    assert basis.tolist() == ["base_rate", "base_rate"]
    assert warning.tolist() == [None, None]


def test_training_stores_the_oldest_close_age_and_the_batch_flags_older_deals(
    workspace: Workspace,
) -> None:
    deals = workspace.history.deals
    closed = deals[deals["closed_at"].notna()]
    oldest = ((closed["closed_at"] - closed["created_at"]).dt.total_seconds() / 86400).max()
    stored = workspace.model.bundle.metadata[OLDEST_CLOSE_KEY]
    assert stored == float(oldest)
    store = RunStore(workspace.home)
    info = store.info("r1")
    assert info is not None
    rows = store.read(info)
    assert "score_basis" in rows and "score_warning" in rows
    open_deals = deals[deals["status"] == "open"].set_index("deal_id")
    age = (workspace.history.exported_at - open_deals["created_at"]).dt.total_seconds() / 86400
    flagged = set(rows.loc[rows["score_basis"] == BASIS_BEYOND, "deal_id"])
    assert flagged == set(age[age > stored].index.astype(str))
    assert rows.loc[rows["score_basis"] != BASIS_BEYOND, "score_warning"].isna().all()


def test_the_api_answer_flags_a_deal_older_than_any_closed_one(
    workspace: Workspace, client: TestClient
) -> None:
    oldest = float(workspace.model.bundle.metadata[OLDEST_CLOSE_KEY])
    as_of = workspace.history.exported_at
    old = as_of - pd.Timedelta(days=oldest + 30)
    young = as_of - pd.Timedelta(days=2)
    body = {
        "deals": [
            {"deal": {"deal_id": "OLD-1", "created_at": f"{old:%Y-%m-%dT00:00:00}"}},
            {"deal": {"deal_id": "NEW-1", "created_at": f"{young:%Y-%m-%dT00:00:00}"}},
        ]
    }
    response = client.post("/v1/deals/score", json=body, headers=headers(workspace, "writer"))
    assert response.status_code == 200, response.text
    old_row, young_row = response.json()["scores"]
    assert old_row["score_basis"] == BASIS_BEYOND
    assert "longer than any training deal" in old_row["score_warning"]
    # Sent without a product, stage or close date, which every training deal had, the young
    # deal is flagged for those (tests/serving/test_unseen_inputs.py), never for its age.
    assert young_row["score_basis"] == "unseen_input"
    assert "longer than any" not in young_row["score_warning"]
    assert "no training deal lacked" in old_row["score_warning"]


def test_the_report_flags_open_deals_beyond_observed_ages() -> None:
    from serving.report.sections.health import beyond_ages_flag

    assert beyond_ages_flag(pd.DataFrame({"deal_id": ["a"]})) is None
    assert beyond_ages_flag(pd.DataFrame({"score_basis": ["model", "base_rate"]})) is None
    flag = beyond_ages_flag(pd.DataFrame({"score_basis": [BASIS_BEYOND, "model", BASIS_BEYOND]}))
    assert flag is not None and flag.text.startswith("2 open deals are older than any")

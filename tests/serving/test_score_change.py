"""Why did my score change (GET /v1/deals/{id}, ``change.drivers``): a move is attributed to the
named drivers of the two runs, "Other drivers" holding only what they leave unexplained."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.api.app import create_app
from serving.runs import RunStore, write_frame_parts
from tests.serving.conftest import Workspace, headers, make_app_settings


def _second_run(home: Path, deal_id: str, concept_shift: float) -> str:
    """A run ``r2`` like ``r1`` where the deal's probability moved by ``concept_shift`` points,
    all of it through its leading driver."""
    store = RunStore(home)
    first = store.info("r1")
    assert first is not None
    rows = store.read(first)
    at = rows.index[rows["deal_id"].astype(str) == deal_id][0]
    drivers = json.loads(rows.at[at, "drivers"])
    drivers[0]["contribution"] += concept_shift
    rows.at[at, "drivers"] = json.dumps(drivers)
    rows.at[at, "win_probability"] += concept_shift / 100
    with store.writing():
        store.write(
            "r2",
            lambda folder: write_frame_parts(rows, folder),
            as_of=pd.Timestamp(first.as_of),
            model_version=first.model_version,
            engine="local",
            json_columns=first.json_columns,
        )
    return str(drivers[0]["concept"])


def test_a_move_is_attributed_to_the_named_driver(workspace: Workspace, tmp_path: Path) -> None:
    home = workspace.copy_home(tmp_path / "home")
    deals = workspace.history.deals
    deal = str(deals[deals["status"] == "open"]["deal_id"].iloc[5])
    concept = _second_run(home, deal, -35.0)
    with TestClient(create_app(make_app_settings(home))) as client:
        body = client.get(f"/v1/deals/{deal}", headers=headers(workspace, "reader")).json()
    change = body["change"]
    assert change["previous_run_id"] == "r1" and change["current_run_id"] == "r2"
    top = change["drivers"][0]
    assert top["driver"] == concept and abs(top["change_points"] + 35.0) < 1e-6
    other = [d for d in change["drivers"] if d["driver"] == "Other drivers"]
    assert not other or abs(other[0]["change_points"]) < 1e-6
    assert sum(d["change_points"] for d in change["drivers"]) == pytest.approx(-35.0, abs=1e-6)
    assert all("drivers" not in p for p in body["history"])

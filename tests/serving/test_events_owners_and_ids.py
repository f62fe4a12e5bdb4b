"""Events through the API: a deal created with an owner and no team is its owner's team's
deal everywhere; an event id reused for another body is a ``conflict``, not a duplicate."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from salesml.warehouse import connect
from serving.api.app import create_app
from serving.api.live import LiveEvents
from serving.keys import KeyStore
from tests.serving.conftest import Workspace, make_app_settings

WHEN = "2026-04-01T10:00:00Z"


@dataclass
class Served:
    client: TestClient
    app: FastAPI
    home: Path
    headers: dict[str, str]
    team_key: dict[str, str]
    team: str
    owner: str  # a rep of ``team``

    @property
    def live(self) -> LiveEvents:
        live: LiveEvents = self.app.state.events
        return live

    def post(self, body: Any) -> Any:
        return self.client.post("/v1/events", headers=self.headers, json=body)


@pytest.fixture(scope="module")
def served(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = workspace.copy_home(tmp_path_factory.mktemp("owners") / "home")
    store = KeyStore.for_home(home)
    key = store.add("crm", ["events:write", "scores:read"])[1]
    team_key = store.add("teamread", ["scores:read"], team=workspace.team_a)[1]
    reps = workspace.history.reps
    owner = str(reps.loc[reps["team"] == workspace.team_a, "owner_id"].iloc[0])
    app = create_app(make_app_settings(home))
    with TestClient(app) as client:
        yield Served(
            client,
            app,
            home,
            {"X-API-Key": key},
            {"X-API-Key": team_key},
            workspace.team_a,
            owner,
        )


def created(event_id: str, deal_id: str, owner: str, **fields: Any) -> dict[str, Any]:
    deal = {"deal_id": deal_id, "owner_id": owner, "stage": "Qualification", **fields}
    return {"event_id": event_id, "type": "deal.created", "occurred_at": WHEN, "deal": deal}


def test_a_deal_created_with_an_owner_and_no_team_is_its_owners_teams(served: Served) -> None:
    """Score answer, team-bound key and warehouse agree: the deal is the owner's team's."""
    answer = served.post({"events": [created("ow-1", "EV-NEW-1", served.owner, amount=5000)]})
    assert answer.status_code == 202, answer.text
    assert served.live.wait_scored(answer.json()["results"][0]["seq"], timeout=60)
    mine = served.client.get("/v1/deals/EV-NEW-1", headers=served.team_key)
    assert mine.status_code == 200, mine.text
    assert mine.json()["score"]["team"] == served.team
    served.live.fold_now()
    with connect(served.home / "warehouse.duckdb", read_only=True) as con:
        row = con.execute(
            "SELECT d.team, d.region, r.region FROM deals d JOIN reps r USING (owner_id) "
            "WHERE deal_id = 'EV-NEW-1'"
        ).fetchone()
    assert row is not None and row[0] == served.team and row[1] == row[2]


def test_a_team_sent_with_the_deal_is_kept(served: Served) -> None:
    answer = served.post({"events": [created("ow-2", "EV-NEW-2", served.owner, team="Elsewhere")]})
    assert served.live.wait_scored(answer.json()["results"][0]["seq"], timeout=60)
    other = served.client.get("/v1/deals/EV-NEW-2", headers=served.team_key)
    assert other.status_code == 404
    shown = served.client.get("/v1/deals/EV-NEW-2", headers=served.headers)
    assert shown.json()["score"]["team"] == "Elsewhere"


def test_an_event_id_reused_for_another_body_is_a_conflict(served: Served) -> None:
    first = created("dupA", "EV-NEW-3", served.owner, amount=42000)
    second = created("dupA", "EV-NEW-3", served.owner, amount=43000)
    answer = served.post({"events": [first, second]})
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert [r["status"] for r in body["results"]] == ["accepted", "conflict"]
    assert (body["accepted"], body["conflict"], body["duplicate"]) == (1, 1, 0)
    clash = body["results"][1]
    assert clash["field"] == "deal.amount"
    assert "42000" in clash["reason"] and "43000" in clash["reason"]
    # later, against the journal: the same body is a duplicate, another one a conflict
    again = served.post({"events": [first]})
    assert again.status_code == 202 and again.json()["results"][0]["status"] == "duplicate"
    moved = served.post({"events": [{**first, "occurred_at": "2026-04-02T10:00:00Z"}]})
    assert moved.status_code == 207
    assert moved.json()["results"][0]["status"] == "conflict"
    assert moved.json()["results"][0]["field"] == "occurred_at"
    entry = served.live.journal.entry("dupA")
    assert entry is not None and entry.event["fields"]["amount"] == 42000


def test_a_webhook_stage_the_model_never_saw_is_flagged(served: Served) -> None:
    def hubspot(event_id: int, kind: str, **more: Any) -> dict[str, Any]:
        return {
            "eventId": event_id,
            "portalId": 44871234,
            "occurredAt": 1775037600000,
            "subscriptionType": kind,
            "objectId": 777001,
            **more,
        }

    answer = served.post(
        [
            hubspot(1, "deal.creation"),
            hubspot(2, "deal.propertyChange", propertyName="dealstage", propertyValue="x1"),
        ]
    )
    assert answer.status_code == 202, answer.text
    created_, staged = answer.json()["results"]
    assert "warning" not in created_
    assert staged["status"] == "accepted"
    assert "'x1' is not a stage" in staged["warning"] and "mapping.json" in staged["warning"]

"""POST /v1/events: CRM events in, scores out (docs/events.md)."""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from features.history import load_history
from salesml.importers.validate import Limits
from salesml.warehouse import connect
from serving.changes import input_hashes
from serving.events.fold import fold
from serving.keys import KeyStore
from serving.runs import RunStore
from tests.serving.conftest import Served, Workspace, serve_events

FIXTURES = Path(__file__).parents[1] / "fixtures" / "events"
WHEN = "2026-04-01T10:00:00Z"


@pytest.fixture(scope="module")
def served(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_events(workspace, tmp_path_factory, "events")


def stage_change(event_id: str, deal_id: str, stage: str, when: str = WHEN) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "deal.stage_changed",
        "occurred_at": when,
        "deal": {"deal_id": deal_id, "stage": stage},
    }


def test_a_stage_change_is_scored_with_the_event_as_the_reason(served: Served) -> None:
    deal_id = served.deals[0]
    before = served.deal(deal_id)
    answer = served.post({"events": [stage_change("sc-1", deal_id, "Negotiation")]})
    assert answer.status_code == 202, answer.text
    assert answer.json()["results"][0] == {
        "index": 0,
        "event_id": "sc-1",
        "status": "accepted",
        "seq": answer.json()["results"][0]["seq"],
        "deal_id": deal_id,
    }
    served.settle(answer)
    after = served.deal(deal_id)
    assert after["history"][-1]["run_id"] == "event:sc-1"
    assert after["run_id"] == "event:sc-1"  # the top level names where the score comes from
    assert after["history"][:-1] == before["history"]
    assert after["change"]["current_run_id"] == "event:sc-1"
    assert after["change"]["previous_run_id"] == before["run_id"]
    assert "deal.stage_changed to stage Negotiation" in after["change"]["summary"]
    assert after["score"]["as_of"].startswith("2026-04-01T10:00")
    # The new score is the model's on the deal's changed history, not the old one copied.
    stages = [d["value"] for d in after["score"]["drivers"] if d["feature"] == "current_stage"]
    assert stages in ([], ["Negotiation"])


def test_a_round_of_several_events_names_every_one_of_them(served: Served) -> None:
    """A stage change and a call of one deal, scored in one round: the change summary names
    both, in order, with the stage they moved from — not only the last (a call)."""
    deal_id = served.deals[2]
    first = served.post({"events": [stage_change("rv-0", deal_id, "Proposal")]})
    served.settle(first)
    call = {
        "event_id": "rv-2",
        "type": "activity.logged",
        "occurred_at": WHEN,
        "activity": {"deal_id": deal_id, "type": "call"},
    }
    answer = served.post({"events": [stage_change("rv-1", deal_id, "Negotiation"), call]})
    assert answer.status_code == 202, answer.text
    served.settle(answer)
    summary = served.deal(deal_id)["change"]["summary"]
    assert "after 2 events: stage Proposal->Negotiation (rv-1), call (rv-2)" in summary
    # and the round is traced: where its time went (docs/events.md, "Tracing the rounds")
    traced = [r for r in served.live.rounds if r.get("events")]
    assert traced and {"wait", "extend", "rows", "path", "score", "publish", "total"} <= set(
        traced[-1]
    )


def test_replaying_the_same_events_changes_nothing(served: Served) -> None:
    deal_id = served.deals[1]
    events = [
        stage_change("rp-1", deal_id, "Proposal"),
        {
            "event_id": "rp-2",
            "type": "activity.logged",
            "occurred_at": WHEN,
            "activity": {"deal_id": deal_id, "type": "meeting"},
        },
    ]
    first = served.post({"events": events})
    served.settle(first)
    shown = served.client.get(f"/v1/deals/{deal_id}", headers=served.headers).content
    counts = served.live.journal.counts()
    again = served.post({"events": events})
    assert again.status_code == 202
    assert [r["status"] for r in again.json()["results"]] == ["duplicate", "duplicate"]
    assert served.live.journal.counts() == counts
    served.live.step()
    assert served.client.get(f"/v1/deals/{deal_id}", headers=served.headers).content == shown
    # The warehouse too: folding the same entries again is an upsert of the same rows.
    served.live.fold_now()
    with connect(served.home / "warehouse.duckdb", read_only=True) as con:
        before = _rows(con, deal_id)
    entries = [e for e in served.live.journal.after(0) if e.event_id in ("rp-1", "rp-2")]
    limits = Limits(datetime.now(UTC))
    fold(entries, served.home / "warehouse.duckdb", served.home / "rejects", limits)
    with connect(served.home / "warehouse.duckdb", read_only=True) as con:
        assert _rows(con, deal_id) == before


def _rows(con: Any, deal_id: str) -> tuple[int, int, int]:
    counts = [
        con.execute(f"SELECT count(*) FROM {t} WHERE deal_id = ?", [deal_id]).fetchone()[0]
        for t in ("deals", "stage_history", "activities")
    ]
    return (counts[0], counts[1], counts[2])


def test_a_rejected_event_comes_back_with_its_field_and_reason(served: Served) -> None:
    deal_id = served.deals[2]
    mixed = served.post(
        {
            "events": [
                stage_change("rj-1", deal_id, "Qualification"),
                {
                    "event_id": "rj-2",
                    "type": "deal.updated",
                    "occurred_at": WHEN,
                    "deal": {"deal_id": deal_id, "amount": "-40"},
                },
                {
                    "event_id": "rj-3",
                    "type": "activity.logged",
                    "occurred_at": WHEN,
                    "activity": {"deal_id": "no-such-deal", "type": "call"},
                },
                {"event_id": "rj-4", "type": "deal.closed", "occurred_at": WHEN},
            ]
        }
    )
    assert mixed.status_code == 207, mixed.text
    results = mixed.json()["results"]
    assert [r["status"] for r in results] == ["accepted", "rejected", "rejected", "rejected"]
    assert results[1]["field"] == "deal.amount"
    assert "negative" in results[1]["reason"]
    assert results[2]["field"] == "activity.deal_id"
    assert "not in deals" in results[2]["reason"]
    assert results[3]["field"] == "type"
    assert served.live.journal.entry("rj-2") is None
    # Nothing good in the body: a problem+json naming every field, nothing stored.
    bad = served.post(
        [
            {
                "event_id": "rj-5",
                "type": "deal.updated",
                "occurred_at": "soon",
                "deal": {"deal_id": deal_id},
            }
        ]
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert bad.json()["errors"][0]["field"] == "events[0].occurred_at"
    assert served.live.journal.entry("rj-5") is None


def test_bodies_that_are_not_events_get_a_4xx_naming_the_field(served: Served) -> None:
    h = served.headers
    not_json = served.client.post(
        "/v1/events", headers={**h, "content-type": "application/json"}, content=b"{"
    )
    assert not_json.status_code == 422
    assert not_json.json()["errors"][0]["field"] == "body"
    other = served.client.post(
        "/v1/events", headers={**h, "content-type": "text/csv"}, content=b"a,b"
    )
    assert other.status_code == 415
    xml_bomb = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    bomb = served.client.post(
        "/v1/events", headers={**h, "content-type": "text/xml"}, content=xml_bomb
    )
    assert bomb.status_code == 422
    reader = KeyStore.for_home(served.home).add("reader-only", ["scores:read"])[1]
    forbidden = served.client.post("/v1/events", headers={"X-API-Key": reader}, json=[])
    assert forbidden.status_code == 403


def test_hubspot_webhooks_are_mapped_to_deal_and_lead_events(served: Served) -> None:
    body = json.loads((FIXTURES / "hubspot_webhook.json").read_text())
    answer = served.post(body)
    assert answer.status_code == 202, answer.text
    results = answer.json()["results"]
    assert answer.json()["source"] == "hubspot"
    assert [r["status"] for r in results] == [
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "accepted",
        "ignored",
        "accepted",
        "ignored",
    ]
    assert results[0]["event_id"] == "hubspot-62515-3816279340"
    served.settle(answer)
    deal = served.deal("18324771052")
    assert deal["score"]["win_probability"] is not None
    assert deal["history"][-1]["run_id"] == "event:hubspot-62515-3816279344"
    served.live.fold_now()
    with connect(served.home / "warehouse.duckdb", read_only=True) as con:
        row = con.execute(
            "SELECT stage, amount, status FROM deals WHERE deal_id = '18324771052'"
        ).fetchone()
        stages = con.execute(
            "SELECT stage, amount FROM stage_history WHERE deal_id = '18324771052' "
            "ORDER BY changed_at"
        ).fetchall()
        lead = con.execute("SELECT count(*) FROM leads WHERE lead_id = '90412553'").fetchone()
    assert row == ("qualifiedtobuy", 24000.0, "open")
    # Every change of stage, amount or close date is a stage-history row (as Salesforce's
    # OpportunityHistory keeps them): entered, priced, dated, moved on.
    assert stages == [
        ("appointmentscheduled", None),
        ("appointmentscheduled", 24000.0),
        ("appointmentscheduled", 24000.0),
        ("qualifiedtobuy", 24000.0),
    ]
    assert lead == (1,)


def test_salesforce_change_events_are_mapped(served: Served) -> None:
    body = json.loads((FIXTURES / "salesforce_cdc.json").read_text())
    answer = served.post(body)
    assert answer.status_code == 202, answer.text
    results = answer.json()["results"]
    assert answer.json()["source"] == "salesforce-cdc"
    assert [r["status"] for r in results] == ["accepted", "accepted", "accepted", "ignored"]
    served.settle(answer)
    deal = served.deal("0065g00000XyZ12AAB")
    assert deal["score"]["as_of"].startswith("2026-12-04T09:50")
    served.live.fold_now()
    with connect(served.home / "warehouse.duckdb", read_only=True) as con:
        row = con.execute(
            "SELECT stage, amount, expected_close_date, status FROM deals "
            "WHERE deal_id = '0065g00000XyZ12AAB'"
        ).fetchone()
        calls = con.execute(
            "SELECT type FROM activities WHERE deal_id = '0065g00000XyZ12AAB'"
        ).fetchall()
    assert row is not None
    assert row[:2] == ("Value Proposition", 41000.0)
    assert str(row[2]).startswith("2027-02-26")
    assert row[3] == "open"
    assert calls == [("call",)]


def test_a_salesforce_outbound_message_is_acknowledged_once_journaled(served: Served) -> None:
    body = (FIXTURES / "salesforce_outbound.xml").read_bytes()
    answer = served.client.post(
        "/v1/events", headers={**served.headers, "content-type": "text/xml"}, content=body
    )
    assert answer.status_code == 200, answer.text
    assert b"<Ack>true</Ack>" in answer.content
    won = served.live.journal.entry("sfobm-04l5g00002nrC5CAAU")
    assert won is not None and won.rows is not None
    assert won.rows["deals"][0]["status"] == "won"
    stored = served.live.journal.counts()["events"]
    again = served.client.post(
        "/v1/events", headers={**served.headers, "content-type": "text/xml"}, content=body
    )
    assert again.status_code == 200  # a redelivery is acknowledged, and stored once
    assert served.live.journal.counts()["events"] == stored


def test_the_warehouse_and_score_changed_see_the_events(served: Served) -> None:
    deal_id = served.deals[3]
    data = served.app.state.serving.snapshot().data
    stage = next(s for s in ("Negotiation", "Proposal") if s != _stage_of(data, deal_id))
    answer = served.post({"events": [stage_change("wh-1", deal_id, stage)]})
    served.settle(answer)
    served.live.fold_now()
    store = RunStore(served.home)
    run = store.latest()
    assert run is not None
    before = store.read(run).set_index("deal_id")["input_hash"]
    with connect(served.home / "warehouse.duckdb", read_only=True) as con:
        history = load_history(con)
        entered = con.execute(
            "SELECT count(*) FROM stage_history WHERE deal_id = ? AND stage = ? "
            "AND changed_at = TIMESTAMP '2026-04-01 10:00:00'",
            [deal_id, stage],
        ).fetchone()
    assert entered == (1,)
    now = input_hashes(history, before.index, run.as_of, run.model_version)
    changed = set(before.index[before.to_numpy() != now.reindex(before.index).to_numpy()])
    # `salesml score --changed` rescores the deal the event moved (its inputs' hash moved).
    assert deal_id in changed
    untouched = set(served.deals[10:60])
    assert not untouched & changed


def _stage_of(data: Any, deal_id: str) -> str:
    rows = data.history.stage_history
    mine = rows[rows["deal_id"] == deal_id].sort_values("changed_at")
    return str(mine["stage"].iloc[-1]) if len(mine) else ""


def test_an_overflowing_amount_is_rejected_on_its_field(served: Served) -> None:
    """1e400 overflows a double: the event is rejected on deal.amount (not the whole body on
    ``body``) with the finite-number reason; the other events of the body still go in."""
    deal_id = served.deals[3]
    events = [
        {
            "event_id": f"inf-{n}",
            "type": "deal.updated",
            "occurred_at": WHEN,
            "deal": {"deal_id": deal_id, "amount": 0.5},
        }
        for n in (1, 2)
    ]
    # JSON numbers no double holds (json.dumps cannot write them): put in as text
    body = json.dumps({"events": events}).replace("0.5", "1e400", 1).replace("0.5", "-1e999")
    answer = served.client.post(
        "/v1/events",
        headers={**served.headers, "content-type": "application/json"},
        content=body.encode(),
    )
    assert answer.status_code == 422, answer.text
    errors = answer.json()["errors"]
    assert [e["field"] for e in errors] == ["events[0].deal.amount", "events[1].deal.amount"]
    assert "1e400 is not a finite number" in errors[0]["message"]
    assert served.live.journal.entry("inf-1") is None


def test_a_numeric_event_id_is_rejected_not_coerced(served: Served) -> None:
    deal_id = served.deals[3]
    event = stage_change("num-1", deal_id, "Qualification")
    answer = served.post({"events": [{**event, "event_id": 42}]})
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    assert error["field"] == "events[0].event_id"
    assert "must be a string" in error["message"]
    assert served.live.journal.entry("42") is None


@pytest.mark.parametrize("hot_path", [True, False], ids=["hot", "fastapi"])
def test_a_closed_deal_answers_its_status_not_a_score(served: Served, hot_path: bool) -> None:
    """GET /v1/deals/{id} of a deal an event closed (before the event reaches the warehouse)
    or that the data holds closed: 200 with status, closed_at and no score, not a 404 or the
    last run's score of the deal while it was open — on the hot path and the FastAPI route."""
    deal_id = served.deals[5 if hot_path else 6]
    closed = served.post(
        {
            "events": [
                {
                    "event_id": f"close-{deal_id}",
                    "type": "deal.updated",
                    "occurred_at": WHEN,
                    "deal": {"deal_id": deal_id, "status": "lost"},
                }
            ]
        }
    )
    assert closed.status_code == 202, closed.text
    served.settle(closed)
    deals = served.app.state.serving.snapshot().data.history.deals
    won = deals[deals["status"] == "won"].iloc[0]
    edge = served.app.edge  # type: ignore[attr-defined]
    hot = edge.hot
    edge.hot = hot if hot_path else None
    try:
        for deal, status in ((deal_id, "lost"), (str(won["deal_id"]), "won")):
            found = served.client.get(f"/v1/deals/{deal}", headers=served.headers)
            assert found.status_code == 200, found.text
            doc = found.json()
            assert (doc["status"], doc["note"]) == (status, "closed deals are not scored")
            assert doc["score"]["deal_id"] == deal
            assert doc["score"]["win_probability"] is None and doc["score"]["score"] is None
            assert doc["change"] is None
        assert doc["closed_at"][:10] == str(won["closed_at"])[:10]
        lost = served.client.get(f"/v1/deals/{deal_id}", headers=served.headers).json()
        assert lost["closed_at"][:10] == WHEN[:10]
        # the event-closed deal keeps its runs' points from while it was open
        assert lost["history"] and lost["history"][-1]["win_probability"] is not None
        open_deal = served.client.get(f"/v1/deals/{served.deals[7]}", headers=served.headers)
        assert open_deal.json()["status"] == "open" and open_deal.json()["note"] is None
    finally:
        edge.hot = hot


def soap_message(*opportunities: dict[str, str]) -> bytes:
    """A hand-written Salesforce outbound message: one Opportunity notification per dict
    (``note`` is its Notification Id, the rest its fields)."""
    notes = []
    for opp in opportunities:
        fields = "".join(f"<sf:{k}>{v}</sf:{k}>" for k, v in opp.items() if k != "note")
        notes.append(
            f"<Notification><Id>{opp['note']}</Id>"
            '<sObject xsi:type="sf:Opportunity" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"{fields}</sObject></Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        "<OrganizationId>00D5g000004Ab1CEAS</OrganizationId>"
        "<ActionId>04k5g000000Xy3QAAS</ActionId>"
        f"{''.join(notes)}</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()


def opportunity(note: str, deal: str, amount: str, modified: str) -> dict[str, str]:
    return {
        "note": note,
        "Id": deal,
        "Amount": amount,
        "CloseDate": "2027-03-31",
        "CreatedDate": "2026-11-02T09:00:00.000Z",
        "IsClosed": "false",
        "IsWon": "false",
        "LastModifiedDate": modified,
        "StageName": "Prospecting",
    }


def outbound_rejects(home: Path) -> list[dict[str, str]]:
    path = home / "rejects" / "salesforce-outbound.csv"
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_an_outbound_message_of_good_notifications_is_acknowledged(served: Served) -> None:
    body = soap_message(
        opportunity("04l5g00002obA1AAAU", "0065g00000ObA1AAAA", "1500.0", "2026-11-03T10:00:00Z"),
        opportunity("04l5g00002obA2AAAU", "0065g00000ObA2AAAA", "2500.0", "2026-11-03T10:01:00Z"),
    )
    xml = {**served.headers, "content-type": "text/xml"}
    answer = served.client.post("/v1/events", headers=xml, content=body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    assert b"<Ack>true</Ack>" in answer.content
    assert served.live.journal.entry("sfobm-04l5g00002obA2AAAU") is not None
    assert not any(
        r["notification_id"].startswith("04l5g00002obA") for r in outbound_rejects(served.home)
    )


def test_an_outbound_message_with_a_rejected_notification_is_faulted_and_retried_once(
    served: Served,
) -> None:
    """One bad notification: a SOAP fault naming it (Salesforce retries), the good one is
    stored now and only once over the retries; the fixed retry is acknowledged."""
    good = opportunity("04l5g00002obB1AAAU", "0065g00000ObB1AAAA", "900.0", "2026-11-04T10:00:00Z")
    bad = opportunity("04l5g00002obB2AAAU", "0065g00000ObB2AAAA", "-40", "2026-11-04T10:01:00Z")
    xml = {**served.headers, "content-type": "text/xml"}
    answer = served.client.post("/v1/events", headers=xml, content=soap_message(good, bad))
    assert answer.status_code == 500, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    assert b"<Ack>" not in answer.content
    fault = ET.fromstring(answer.content).find(".//{*}Fault")
    assert fault is not None and fault.findtext("faultcode") == "soapenv:Client"
    text = fault.findtext("faultstring") or ""
    assert "04l5g00002obB2AAAU deal.amount" in text and "-40" in text
    assert "04l5g00002obB1AAAU" not in text and "1 of 2" in text
    assert served.live.journal.entry("sfobm-04l5g00002obB1AAAU") is not None  # stored now
    assert served.live.journal.entry("sfobm-04l5g00002obB2AAAU") is None
    stored = served.live.journal.counts()["events"]
    again = served.client.post("/v1/events", headers=xml, content=soap_message(good, bad))
    assert again.status_code == 500  # Salesforce's retry: the same fault, nothing applied twice
    assert served.live.journal.counts()["events"] == stored
    rejects = [r for r in outbound_rejects(served.home) if r["notification_id"].endswith("B2AAAU")]
    assert len(rejects) == 1 and rejects[0]["field"] == "deal.amount"  # on record once
    fixed = {**bad, "Amount": "40.0", "LastModifiedDate": "2026-11-04T10:05:00Z"}
    done = served.client.post("/v1/events", headers=xml, content=soap_message(good, fixed))
    assert done.status_code == 200 and b"<Ack>true</Ack>" in done.content
    assert served.live.journal.counts()["events"] == stored + 1
    assert served.live.journal.entry("sfobm-04l5g00002obB2AAAU") is not None


def test_an_outbound_retry_carrying_newer_fields_is_acknowledged_and_recorded(
    served: Served,
) -> None:
    """Salesforce retries with the record's current fields: a stored notification that comes
    back changed is not stored again (the first stands) — acknowledged, so the message is not
    retried for 24 hours in vain, and the newer values are on record."""
    first = opportunity("04l5g00002obC1AAAU", "0065g00000ObC1AAAA", "700.0", "2026-11-05T10:00:00Z")
    xml = {**served.headers, "content-type": "text/xml"}
    assert (
        served.client.post("/v1/events", headers=xml, content=soap_message(first)).status_code
        == 200
    )
    edited = {**first, "Amount": "750.0", "LastModifiedDate": "2026-11-05T11:00:00Z"}
    answer = served.client.post("/v1/events", headers=xml, content=soap_message(edited))
    assert answer.status_code == 200 and b"<Ack>true</Ack>" in answer.content
    rows = [r for r in outbound_rejects(served.home) if r["notification_id"].endswith("C1AAAU")]
    assert [r["status"] for r in rows] == ["conflict"] and "750" in rows[0]["reason"]


def _ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp() * 1000)


def test_a_crm_close_date_is_read_against_the_deal_as_it_stands(served: Served) -> None:
    """A CloseDate (HubSpot ``closedate``) sent alone is the expected close of a deal that is
    open when it arrives and the close (``closed_at`` only) of one that is won or lost by then
    — whichever the order of the events, each is read against the deal as the earlier ones
    left it, in one body or across bodies."""
    hub, sf = served.deals[8], served.deals[9]

    def prop(n: int, deal: str, name: str, value: Any, at: str) -> dict[str, Any]:
        return {
            "eventId": 7100 + n,
            "portalId": 62515,
            "occurredAt": _ms(at),
            "subscriptionType": "deal.propertyChange",
            "objectId": deal,
            "propertyName": name,
            "propertyValue": value,
        }

    first = served.post(
        [
            prop(0, hub, "closedate", _ms("2026-05-15T00:00:00"), "2026-04-01T09:00:00"),
            prop(1, hub, "dealstage", "closedwon", "2026-04-02T09:00:00"),
            prop(2, hub, "closedate", _ms("2026-04-02T00:00:00"), "2026-04-02T09:00:01"),
        ]
    )
    assert first.status_code == 202, first.text
    later = served.post([prop(3, hub, "closedate", "1775347200000", "2026-04-03T09:00:00")])
    assert later.status_code == 202, later.text
    rows = [served.live.journal.entry(f"hubspot-62515-{7100 + n}").rows for n in range(4)]
    deal = [r["deals"][0] for r in rows]  # type: ignore[index]
    assert deal[0]["expected_close_date"].startswith("2026-05-15") and "stage_history" in rows[0]
    assert deal[0]["status"] == "open" and deal[0].get("closed_at") in (None, "")
    assert deal[1]["status"] == "won" and deal[1]["closed_at"].startswith("2026-04-02T09:00")
    for row, day in ((deal[2], "2026-04-02"), (deal[3], "2026-04-05")):
        assert row["closed_at"].startswith(day), row
        assert row["expected_close_date"].startswith("2026-05-15")  # the open deal's, as it was
    assert all("stage_history" not in r for r in rows[2:])  # type: ignore[operator]

    def cdc(n: int, at: str, **fields: Any) -> dict[str, Any]:
        header = {
            "entityName": "Opportunity",
            "recordIds": [sf],
            "changeType": "UPDATE",
            "transactionKey": f"tk-close-{n}",
            "sequenceNumber": 1,
            "commitTimestamp": _ms(at),
            "nulledFields": [],
        }
        return {"payload": {"ChangeEventHeader": header, **fields}}

    body = [
        cdc(0, "2026-04-01T09:00:00", CloseDate="2026-06-30"),
        cdc(1, "2026-04-02T09:00:00", StageName="Closed Lost", IsClosed=True, IsWon=False),
        cdc(2, "2026-04-02T10:00:00", CloseDate="2026-04-02"),
    ]
    answer = served.post(body)
    assert answer.status_code == 202, answer.text
    keys = [f"sfcdc-tk-close-{n}-1-{sf}" for n in range(3)]
    opened, closing, closed = (served.live.journal.entry(k).rows["deals"][0] for k in keys)  # type: ignore[index]
    assert opened["expected_close_date"] == "2026-06-30" and opened["status"] == "open"
    assert closing["status"] == "lost" and closing["closed_at"].startswith("2026-04-02T09:00")
    assert closed["closed_at"] == "2026-04-02"
    assert closed["expected_close_date"] is None  # as the closing event left it, not the close

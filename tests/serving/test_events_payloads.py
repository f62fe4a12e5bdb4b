"""CRM payload shapes read as their senders write them (``serving.events.shapes``): the
Salesforce Pub/Sub API's numeric datetimes and dates, and the advice for a bare number."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from salesml.importers.validate import Limits
from serving.events.checks import check_row, event_hint
from serving.events.resolve import resolve
from serving.events.shapes import (
    BodyError,
    Parsed,
    Unusable,
    future_events,
    read_canonical,
    read_json,
    read_salesforce_outbound,
    unknown_stages,
    workspace_mapping,
)

OPPORTUNITY = "0065g00000AbCdEAAA"
LIMITS = Limits(now=datetime(2026, 12, 7, 19, 0))


def pubsub(entity: str, change: str, record: str, **fields: Any) -> dict[str, Any]:
    """A change event as the Pub/Sub API decodes it from Avro (datetimes are epoch ms)."""
    header = {
        "entityName": entity,
        "recordIds": [record],
        "changeType": change,
        "transactionKey": f"tk-{record}",
        "sequenceNumber": 1,
        "commitTimestamp": 1796666460000,
        "commitUser": "0055g00000Ab1CdAAJ",
        "changedFields": [],
        "nulledFields": [],
    }
    return {"schema": "s1", "payload": {"ChangeEventHeader": header, **fields}, "event": {}}


def test_pubsub_epoch_millisecond_datetimes_and_day_number_dates_are_read() -> None:
    """Avro-decoded CDC: CreatedDate 1796666460000 is 2026-12-07T18:01Z and CloseDate 20543
    is 2026-03-31 (days since 1970-01-01), not an Excel serial date of 1956."""
    body = [
        pubsub(
            "Opportunity",
            "CREATE",
            OPPORTUNITY,
            Name="Globex",
            StageName="Prospecting",
            Amount=38000.0,
            CloseDate=20543,
            OwnerId="005A",
            CreatedDate=1796666460000,
        ),
        pubsub(
            "Task",
            "CREATE",
            "00T5g00000LmN3pEAF",
            WhatId=OPPORTUNITY,
            OwnerId="005A",
            TaskSubtype="Call",
            CreatedDate=1796666520000,
        ),
    ]
    deal, task = read_json(body).events
    assert isinstance(deal, Parsed) and isinstance(task, Parsed)
    assert deal.fields["created_at"] == "2026-12-07T18:01:00.000Z"
    assert deal.fields["expected_close_date"] == "2026-03-31"
    assert task.fields["occurred_at"] == "2026-12-07T18:02:00.000Z"
    limits = LIMITS
    _, problems = check_row("deals", {"status": "open", **deal.fields}, limits)
    assert problems == []
    _, problems = check_row("activities", task.fields, limits, known_deals={OPPORTUNITY})
    assert problems == []


def test_cometd_iso_strings_are_left_as_sent() -> None:
    event = pubsub(
        "Opportunity",
        "CREATE",
        OPPORTUNITY,
        CreatedDate="2026-12-04T08:20:00.000Z",
        CloseDate="2027-02-26",
    )
    (deal,) = read_json({"data": event}).events
    assert isinstance(deal, Parsed)
    assert deal.fields["created_at"] == "2026-12-04T08:20:00.000Z"
    assert deal.fields["expected_close_date"] == "2027-02-26"


def test_a_number_outside_the_cdc_shape_is_named_a_unix_timestamp_when_it_looks_like_one() -> None:
    """Elsewhere a bare number is not read, and the advice names what it looks like: Unix
    seconds or milliseconds (with the time it would be), else an Excel serial date."""
    base = {"event_id": "e1", "type": "activity.logged", "activity": {"deal_id": "D1"}}
    seconds, serial = read_canonical(
        [{**base, "occurred_at": 1796666460}, {**base, "occurred_at": 45231}]
    ).events
    assert isinstance(seconds, Unusable) and isinstance(serial, Unusable)
    assert (
        "Unix timestamp in seconds" in seconds.reason and "2026-12-07T18:01:00Z" in seconds.reason
    )
    assert "Excel serial" not in seconds.reason
    assert "Excel serial date" in serial.reason and "Unix" not in serial.reason
    millis = event_hint("timestamp", "1796666460000")
    assert "Unix timestamp in milliseconds" in millis and "2026-12-07T18:01:00Z" in millis
    days = event_hint("date", "20543")
    assert "Excel serial date" in days and "1956-03-29" in days and "2026-03-31" in days
    # a canonical deal's created_at as a number keeps its advice, naming the epoch
    _, problems = check_row(
        "deals",
        {"deal_id": "D1", "created_at": 1796666460000, "status": "open", "owner_id": "R1"},
        LIMITS,
    )
    assert (
        problems[0].field == "created_at" and "Unix timestamp in milliseconds" in problems[0].reason
    )


def hubspot(event_id: int, prop: str, value: Any) -> dict[str, Any]:
    return {
        "eventId": event_id,
        "portalId": 44871234,
        "occurredAt": 1796666460000,
        "subscriptionType": "deal.propertyChange",
        "objectId": 555,
        "propertyName": prop,
        "propertyValue": value,
    }


def test_hubspot_stage_and_owner_ids_are_mapped_to_the_exports_labels(tmp_path: Path) -> None:
    """A webhook sends ``contractsent`` and ``61234567`` where the UI export said ``Contract
    Sent`` and ``Gavin Belson``: the workspace's mapping file (or the HubSpot API's own
    answers saved as is) turns one into the other."""
    (tmp_path / "events").mkdir()
    pipelines = {
        "results": [
            {
                "id": "default",
                "label": "Sales Pipeline",
                "stages": [
                    {"id": "contractsent", "label": "Contract Sent"},
                    {"id": "closedwon", "label": "Closed Won"},
                ],
            }
        ]
    }
    owners = {"results": [{"id": "61234567", "firstName": "Gavin", "lastName": "Belson"}]}
    (tmp_path / "events" / "mapping.json").write_text(
        json.dumps({"hubspot": {"stages": pipelines, "owners": owners}})
    )
    mapping = workspace_mapping(tmp_path)
    body = [
        hubspot(1, "dealstage", "contractsent"),
        hubspot(2, "hubspot_owner_id", "61234567"),
        hubspot(3, "dealstage", "closedwon"),
        hubspot(4, "dealstage", "somethingelse"),
    ]
    stage, owner, won, other = read_json(body, mapping=mapping).events
    assert isinstance(stage, Parsed) and stage.fields["stage"] == "Contract Sent"
    assert isinstance(owner, Parsed) and owner.fields["owner_id"] == "Gavin Belson"
    assert isinstance(won, Parsed)
    assert (won.fields["stage"], won.fields["status"]) == ("Closed Won", "won")
    assert isinstance(other, Parsed) and other.fields["stage"] == "somethingelse"
    # without a mapping the ids come through as sent
    (plain, *_) = read_json(body).events
    assert isinstance(plain, Parsed) and plain.fields["stage"] == "contractsent"
    # a stage the data has never seen is flagged, not silently scored "unchanged"
    reading = read_json(body, mapping=mapping)
    warned = unknown_stages(reading, frozenset({"Contract Sent", "Closed Won"}))
    assert list(warned) == [3] and "mapping.json" in warned[3]


def test_a_broken_mapping_file_is_named_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "mapping.json").write_text('{"hubspot": {"stages": [1, 2]}}')
    with pytest.raises(BodyError) as err:
        workspace_mapping(tmp_path)
    assert "hubspot.stages" in err.value.reason and err.value.status == 503


def test_answers_name_fields_within_the_event_and_values_as_sent() -> None:
    """The route prefixes the position (events[0].…): a shape's field does not repeat it; an
    ignored HubSpot event carries the id its accepted twin would; JSON values, not reprs."""
    deletion = {**hubspot(7, "x", None), "subscriptionType": "deal.deletion"}
    no_portal = {k: v for k, v in hubspot(8, "amount", "5").items() if k != "portalId"}
    ignored, rejected = read_json([deletion, no_portal], source="hubspot").events
    assert isinstance(ignored, Unusable) and ignored.event_id == "hubspot-44871234-7"
    assert isinstance(rejected, Unusable) and rejected.field == "portalId"
    (cdc,) = read_json({"payload": {"ChangeEventHeader": "x"}}, source="salesforce-cdc").events
    assert isinstance(cdc, Unusable) and cdc.field == "payload.ChangeEventHeader"
    (untyped,) = read_canonical([{"event_id": "e1", "occurred_at": "2026-01-01"}]).events
    assert isinstance(untyped, Unusable) and "got nothing" in untyped.reason
    _, problems = check_row(
        "deals",
        {"deal_id": "D1", "created_at": "2026-01-01", "status": "open", "amount": True},
        LIMITS,
    )
    assert "could not read true as float" in problems[0].reason


def test_an_event_dated_ahead_of_the_clock_is_warned_about() -> None:
    base = {"event_id": "e1", "type": "activity.logged", "activity": {"deal_id": "D1"}}
    reading = read_canonical(
        [
            {**base, "occurred_at": "2027-06-01T00:00:00Z"},
            {**base, "event_id": "e2", "occurred_at": "2026-12-07T19:03:00Z"},  # clock skew
            {**base, "event_id": "e3", "occurred_at": "2026-12-07T10:00:00Z"},
        ]
    )
    warned = future_events(reading, datetime(2026, 12, 7, 19, 0))
    assert list(warned) == [0]
    assert "175 days ahead of the server's clock" in warned[0]


def test_an_outbound_closed_opportunity_without_is_won_is_rejected_not_called_lost() -> None:
    def message(fields: str) -> bytes:
        return (
            '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
            '<notifications xmlns="http://soap.sforce.com/2005/09/outbound"><Notification>'
            '<Id>04l5g00002xyZ1AAAU</Id><sObject xsi:type="sf:Opportunity" '
            'xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"<sf:Id>{OPPORTUNITY}</sf:Id><sf:CloseDate>2026-11-30</sf:CloseDate>"
            f"<sf:LastModifiedDate>2026-11-30T10:00:00.000Z</sf:LastModifiedDate>{fields}"
            "</sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"
        ).encode()

    signed = read_salesforce_outbound(
        message("<sf:IsClosed>true</sf:IsClosed><sf:StageName>Signed</sf:StageName>")
    ).events[0]
    assert isinstance(signed, Unusable) and signed.status == "rejected"
    assert signed.field == "IsWon" and "'Signed'" in signed.reason
    for fields, status in (
        ("<sf:IsClosed>true</sf:IsClosed><sf:StageName>Closed Lost</sf:StageName>", "lost"),
        (
            "<sf:IsClosed>true</sf:IsClosed><sf:IsWon>true</sf:IsWon>"
            "<sf:StageName>Signed</sf:StageName>",
            "won",
        ),
    ):
        event = read_salesforce_outbound(message(fields)).events[0]
        assert isinstance(event, Parsed) and event.fields["status"] == status


def test_a_closed_opportunitys_close_date_is_its_close_not_an_expected_close() -> None:
    """As the Salesforce importer reads it: CloseDate is closed_at of a won or lost opportunity
    and expected_close_date only of an open one (the close day is no expectation)."""
    common = {"CreatedDate": "2026-10-01T08:00:00.000Z", "CloseDate": "2026-11-30"}
    won = pubsub("Opportunity", "CREATE", OPPORTUNITY, IsClosed=True, IsWon=True, **common)
    lost = pubsub("Opportunity", "UPDATE", OPPORTUNITY, StageName="Closed Lost", **common)
    still_open = pubsub("Opportunity", "UPDATE", OPPORTUNITY, IsClosed=False, **common)
    closed = [e for body in (won, lost) for e in read_json(body).events]
    for event in closed:
        assert isinstance(event, Parsed)
        assert event.fields["closed_at"] == "2026-11-30"
        assert event.fields["expected_close_date"] is None
    (opened,) = read_json(still_open).events
    assert isinstance(opened, Parsed) and opened.fields["status"] == "open"
    assert opened.fields["expected_close_date"] == "2026-11-30"
    assert "closed_at" not in opened.fields
    # Applied to the open deal it closes, the row is the one the importer would write.
    (event,) = read_json(lost).events
    assert isinstance(event, Parsed)
    current = {
        "deal_id": OPPORTUNITY,
        "status": "open",
        "stage": "Proposal",
        "created_at": "2026-10-01T08:00:00",
        "expected_close_date": "2026-12-15",
    }
    applied = {
        "type": event.type,
        "occurred_at": event.occurred_at,
        "fields": event.fields,
        "event_id": event.event_id,
    }
    (row,) = resolve(applied, current)["deals"]
    assert (row["status"], row["closed_at"], row["expected_close_date"]) == (
        "lost",
        "2026-11-30",
        None,
    )


def test_out_of_range_values_are_rejected_on_their_field_not_a_crash() -> None:
    """A CDC day number past year 9999, an unreadable IsClosed, and an amount too large for a
    double on a deal that has one: each a rejection naming its field (these raised
    OverflowError, a 500, or were taken as "not closed")."""
    far = pubsub("Opportunity", "UPDATE", OPPORTUNITY, CloseDate=2_999_999)
    (event,) = read_json(far).events
    assert isinstance(event, Parsed) and event.fields["expected_close_date"] == 2_999_999
    row = {"status": "open", "created_at": "2026-01-01", **event.fields}
    _, problems = check_row("deals", row, LIMITS)
    assert [p.field for p in problems] == ["expected_close_date"]
    for flag in ("IsClosed", "IsWon"):
        unsure = pubsub("Opportunity", "UPDATE", OPPORTUNITY, StageName="X", **{flag: "maybe"})
        (bad,) = read_json(unsure).events
        assert isinstance(bad, Unusable) and bad.status == "rejected" and bad.field == flag
    (one,) = read_json(pubsub("Opportunity", "UPDATE", OPPORTUNITY, IsClosed="1", IsWon="0")).events
    assert isinstance(one, Parsed) and one.fields["status"] == "lost"
    huge = 10**400
    current = {"deal_id": "D1", "status": "open", "created_at": "2026-01-01", "amount": 5.0}
    update = {"event_id": "e", "type": "deal.updated", "occurred_at": "2026-04-01T10:00:00Z"}
    rows = resolve({**update, "fields": {"deal_id": "D1", "amount": huge}}, current)
    _, problems = check_row("deals", rows["deals"][0], LIMITS)
    assert problems[0].field == "amount" and "not a finite number" in problems[0].reason

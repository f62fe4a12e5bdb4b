"""A new user's review of POST /v1/events (issue 19): lead updates merged with the lead as it
stands, one unknown-stage rule for every source, a point per event in a deal's history, errors
naming the field a CRM payload lacks, vocabulary fields sent as numbers, unknown owners, and
the change summary of a canonical update."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from serving.api.live import EVENT_POINTS, _earlier, _since_run, describe
from serving.events.journal import Entry
from serving.events.leads import PendingLeads
from serving.events.resolve import Unapplicable, resolve_lead
from serving.events.shapes import Parsed, Unusable, detect, read_json
from tests.serving.conftest import Served, Workspace, serve_events

WHEN = "2026-04-01T10:00:00Z"
WHEN_MS = 1775037600000  # 2026-04-01T10:00:00Z


@pytest.fixture(scope="module")
def served(workspace: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_events(workspace, tmp_path_factory, "review")


def imported_leads(served: Served, n: int) -> list[str]:
    """Leads of the import, not converted, created before the events' time."""
    rows = served.query(
        "SELECT lead_id FROM leads WHERE converted_at IS NULL AND disqualified_at IS NULL "
        "AND created_at < TIMESTAMP '2026-03-01' ORDER BY lead_id"
    )
    assert len(rows) >= n, "the synthetic workspace has leads"
    return [str(r[0]) for r in rows[:n]]


def lead_event(event_id: str, kind: str, lead: dict[str, Any], when: str = WHEN) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "occurred_at": when, "lead": lead}


# -- 1. lead updates -------------------------------------------------------------------------
def test_an_update_of_an_imported_lead_is_merged_with_its_row(served: Served) -> None:
    lead = imported_leads(served, 1)[0]
    created = served.query(f"SELECT created_at FROM leads WHERE lead_id = '{lead}'")[0]
    answer = served.post(lead_event("ld-1", "lead.updated", {"lead_id": lead, "source": "web"}))
    assert answer.status_code == 202, answer.text
    entry = served.live.journal.entry("ld-1")
    assert entry is not None and entry.rows is not None
    assert entry.rows["leads"][0]["source"] == "web"  # the merged row is what is journaled
    assert entry.rows["leads"][0]["created_at"] is not None
    served.live.fold_now()
    assert served.query(f"SELECT source, created_at FROM leads WHERE lead_id = '{lead}'") == [
        ("web", created[0])
    ]


def test_a_lead_created_by_an_event_can_be_updated_before_and_after_the_fold(
    served: Served,
) -> None:
    created = lead_event("ld-2", "lead.created", {"lead_id": "LEV-1", "source": "webinar"})
    update = lead_event(
        "ld-3", "lead.updated", {"lead_id": "LEV-1", "owner_id": "R001"}, "2026-04-01T11:00:00Z"
    )
    together = served.post({"events": [created, update]})
    assert together.status_code == 202, together.text
    later = served.post(
        lead_event(
            "ld-4",
            "lead.updated",
            {"lead_id": "LEV-1", "converted_at": "2026-04-02T09:00:00Z"},
            "2026-04-02T09:00:00Z",
        )
    )
    assert later.status_code == 202, later.text
    served.live.fold_now()
    # after the fold the lead is read from the warehouse
    folded = served.post(
        lead_event(
            "ld-5", "lead.updated", {"lead_id": "LEV-1", "source": "web"}, "2026-04-03T09:00:00Z"
        )
    )
    assert folded.status_code == 202, folded.text
    served.live.fold_now()
    rows = served.query(
        "SELECT source, owner_id, converted_at, created_at FROM leads WHERE lead_id = 'LEV-1'"
    )
    assert [(r[0], r[1], str(r[2]), str(r[3])) for r in rows] == [
        ("web", "R001", "2026-04-02 09:00:00", "2026-04-01 10:00:00")
    ]


def test_crm_lead_conversions_are_merged_with_the_imported_lead(served: Served) -> None:
    hubspot_lead, salesforce_lead = imported_leads(served, 3)[1:]
    hubspot = served.post(
        [
            {
                "eventId": 9101,
                "portalId": 62515,
                "occurredAt": WHEN_MS,
                "subscriptionType": "contact.propertyChange",
                "objectId": hubspot_lead,
                "propertyName": "lifecyclestage",
                "propertyValue": "customer",
            }
        ]
    )
    assert hubspot.status_code == 202, hubspot.text
    header = {
        "entityName": "Lead",
        "recordIds": [salesforce_lead],
        "changeType": "UPDATE",
        "transactionKey": "tk-lead",
        "sequenceNumber": 1,
        "commitTimestamp": WHEN_MS,
    }
    cdc = served.post({"payload": {"ChangeEventHeader": header, "ConvertedDate": "2026-04-01"}})
    assert cdc.status_code == 202, cdc.text
    served.live.fold_now()
    rows = served.query(
        "SELECT lead_id, converted_at IS NOT NULL, created_at IS NOT NULL FROM leads "
        f"WHERE lead_id IN ('{hubspot_lead}', '{salesforce_lead}') ORDER BY lead_id"
    )
    assert [r[1:] for r in rows] == [(True, True), (True, True)]


def test_an_update_of_an_unknown_lead_or_one_breaking_a_rule_is_refused(served: Served) -> None:
    unknown = served.post(lead_event("ld-6", "lead.updated", {"lead_id": "NO-SUCH-LEAD"}))
    assert unknown.status_code == 422, unknown.text
    error = unknown.json()["errors"][0]
    assert error["field"] == "events[0].lead.lead_id"
    assert "not known" in error["message"] and "lead.created" in error["message"]
    # the merged row is checked: a conversion before the imported lead's creation
    lead = imported_leads(served, 4)[3]
    early = served.post(
        lead_event("ld-7", "lead.updated", {"lead_id": lead, "converted_at": "2020-01-01"})
    )
    assert early.status_code == 422, early.text
    assert early.json()["errors"][0]["field"] == "events[0].lead.converted_at"
    assert "before created_at" in early.json()["errors"][0]["message"]


# -- 2. unknown stages, 5. unknown owners -----------------------------------------------------
def test_a_canonical_stage_or_owner_the_data_lacks_is_warned_about(served: Served) -> None:
    deal_id = served.deals[0]
    answer = served.post(
        {
            "events": [
                {
                    "event_id": "st-1",
                    "type": "deal.stage_changed",
                    "occurred_at": WHEN,
                    "deal": {"deal_id": deal_id, "stage": "Banana"},
                },
                {
                    "event_id": "st-2",
                    "type": "deal.updated",
                    "occurred_at": WHEN,
                    "deal": {"deal_id": served.deals[1], "owner_id": "NOBODY"},
                },
            ]
        }
    )
    assert answer.status_code == 202, answer.text
    stage, owner = answer.json()["results"]
    assert "'Banana' is not a stage of the data" in stage["warning"]
    assert "owner_id 'NOBODY' is not in reps" in owner["warning"]
    assert "placeholder rep" in owner["warning"]


# -- 3. a point per event ----------------------------------------------------------------------
def test_a_deals_history_keeps_a_point_per_event(served: Served) -> None:
    deal_id = served.deals[5]
    before = served.deal(deal_id)
    for n in range(1, 5):
        call = {
            "event_id": f"hist-{n}",
            "type": "activity.logged",
            "occurred_at": f"2026-04-01T1{n}:00:00Z",
            "activity": {"deal_id": deal_id, "type": "call"},
        }
        answer = served.post(call)
        assert answer.status_code == 202, answer.text
        served.settle(answer)
    after = served.deal(deal_id)
    runs = [p["run_id"] for p in before["history"]]
    assert [p["run_id"] for p in after["history"]] == [
        *runs,
        "event:hist-1",
        "event:hist-2",
        "event:hist-3",
        "event:hist-4",
    ]
    assert after["change"]["previous_run_id"] == "event:hist-3"


def test_the_event_points_kept_are_bounded_and_in_order() -> None:
    row: dict[str, Any] = {"earlier": [], "previous": None, "point": None}
    for n in range(EVENT_POINTS + 5):
        point = {"run_id": f"event:e{n}", "as_of": f"2026-04-01T{n % 24:02d}", "drivers": "[]"}
        row = {"earlier": _earlier(row), "previous": row["point"], "point": point}
    kept = [p["run_id"] for p in [*row["earlier"], row["previous"], row["point"]]]
    assert kept == [f"event:e{n}" for n in range(5, EVENT_POINTS + 5)]
    assert all("drivers" not in p for p in row["earlier"])  # only the last two carry them
    assert row["previous"]["drivers"] == "[]"


def test_event_points_a_later_run_covers_give_way_to_it() -> None:
    runs = [{"run_id": "r2", "as_of": "2026-04-01T12:00:00"}]
    events = [
        {"run_id": "event:a", "as_of": "2026-04-01T11:00:00"},
        {"run_id": "event:b", "as_of": "2026-04-01T12:00:00"},
        {"run_id": "event:c", "as_of": "2026-04-01T13:00:00"},
    ]
    assert [p["run_id"] for p in _since_run(runs, events)] == ["event:c"]
    assert _since_run([], events) == events


# -- 4. errors naming the field a CRM payload lacks -------------------------------------------
def test_a_hubspot_event_without_portal_id_is_told_so(served: Served) -> None:
    event = {
        "eventId": 1,
        "occurredAt": WHEN_MS,
        "subscriptionType": "deal.creation",
        "objectId": 99,
    }
    answer = served.post([event])
    assert answer.status_code == 422, answer.text
    assert answer.json()["errors"][0]["field"] == "events[0].portalId"
    assert "portalId is required" in answer.json()["errors"][0]["message"]
    # HubSpot's keys without subscriptionType are HubSpot's too
    assert detect([{"eventId": 1, "portalId": 2, "objectId": 3}]) == "hubspot"
    assert detect([{"event_id": "e", "type": "deal.created"}]) == "canonical"


def test_a_change_event_without_its_header_is_told_so(served: Served) -> None:
    for body in (
        {"payload": {"Name": "Globex"}, "event": {"replayId": 1}},
        {"data": {"payload": {"Name": "Globex"}}, "channel": "/data/OpportunityChangeEvent"},
    ):
        answer = served.post(body)
        assert answer.status_code == 422, answer.text
        error = answer.json()["errors"][0]
        assert error["field"] == "events[0].payload.ChangeEventHeader", body


# -- 5. vocabulary fields, the change summary --------------------------------------------------
def test_a_vocabulary_field_sent_as_a_number_is_refused_not_coerced(served: Served) -> None:
    call = {
        "event_id": "voc-1",
        "type": "activity.logged",
        "occurred_at": WHEN,
        "activity": {"deal_id": served.deals[0], "type": 7},
    }
    answer = served.post(call)
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    assert error["field"] == "events[0].activity.type"
    assert "must be a string" in error["message"] and '"7"' in error["message"]
    assert served.live.journal.entry("voc-1") is None
    quoted = read_json({**call, "activity": {"deal_id": "D1", "type": "7"}})
    assert isinstance(quoted.events[0], Parsed)
    stage = read_json(
        {
            "event_id": "v",
            "type": "deal.updated",
            "occurred_at": WHEN,
            "deal": {"deal_id": "D1", "stage": True},
        }
    ).events[0]
    assert isinstance(stage, Unusable) and stage.field == "deal.stage"
    # ids stay as they were: a numeric deal id is read as its text
    numeric = read_json(
        {
            "event_id": "n",
            "type": "deal.updated",
            "occurred_at": WHEN,
            "deal": {"deal_id": 42, "amount": 3},
        }
    )
    assert isinstance(numeric.events[0], Parsed)


def test_a_canonical_update_names_its_fields_in_the_summary() -> None:
    entry = Entry(
        7,
        "up-1",
        "deal.updated",
        "canonical",
        WHEN,
        {"fields": {"deal_id": "D1", "owner_id": "R2", "amount": 5}},
        None,
        False,
    )
    assert describe(entry) == f"deal.updated (amount, owner_id) at {WHEN} (event up-1)"


def test_pending_leads_survive_a_restart_until_folded() -> None:
    """The rows of lead events not folded yet are what a restarted server merges with (the
    journal's unfolded entries); once folded they are read from the warehouse again, and a
    later event's row of the same lead stays."""

    def entry(seq: int, lead: str, **row: Any) -> Entry:
        rows = {"leads": [{"lead_id": lead, **row}]}
        return Entry(seq, f"e{seq}", "lead.updated", "canonical", WHEN, {}, rows, False)

    first, second, other = (
        entry(1, "L1", source="web"),
        entry(3, "L1", source="ads"),
        entry(2, "L2"),
    )
    pending = PendingLeads([first, other, second])
    assert pending.get("L1") == {"lead_id": "L1", "source": "ads"}
    pending.folded([first, other])
    assert "L2" not in pending and pending.get("L1") == {"lead_id": "L1", "source": "ads"}
    assert pending.folds == 1
    pending.folded([second])
    assert pending.get("L1") is None


def test_a_known_leads_creation_is_merged_and_keeps_its_created_at() -> None:
    known = {"lead_id": "L1", "created_at": "2025-01-01T00:00:00", "source": "web"}
    again = {
        "event_id": "c",
        "type": "lead.created",
        "occurred_at": WHEN,
        "fields": {"lead_id": "L1", "owner_id": "R1"},
    }
    assert resolve_lead(again, known) == {"leads": [{**known, "owner_id": "R1"}]}
    assert resolve_lead(again, None)["leads"][0]["created_at"] == WHEN
    update = {**again, "type": "lead.updated"}
    with pytest.raises(Unapplicable) as refused:
        resolve_lead(update, None)
    assert refused.value.field == "lead_id"
    brought = {**update, "fields": {"lead_id": "L9", "created_at": "2026-01-01"}}
    assert resolve_lead(brought, None)["leads"][0]["created_at"] == "2026-01-01"

"""``serving.events.resolve`` on closed deals: a won or lost deal's stage is history."""

from __future__ import annotations

from typing import Any

import pytest

from serving.events.resolve import Unapplicable, resolve

LOST = {
    "deal_id": "D1",
    "status": "lost",
    "created_at": "2024-01-02T00:00:00",
    "closed_at": "2024-04-22T00:00:00",
    "stage": "Proposal",
    "amount": 1000.0,
    "expected_close_date": "2024-04-30",
}


def event(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": "e1",
        "type": kind,
        "occurred_at": "2026-11-02T10:00:00",
        "fields": {"deal_id": "D1", **fields},
    }


def test_a_stage_change_of_a_closed_deal_is_refused_with_how_to_reopen() -> None:
    with pytest.raises(Unapplicable) as err:
        resolve(event("deal.stage_changed", stage="Negotiation", amount=41000), LOST)
    assert err.value.field == "stage"
    assert "lost (closed 2024-04-22)" in err.value.reason and "'open'" in err.value.reason


def test_reopening_a_closed_deal_moves_its_stage() -> None:
    rows = resolve(event("deal.stage_changed", stage="Negotiation", status="open"), LOST)
    (deal,) = rows["deals"]
    assert (deal["status"], deal["closed_at"], deal["stage"]) == ("open", None, "Negotiation")
    assert rows["stage_history"][0]["changed_at"] == "2026-11-02T10:00:00"


def test_a_closed_deals_amount_correction_updates_its_row_not_its_stage_history() -> None:
    rows = resolve(event("deal.updated", amount=1200.0, name="Acme renewal"), LOST)
    (deal,) = rows["deals"]
    assert (deal["amount"], deal["name"], deal["status"]) == (1200.0, "Acme renewal", "lost")
    assert "stage_history" not in rows


def test_an_open_deals_stage_change_is_stage_history() -> None:
    open_deal = {**LOST, "status": "open", "closed_at": None}
    rows = resolve(event("deal.stage_changed", stage="Negotiation"), open_deal)
    assert rows["stage_history"][0]["stage"] == "Negotiation"


def test_a_new_deal_without_a_team_takes_its_owners_team_and_region() -> None:
    import pandas as pd

    reps = pd.DataFrame(
        {"owner_id": ["R6", "R7"], "team": ["Enterprise", None], "region": ["EMEA", "West"]}
    )
    created = event("deal.created", owner_id="R6", stage="Discovery")
    (deal,) = resolve(created, None, reps)["deals"]
    assert (deal["team"], deal["region"]) == ("Enterprise", "EMEA")
    given = {**created, "fields": {**created["fields"], "team": "SMB"}}
    (deal,) = resolve(given, None, reps)["deals"]
    assert (deal["team"], deal["region"]) == ("SMB", "EMEA")
    teamless = event("deal.created", owner_id="R7")
    (deal,) = resolve(teamless, None, reps)["deals"]
    assert deal.get("team") is None and deal["region"] == "West"


def test_a_crm_close_date_of_a_closed_deal_is_its_close() -> None:
    """A CRM's close date sent alone (Salesforce CloseDate, HubSpot closedate: both arrive as
    expected_close_date) for a deal lost by then is its closed_at, not an expected close; a
    bare date on the day the deal was created is its creation time (as the importers read it,
    so it is not a close before the creation). A canonical event names its column itself."""
    for source in ("salesforce-cdc", "salesforce-outbound", "hubspot"):
        (row,) = resolve(
            event("deal.updated", expected_close_date="2024-05-02"), LOST, None, source=source
        )["deals"]
        assert (row["closed_at"], row["expected_close_date"]) == ("2024-05-02", "2024-04-30")
        same_day = resolve(
            event("deal.updated", expected_close_date="2024-01-02"), LOST, None, source=source
        )
        assert same_day["deals"][0]["closed_at"] == LOST["created_at"]
        cleared = resolve(
            event("deal.updated", expected_close_date=None), LOST, None, source=source
        )
        assert cleared["deals"][0]["closed_at"] == LOST["closed_at"]
    opened = {**LOST, "status": "open", "closed_at": None}
    rows = resolve(
        event("deal.updated", expected_close_date="2024-05-02"), opened, None, source="hubspot"
    )
    assert rows["deals"][0]["expected_close_date"] == "2024-05-02" and "stage_history" in rows
    (canonical,) = resolve(event("deal.updated", expected_close_date="2024-05-02"), LOST)["deals"]
    assert (canonical["closed_at"], canonical["expected_close_date"]) == (
        LOST["closed_at"],
        "2024-05-02",
    )
    closing = event("deal.updated", status="won", closed_at="2024-01-02")
    (won,) = resolve(
        closing, {**opened, "created_at": "2024-01-02T15:00:00"}, None, source="hubspot"
    )["deals"]
    assert won["closed_at"] == "2024-01-02T15:00:00"

"""CRM events in their canonical shape, and the payloads CRMs send mapped to it.

A canonical event is a dict ``{"event_id", "type", "occurred_at", "fields"}`` where ``type`` is
one of ``EVENT_TYPES`` and ``fields`` holds canonical column values (docs/data-model.md) of the
event's table as the CRM sent them (text or numbers; they are parsed and checked by the import
rules, ``serving.events.checks``). Four request bodies are read (docs/events.md):

* canonical: ``{"events": [{"event_id", "type", "occurred_at", "deal" | "activity" | "lead"}]}``
  (or one such event, or a bare list of them);
* a HubSpot webhook batch: a JSON array of ``{"eventId", "portalId", "occurredAt",
  "subscriptionType", "objectId", "propertyName", "propertyValue", …}``;
* Salesforce Change Data Capture events: ``{"payload": {"ChangeEventHeader": {…}, fields…}}``
  as the Pub/Sub API or CometD (``{"data": {"payload": …, "event": {"replayId"}}}``) deliver
  them, one or a list;
* a Salesforce outbound message: the SOAP ``notifications`` envelope (``text/xml``).

Parsing never raises on a bad event: each becomes a ``Parsed`` (an event to check) or an
``Unusable`` (rejected with its field and reason, or ignored — a deletion, a property we do not
map — with the reason).
"""

from __future__ import annotations

import contextlib
import json
import re
import weakref
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from serving.events.checks import epoch_reading, parse_timestamp

EVENT_TYPES = (
    "deal.created",
    "deal.updated",
    "deal.stage_changed",
    "activity.logged",
    "lead.created",
    "lead.updated",
)
TABLE_OF = {
    "deal.created": "deals",
    "deal.updated": "deals",
    "deal.stage_changed": "deals",
    "activity.logged": "activities",
    "lead.created": "leads",
    "lead.updated": "leads",
}
BODY_KEY = {"deals": "deal", "activities": "activity", "leads": "lead"}
ID_FIELD = {"deals": "deal_id", "activities": "deal_id", "leads": "lead_id"}
MAX_ID_CHARS = 256
MAX_EVENTS = 1000
SOURCES = ("canonical", "hubspot", "salesforce-cdc", "salesforce-outbound")


@dataclass(frozen=True)
class Parsed:
    """An event read from the body, to be checked and journaled."""

    index: int
    event_id: str
    type: str
    occurred_at: str
    fields: dict[str, Any]

    @property
    def table(self) -> str:
        return TABLE_OF[self.type]

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.type,
            "occurred_at": self.occurred_at,
            "fields": self.fields,
        }


@dataclass(frozen=True)
class Unusable:
    """An event that is not journaled: rejected (a bad value) or ignored (nothing to do)."""

    index: int
    event_id: str | None
    status: str  # "rejected" | "ignored"
    field: str | None
    reason: str


@dataclass
class Reading:
    """What a body held."""

    source: str
    events: list[Parsed | Unusable] = field(default_factory=list)


class BodyError(ValueError):
    """The body as a whole cannot be read (answered 4xx naming ``field``)."""

    def __init__(self, field: str, reason: str, status: int = 422) -> None:
        super().__init__(reason)
        self.field, self.reason, self.status = field, reason, status


# -- the workspace's CRM value mapping ---------------------------------------------------------
MAPPING_FILE = "mapping.json"  # in $SALESML_HOME/events/


@dataclass(frozen=True)
class CrmMapping:
    """CRM internal ids to the labels the export used, for webhooks that send ids: HubSpot
    sends ``dealstage=contractsent`` and ``hubspot_owner_id=61234567`` where its UI export
    says ``Contract Sent`` and ``Gavin Belson`` (docs/events.md, "HubSpot ids and labels")."""

    hubspot_stages: dict[str, str] = field(default_factory=dict)
    hubspot_owners: dict[str, str] = field(default_factory=dict)


def _id_labels(value: Any, where: str) -> dict[str, str]:
    """``{id: label}`` from a plain object, or from the HubSpot API's own answer saved as is:
    ``GET /crm/v3/pipelines/deals`` (stage ``id`` -> ``label``) or ``GET /crm/v3/owners``
    (``id`` -> "firstName lastName", as the UI export names owners)."""
    if isinstance(value, dict) and isinstance(value.get("results"), list):
        out: dict[str, str] = {}
        for item in value["results"]:
            if not isinstance(item, dict):
                continue
            for stage in item.get("stages") or []:
                if isinstance(stage, dict) and stage.get("id") and stage.get("label"):
                    out[str(stage["id"])] = str(stage["label"])
            if "stages" not in item and item.get("id") is not None:
                name = " ".join(
                    str(item[k]).strip() for k in ("firstName", "lastName") if item.get(k)
                )
                out[str(item["id"])] = name or str(item.get("email") or item["id"])
        return out
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    raise BodyError(
        where,
        f"{where} must be an object of id -> label (or the HubSpot API's answer saved as is)",
        503,
    )


def load_mapping(path: Path) -> CrmMapping:
    """The mapping file (``{"hubspot": {"stages": {...}, "owners": {...}}}``), or an empty
    mapping when there is none. A file that cannot be read is a ``BodyError`` naming it (the
    server's set-up, answered 503) — never silently ignored."""
    if not path.exists():
        return CrmMapping()
    where = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BodyError(
            where, f"{where} is not readable JSON ({exc}); fix or remove it", 503
        ) from None
    hubspot = data.get("hubspot", {}) if isinstance(data, dict) else None
    if not isinstance(hubspot, dict):
        raise BodyError(
            where, f'{where} must be {{"hubspot": {{"stages": ..., "owners": ...}}}}', 503
        )
    return CrmMapping(
        _id_labels(hubspot.get("stages", {}), f"{where}: hubspot.stages"),
        _id_labels(hubspot.get("owners", {}), f"{where}: hubspot.owners"),
    )


_LOADED: dict[Path, tuple[float, CrmMapping]] = {}


def workspace_mapping(home: Path) -> CrmMapping:
    """``$SALESML_HOME/events/mapping.json`` as last read (read again when it changes)."""
    path = home / "events" / MAPPING_FILE
    try:
        stamp = path.stat().st_mtime
    except OSError:
        return CrmMapping()
    cached = _LOADED.get(path)
    if cached is None or cached[0] != stamp:
        cached = (stamp, load_mapping(path))
        _LOADED[path] = cached
    return cached[1]


_STAGES: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def known_stages(history: Any) -> frozenset[str]:
    """The stages of a history (its stage history and deals), once per history object."""
    found = _STAGES.get(history)
    if found is None:
        values: set[str] = set()
        for frame in (history.stage_history, history.deals):
            if "stage" in frame:
                values.update(str(v) for v in frame["stage"].dropna().unique())
        found = _STAGES[history] = frozenset(values)
    return found


FUTURE_SKEW = timedelta(minutes=5)  # clocks differ; beyond this an event is ahead of time


def future_events(reading: Reading, now: datetime) -> dict[int, str]:
    """Per position, a warning for an event dated more than ``FUTURE_SKEW`` after ``now``
    (naive UTC): it is stored (the import bounds allow a year), but the data's as-of follows
    the latest event, so scores, KPIs and reports would be "as of" a time not reached yet."""
    out = {}
    for n, event in enumerate(reading.events):
        if not isinstance(event, Parsed):
            continue
        stamp = parse_timestamp(event.occurred_at)
        if stamp is not None and stamp > now + FUTURE_SKEW:
            out[n] = (
                f"occurred_at {event.occurred_at} is {_ahead(stamp - now)} ahead of the server's "
                f"clock ({now.isoformat(timespec='seconds')}Z); the data's as-of follows the "
                "latest event, so check the CRM's clock or the time zone sent"
            )
    return out


def _ahead(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours / 24:.0f} days" if hours >= 48 else f"{hours:.1f} hours"


def unknown_stages(reading: Reading, known: Any) -> dict[int, str]:
    """Per position in ``reading.events``, a warning for an accepted-to-be event (of any
    source) that moves an open deal to a stage the data (so the model) has never seen: its
    score cannot read it, and would otherwise show "unchanged" without a word."""
    out = {}
    for n, event in enumerate(reading.events):
        if not isinstance(event, Parsed) or not event.type.startswith("deal."):
            continue
        stage = event.fields.get("stage")
        if stage in (None, "") or event.fields.get("status") in ("won", "lost"):
            continue
        if str(stage) not in known:
            hint = (
                "HubSpot webhooks send the stage's internal id: map ids to the labels of "
                f"your export in $SALESML_HOME/events/{MAPPING_FILE} (docs/events.md)"
                if reading.source == "hubspot"
                else "check that the CRM sends the stage names the export has"
                if reading.source != "canonical"
                else "send the stage names the data has (a typo, or a stage renamed in the CRM?)"
            )
            out[n] = (
                f"stage {stage!r} is not a stage of the data the model learned from, so the "
                f"score cannot read it; {hint}"
            )
    return out


_OWNERS: weakref.WeakKeyDictionary[Any, frozenset[str]] = weakref.WeakKeyDictionary()


def known_owners(history: Any) -> frozenset[str]:
    """The owner ids of a history's reps, once per history object."""
    found = _OWNERS.get(history)
    if found is None:
        reps = history.reps
        ids = reps["owner_id"].dropna().astype(str) if "owner_id" in reps else []
        found = _OWNERS[history] = frozenset(ids)
    return found


def unknown_owners(reading: Reading, known: Any) -> dict[int, str]:
    """Per position, a warning for a deal event whose ``owner_id`` is not a rep of the data:
    stored, and (as an import does) the fold gives the owner a placeholder rep, without a name
    or team — so the deal is in no team's KPIs until the reps table is imported."""
    out = {}
    for n, event in enumerate(reading.events):
        if not isinstance(event, Parsed) or not event.type.startswith("deal."):
            continue
        owner = event.fields.get("owner_id")
        if owner in (None, "") or str(owner).strip() in known:
            continue
        out[n] = (
            f"owner_id {str(owner)!r} is not in reps; the deal is kept with a placeholder rep "
            "(no name or team) — import the reps table to fill in its name and team"
            + (
                f", or map HubSpot owner ids in $SALESML_HOME/events/{MAPPING_FILE}"
                if reading.source == "hubspot"
                else ""
            )
        )
    return out


# -- helpers ---------------------------------------------------------------------------------
def _epoch_ms(value: Any) -> str | None:
    """An epoch in milliseconds (HubSpot, Salesforce CDC) as ISO 8601 UTC."""
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    try:
        stamp = datetime.fromtimestamp(number / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return stamp.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def _number_advice(value: Any) -> str:
    """Why a bare number is not a time: a Unix timestamp (named as such, with the time it
    would be) or, for other numbers, an Excel serial date."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return ""
    epoch = epoch_reading(str(value))
    if epoch is not None:
        return f" ({epoch}: send it as ISO 8601)"
    return " (a number like this is an Excel serial date: send the date itself)"


def _check_id(value: Any, where: str) -> str:
    if value is None or (isinstance(value, str) and not value.strip()):
        raise _Reject(where, f"{where} is required")
    if not isinstance(value, str | int):
        raise _Reject(where, f"{where} must be text, got {type(value).__name__}")
    text = str(value).strip()
    if len(text) > MAX_ID_CHARS or re.search(r"[\x00-\x1f\x7f]", text):
        raise _Reject(where, f"{where} must be 1-{MAX_ID_CHARS} characters without controls")
    return text


class _Reject(Exception):  # noqa: N818 - internal signal, turned into an Unusable
    def __init__(self, field: str | None, reason: str, status: str = "rejected") -> None:
        super().__init__(reason)
        self.field, self.reason, self.status = field, reason, status


# -- canonical -------------------------------------------------------------------------------
def _canonical_event(i: int, item: Any) -> Parsed:
    if not isinstance(item, dict):
        raise _Reject("event", "an event is a JSON object")
    raw_id = item.get("event_id")
    if raw_id is not None and not isinstance(raw_id, str):
        # strict: 42 and "42" would be one event to us and two to a sender that tells them
        # apart (HubSpot's numeric eventId is read by its own shape, not this one)
        raise _Reject(
            "event_id",
            f"event_id must be a string, got {type(raw_id).__name__} {raw_id!r}; send it "
            f'quoted ("{raw_id}")',
        )
    event_id = _check_id(raw_id, "event_id")
    kind = item.get("type")
    if kind not in EVENT_TYPES:
        got = "nothing" if kind is None else json.dumps(kind)
        raise _Reject("type", f"type must be one of {', '.join(EVENT_TYPES)}, got {got}")
    occurred = item.get("occurred_at")
    if occurred is None or (isinstance(occurred, str) and not occurred.strip()):
        raise _Reject("occurred_at", "occurred_at is required: when it happened in the CRM")
    if not isinstance(occurred, str):
        raise _Reject(
            "occurred_at",
            f"occurred_at must be a string in ISO 8601 such as 2026-04-01T10:00:00Z, got the "
            f"{'boolean' if isinstance(occurred, bool) else type(occurred).__name__} {occurred!r}"
            + _number_advice(occurred),
        )
    table = TABLE_OF[kind]
    key = BODY_KEY[table]
    body = item.get(key)
    if not isinstance(body, dict):
        raise _Reject(key, f"a {kind} event carries its fields in an object {key!r}")
    unknown = sorted(set(item) - {"event_id", "type", "occurred_at", key})
    if unknown:
        raise _Reject(
            unknown[0],
            f"unknown field {unknown[0]!r} (a {kind} event has event_id, "
            f"type, occurred_at and {key})",
        )
    for name, value in body.items():
        if isinstance(value, dict | list):
            raise _Reject(f"{key}.{name}", f"{key}.{name} must be a plain value")
        _check_word(key, name, value)
    _check_id(body.get(ID_FIELD[table]), f"{key}.{ID_FIELD[table]}")
    return Parsed(i, event_id, kind, occurred.strip(), dict(body))


VOCABULARY = {
    "deal": ("stage", "status", "currency", "deal_type", "lead_source"),
    "activity": ("type",),
    "lead": ("source",),
}
"""Fields whose values are words of a vocabulary (a stage, an activity type, a channel): a
JSON number or boolean there is refused, never coerced — ``7`` is no activity type, and a
sender that means the word "7" quotes it (as ``event_id`` must be a string)."""


def _check_word(key: str, name: str, value: Any) -> None:
    if name not in VOCABULARY.get(key, ()) or value is None or isinstance(value, str):
        return
    what = "boolean" if isinstance(value, bool) else "number"
    shown = json.dumps(value)
    raise _Reject(
        f"{key}.{name}",
        f"{key}.{name} must be a string (a word such as a stage or an activity type), got the "
        f'{what} {shown}; send it quoted ("{shown}") if that is the word',
    )


def read_canonical(body: Any) -> Reading:
    if isinstance(body, dict) and "events" in body:
        items = body["events"]
        if not isinstance(items, list):
            raise BodyError("body.events", "events must be a list of events")
    elif isinstance(body, list):
        items = body
    elif isinstance(body, dict):
        items = [body]
    else:
        raise BodyError("body", "the body must be an event, a list of events or {'events': [...]}")
    return Reading(
        "canonical", [_safely(i, item, _canonical_event) for i, item in enumerate(items)]
    )


def _safely(i: int, item: Any, parse: Any) -> Parsed | Unusable:
    try:
        parsed: Parsed = parse(i, item)
        return parsed
    except _Reject as exc:
        event_id = None
        if isinstance(item, dict):
            raw = item.get("event_id") or item.get("eventId")
            event_id = str(raw) if isinstance(raw, str | int) else None
            portal = item.get("portalId")
            if "eventId" in item and event_id is not None and isinstance(portal, str | int):
                event_id = f"hubspot-{portal}-{event_id}"  # the id its accepted twin gets
        return Unusable(i, event_id, exc.status, exc.field, exc.reason)


# -- HubSpot webhooks ------------------------------------------------------------------------
HUBSPOT_DEAL_PROPERTIES = {
    "dealname": "name",
    "amount": "amount",
    "dealstage": "stage",
    "closedate": "expected_close_date",
    "hubspot_owner_id": "owner_id",
    "dealtype": "deal_type",
    "createdate": "created_at",
    "deal_currency_code": "currency",
}
HUBSPOT_CONTACT_PROPERTIES = {
    "hubspot_owner_id": "owner_id",
    "hs_analytics_source": "source",
}
HUBSPOT_DATES = {"closedate", "createdate"}
HUBSPOT_DEAL_TYPES = {"newbusiness": "new_business", "existingbusiness": "existing_business"}
HUBSPOT_CLOSED = {"closedwon": "won", "closedlost": "lost"}
HUBSPOT_CLOSED_LABELS = {"closed won": "won", "closed lost": "lost"}
HUBSPOT_CONVERTED = {"opportunity", "customer"}


def _hubspot_event(i: int, item: Any, mapping: CrmMapping | None = None) -> Parsed:
    # Fields are named within the event: the answer prefixes its position (events[3].objectId).
    if not isinstance(item, dict):
        raise _Reject("event", "a HubSpot event is a JSON object")
    portal = _check_id(item.get("portalId"), "portalId")
    event_id = f"hubspot-{portal}-{_check_id(item.get('eventId'), 'eventId')}"
    occurred = _epoch_ms(item.get("occurredAt"))
    if occurred is None:
        raise _Reject("occurredAt", "occurredAt must be epoch milliseconds")
    kind = str(item.get("subscriptionType", ""))
    object_id = _check_id(item.get("objectId"), "objectId")
    obj, _, action = kind.partition(".")
    if action in ("deletion", "privacyDeletion", "merge", "restore", "associationChange"):
        raise _Reject(
            None,
            f"{kind} events are not applied (the data model keeps no deletions; "
            "re-import the export to reflect them)",
            "ignored",
        )
    if obj == "deal":
        return _hubspot_deal(i, item, event_id, occurred, object_id, action, mapping)
    if obj == "contact":
        return _hubspot_contact(i, item, event_id, occurred, object_id, action)
    raise _Reject(
        "subscriptionType",
        f"{kind or 'no subscriptionType'} is not a deal or contact event: not applied",
        "ignored",
    )


def _hubspot_deal(
    i: int,
    item: dict[str, Any],
    event_id: str,
    occurred: str,
    deal_id: str,
    action: str,
    mapping: CrmMapping | None = None,
) -> Parsed:
    if action == "creation":
        return Parsed(i, event_id, "deal.created", occurred, {"deal_id": deal_id})
    if action != "propertyChange":
        raise _Reject("subscriptionType", f"deal.{action} is not applied", "ignored")
    prop = str(item.get("propertyName", ""))
    value = item.get("propertyValue")
    column = HUBSPOT_DEAL_PROPERTIES.get(prop)
    if column is None:
        raise _Reject(
            "propertyName",
            f"deal property {prop!r} is not mapped to the "
            f"data model (mapped: {', '.join(HUBSPOT_DEAL_PROPERTIES)})",
            "ignored",
        )
    if prop in HUBSPOT_DATES and value not in (None, ""):
        value = _epoch_ms(value) or value
    if prop == "dealtype" and isinstance(value, str):
        value = HUBSPOT_DEAL_TYPES.get(value.lower(), value)
    mapping = mapping or CrmMapping()
    status = HUBSPOT_CLOSED.get(str(value).lower()) if prop == "dealstage" else None
    if prop == "dealstage" and value is not None:
        value = mapping.hubspot_stages.get(str(value), value)
        status = status or HUBSPOT_CLOSED_LABELS.get(str(value).lower())
    if prop == "hubspot_owner_id" and value not in (None, ""):
        value = mapping.hubspot_owners.get(str(value), value)
    fields: dict[str, Any] = {"deal_id": deal_id, column: value}
    kind = "deal.updated"
    if prop == "dealstage":
        kind = "deal.stage_changed"
        if status is not None:
            fields |= {"status": status, "closed_at": occurred}
    return Parsed(i, event_id, kind, occurred, fields)


def _hubspot_contact(
    i: int, item: dict[str, Any], event_id: str, occurred: str, lead_id: str, action: str
) -> Parsed:
    if action == "creation":
        return Parsed(
            i, event_id, "lead.created", occurred, {"lead_id": lead_id, "created_at": occurred}
        )
    prop = str(item.get("propertyName", ""))
    value = item.get("propertyValue")
    if prop == "lifecyclestage" and str(value).lower() in HUBSPOT_CONVERTED:
        return Parsed(
            i, event_id, "lead.updated", occurred, {"lead_id": lead_id, "converted_at": occurred}
        )
    column = HUBSPOT_CONTACT_PROPERTIES.get(prop)
    if column is None:
        raise _Reject(
            "propertyName",
            f"contact property {prop!r} (value {value!r}) is not mapped to the data model",
            "ignored",
        )
    return Parsed(i, event_id, "lead.updated", occurred, {"lead_id": lead_id, column: value})


def read_hubspot(body: Any, mapping: CrmMapping | None = None) -> Reading:
    if not isinstance(body, list):
        raise BodyError("body", "a HubSpot webhook body is a JSON array of events")

    def parse(i: int, item: Any) -> Parsed:
        return _hubspot_event(i, item, mapping)

    return Reading("hubspot", [_safely(i, item, parse) for i, item in enumerate(body)])


# -- Salesforce --------------------------------------------------------------------------------
SF_OPPORTUNITY = {
    "Id": "deal_id",
    "Name": "name",
    "CreatedDate": "created_at",
    "Amount": "amount",
    "CurrencyIsoCode": "currency",
    "OwnerId": "owner_id",
    "StageName": "stage",
    "CloseDate": "expected_close_date",
    "AccountId": "account_id",
    "LeadSource": "lead_source",
    "Type": "deal_type",
}
SF_LEAD = {
    "Id": "lead_id",
    "CreatedDate": "created_at",
    "LeadSource": "source",
    "OwnerId": "owner_id",
    "ConvertedDate": "converted_at",
    "ConvertedOpportunityId": "deal_id",
}
SF_ACTIVITY = {"Id": "activity_id", "WhatId": "deal_id", "OwnerId": "owner_id"}
SF_DATETIMES = ("CreatedDate", "LastModifiedDate", "SystemModstamp", "ActivityDateTime")
SF_DATES = ("CloseDate", "ConvertedDate", "ActivityDate")
"""The mapped Salesforce fields of type datetime and date: the Pub/Sub API's Avro payloads
carry them as numbers (datetimes in epoch milliseconds, dates in days since 1970-01-01)."""
SF_OPPORTUNITY_PREFIX = "006"


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,15}", value.strip()):
        return int(value.strip())
    return None


def _cdc_numeric_dates(values: dict[str, Any]) -> dict[str, Any]:
    """A CDC payload's datetime and date fields sent as numbers (the Pub/Sub API's Avro
    encoding) as ISO 8601; text (CometD's ISO strings) is left as it is."""
    out = dict(values)
    for name in SF_DATETIMES:
        number = _whole_number(values.get(name))
        if number is not None:
            out[name] = _epoch_ms(number) or values[name]
    for name in SF_DATES:
        number = _whole_number(values.get(name))
        if number is not None and abs(number) < 3_000_000:
            # beyond year 9999 (or before 1): left as sent, and rejected as unreadable
            with contextlib.suppress(OverflowError):
                out[name] = (date(1970, 1, 1) + timedelta(days=number)).isoformat()
    return out


def _sf_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "false": False, "1": True, "0": False}.get(text)


def _sf_opportunity(values: dict[str, Any], occurred: str) -> dict[str, Any]:
    fields = {SF_OPPORTUNITY[k]: v for k, v in values.items() if k in SF_OPPORTUNITY}
    for flag in ("IsWon", "IsClosed"):
        value = values.get(flag)
        if value not in (None, "") and _sf_bool(value) is None:
            # as the importer rejects it: an unreadable flag is no "not closed"
            raise _Reject(flag, f"{flag} must be true or false, got {value!r}")
    won, closed = _sf_bool(values.get("IsWon")), _sf_bool(values.get("IsClosed"))
    stage = str(values.get("StageName", "")).strip().lower()
    if won or stage == "closed won":
        fields["status"] = "won"
    elif closed or stage == "closed lost":
        fields["status"] = "lost"
    elif closed is False:
        fields["status"] = "open"
    if fields.get("status") in ("won", "lost"):
        # As the Salesforce importer reads it: a closed opportunity's CloseDate is the day it
        # closed, not an expectation; as expected_close_date it would leak the outcome's date.
        fields["closed_at"] = values.get("CloseDate") or occurred
        fields["expected_close_date"] = None
    return fields


def _sf_activity(kind: str, values: dict[str, Any], occurred: str) -> dict[str, Any]:
    fields = {SF_ACTIVITY[k]: v for k, v in values.items() if k in SF_ACTIVITY}
    subtype = str(values.get("TaskSubtype") or values.get("Type") or "").strip().lower()
    fields["type"] = (
        {"listemail": "email", "event": "meeting"}.get(subtype)
        or subtype
        or ("meeting" if kind == "Event" else "task")
    )
    fields["occurred_at"] = values.get("ActivityDateTime") or values.get("CreatedDate") or occurred
    return fields


def _sf_record(
    i: int, entity: str, values: dict[str, Any], occurred: str, event_id: str, created: bool
) -> Parsed:
    if entity == "Opportunity":
        fields = _sf_opportunity(values, occurred)
        kind = "deal.created" if created else "deal.updated"
        if not created and "stage" in fields:
            kind = "deal.stage_changed"
        return Parsed(i, event_id, kind, occurred, fields)
    if entity in ("Task", "Event"):
        what = str(values.get("WhatId") or "")
        if not what.startswith(SF_OPPORTUNITY_PREFIX):
            raise _Reject(
                "WhatId",
                f"a {entity} not related to an Opportunity (WhatId "
                f"{what or 'empty'}) is not a deal activity: not applied",
                "ignored",
            )
        return Parsed(
            i, event_id, "activity.logged", occurred, _sf_activity(entity, values, occurred)
        )
    if entity == "Lead":
        fields = {SF_LEAD[k]: v for k, v in values.items() if k in SF_LEAD}
        if created:
            fields.setdefault("created_at", occurred)
        return Parsed(i, event_id, "lead.created" if created else "lead.updated", occurred, fields)
    raise _Reject(
        "entityName",
        f"{entity or 'no entity'} changes are not applied (Opportunity, Task, Event and Lead are)",
        "ignored",
    )


def _cdc_payload(item: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(payload, event)`` of a CDC message in any of its wrappers."""
    if not isinstance(item, dict):
        return {}, {}
    if "data" in item and isinstance(item["data"], dict):
        item = item["data"]
    if "payload" in item and isinstance(item["payload"], dict):
        event = item.get("event") if isinstance(item.get("event"), dict) else {}
        return item["payload"], event
    return item, {}


def _cdc_events(i: int, item: Any) -> list[Parsed | Unusable]:
    payload, _ = _cdc_payload(item)
    header = payload.get("ChangeEventHeader")
    if not isinstance(header, dict):
        return [
            Unusable(
                i,
                None,
                "rejected",
                "payload.ChangeEventHeader",
                "a change event carries a ChangeEventHeader object",
            )
        ]
    change = str(header.get("changeType", ""))
    entity = str(header.get("entityName", ""))
    occurred = _epoch_ms(header.get("commitTimestamp"))
    key = f"{header.get('transactionKey')}-{header.get('sequenceNumber')}"
    ids = header.get("recordIds")
    if occurred is None or not isinstance(ids, list) or not ids:
        return [
            Unusable(
                i,
                None,
                "rejected",
                "payload.ChangeEventHeader",
                "commitTimestamp (epoch ms) and recordIds are required",
            )
        ]
    out: list[Parsed | Unusable] = []
    for record in ids:
        event_id = f"sfcdc-{key}-{record}"
        if change not in ("CREATE", "UPDATE"):
            out.append(
                Unusable(
                    i,
                    event_id,
                    "ignored",
                    "changeType",
                    f"{change} change events "
                    "are not applied; for GAP_ events re-import the records",
                )
            )
            continue
        values = {k: v for k, v in payload.items() if k != "ChangeEventHeader"}
        for nulled in header.get("nulledFields") or []:
            values[nulled] = None
        values["Id"] = record
        values = _cdc_numeric_dates(values)
        try:
            out.append(_sf_record(i, entity, values, occurred, event_id, change == "CREATE"))
        except _Reject as exc:
            out.append(Unusable(i, event_id, exc.status, exc.field, exc.reason))
    return out


def read_salesforce_cdc(body: Any) -> Reading:
    items = body if isinstance(body, list) else [body]
    reading = Reading("salesforce-cdc")
    for i, item in enumerate(items):
        reading.events.extend(_cdc_events(i, item))
    return reading


OUTBOUND_NS = "{http://soap.sforce.com/2005/09/outbound}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _outcome_known(entity: str, values: dict[str, Any]) -> None:
    """An outbound notification is a snapshot of the fields the message selects: a closed
    Opportunity without ``IsWon`` is won or lost only by the default stage names. Another
    closed stage ("Signed") is rejected rather than read as a loss. (A change event leaves
    ``IsWon`` out when it did not change, so this holds for outbound messages only.)"""
    if entity != "Opportunity" or "IsWon" in values or _sf_bool(values.get("IsClosed")) is not True:
        return
    stage = str(values.get("StageName") or "").strip()
    if stage.lower() in ("closed won", "closed lost"):
        return
    raise _Reject(
        "IsWon",
        f"the opportunity is closed (IsClosed true) in stage {stage or '(none)'!r} and the "
        "message has no IsWon, so whether it was won is unknown; add IsWon to the outbound "
        "message's fields",
    )


def read_salesforce_outbound(body: bytes) -> Reading:
    """A Salesforce outbound message (SOAP ``notifications``): one event per Notification."""
    if re.search(rb"<!(DOCTYPE|ENTITY)", body, re.IGNORECASE):
        raise BodyError("body", "XML with a DOCTYPE or entity declarations is not accepted")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BodyError("body", f"not well-formed XML: {exc}") from None
    notes = root.find(f".//{OUTBOUND_NS}notifications")
    if notes is None:
        raise BodyError(
            "body",
            "no notifications element of namespace "
            "http://soap.sforce.com/2005/09/outbound: not a Salesforce outbound message",
        )
    reading = Reading("salesforce-outbound")
    received = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"
    for i, note in enumerate(notes.findall(f"{OUTBOUND_NS}Notification")):
        note_id = (note.findtext(f"{OUTBOUND_NS}Id") or "").strip()
        sobject = note.find(f"{OUTBOUND_NS}sObject")
        if not note_id or sobject is None:
            reading.events.append(
                Unusable(
                    i,
                    note_id or None,
                    "rejected",
                    f"Notification[{i}]",
                    "a Notification carries an Id and an sObject",
                )
            )
            continue
        entity = _local(str(sobject.get(XSI_TYPE, ""))).split(":")[-1]
        values: dict[str, Any] = {}
        for child in sobject:
            nil = child.get(XSI_NIL) == "true"
            values[_local(child.tag)] = None if nil else (child.text or "").strip()
        occurred = values.get("LastModifiedDate") or values.get("SystemModstamp") or received
        created = "CreatedDate" in values
        event_id = f"sfobm-{note_id}"
        try:
            _outcome_known(entity, values)
            reading.events.append(_sf_record(i, entity, values, str(occurred), event_id, created))
        except _Reject as exc:
            reading.events.append(Unusable(i, event_id, exc.status, exc.field, exc.reason))
    if len(reading.events) > MAX_EVENTS:
        raise BodyError("body", f"at most {MAX_EVENTS} notifications per message")
    return reading


# -- which one ---------------------------------------------------------------------------------
def detect(body: Any) -> str:
    """The source of a JSON body: HubSpot, Salesforce CDC or canonical."""
    first = body[0] if isinstance(body, list) and body else body
    if isinstance(first, dict):
        if _looks_like_hubspot(first):
            return "hubspot"
        payload, _ = _cdc_payload(first)
        if isinstance(payload.get("ChangeEventHeader"), dict) or _looks_like_cdc(first):
            return "salesforce-cdc"
    return "canonical"


HUBSPOT_KEYS = ("subscriptionType", "portalId", "eventId", "objectId", "occurredAt")
CANONICAL_KEYS = ("events", "event_id", "type", "occurred_at", "deal", "activity", "lead")


def _looks_like_hubspot(item: dict[str, Any]) -> bool:
    """A HubSpot webhook event, even one missing a key (so its answer names that key, not a
    canonical event's ``event_id``): ``subscriptionType``, or two of HubSpot's own keys and
    none of the canonical shape's."""
    if any(k in item for k in CANONICAL_KEYS):
        return False
    return "subscriptionType" in item or sum(k in item for k in HUBSPOT_KEYS) >= 2


def _looks_like_cdc(item: dict[str, Any]) -> bool:
    """A change event's wrapper (``payload`` object, or CometD's ``data.payload``) without a
    ``ChangeEventHeader`` object: read as one, so the answer names the missing header."""
    if any(k in item for k in CANONICAL_KEYS):
        return False
    inner = item["data"] if isinstance(item.get("data"), dict) else item
    return isinstance(inner.get("payload"), dict) or "ChangeEventHeader" in inner


def read_json(body: Any, source: str | None = None, mapping: CrmMapping | None = None) -> Reading:
    source = source or detect(body)
    if source == "hubspot":
        reading = read_hubspot(body, mapping)
    elif source == "salesforce-cdc":
        reading = read_salesforce_cdc(body)
    elif source == "canonical":
        reading = read_canonical(body)
    else:
        raise BodyError(
            "query.source",
            f"a JSON body is one of canonical, hubspot, salesforce-cdc; got {source!r}",
        )
    if len(reading.events) > MAX_EVENTS:
        raise BodyError("body", f"at most {MAX_EVENTS} events per request", 413)
    return reading

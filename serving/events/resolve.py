"""An event turned into the canonical rows it writes.

A deal event may carry a few fields (HubSpot sends one property per event): it is merged with
the deal as it stands, and the merged row replaces the deal's row (the warehouse upserts by
key). A change of stage, amount or expected close date is also a stage change stamped at the
event's time — the stage history is where the features read time-varying fields from
(docs/features.md), so a score as of a later date sees it and one as of an earlier date does
not. An activity gets the event id as its ``activity_id`` when it has none, so the same
activity sent twice is one row.

A CRM's close date (Salesforce ``CloseDate``, HubSpot ``closedate``, sent as
``expected_close_date``) is read against the deal as it stands when the event arrives: the
expected close of an open deal, ``closed_at`` of a won or lost one (``_crm_close_date``).

``resolve`` is pure: the same event, current deal and source give the same rows.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from salesml.schemas import ATTRIBUTE_PREFIX, TABLES

STAGE_FIELDS = ("stage", "amount", "expected_close_date")
CRM_SOURCES = ("hubspot", "salesforce-cdc", "salesforce-outbound")
"""Sources whose deal events carry the CRM's one close date (Salesforce ``CloseDate``, HubSpot
``closedate``) as ``expected_close_date``: the expected close of an open deal, the close of a
closed one (as the importers read it)."""
ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
DEAL_COLUMNS = frozenset(TABLES["deals"].column_names)

Rows = dict[str, list[dict[str, Any]]]


class Unapplicable(Exception):  # noqa: N818 - a rejection with its field, not a crash
    """The event cannot apply to the data as it stands (field and reason)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field, self.reason = field, reason


def _same(name: str, a: Any, b: Any) -> bool:
    if a in (None, "") or b in (None, ""):
        return a in (None, "") and b in (None, "")
    if name == "amount":
        try:
            return float(a) == float(b)
        except (TypeError, ValueError, OverflowError):  # 10**400 is no double: compare as sent
            return str(a) == str(b)
    if name == "expected_close_date":
        return str(a).strip()[:10] == str(b).strip()[:10]
    return str(a).strip() == str(b).strip()


def _deal_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Canonical deal columns as given; other fields become custom attributes."""
    out = {}
    for name, value in fields.items():
        key = (
            name
            if name in DEAL_COLUMNS or name.startswith(ATTRIBUTE_PREFIX)
            else (ATTRIBUTE_PREFIX + name)
        )
        out[key] = value
    return out


def _refuse_moving_a_closed_deal(
    deal_id: str, current: dict[str, Any], fields: dict[str, Any]
) -> None:
    """A won or lost deal's stage is history: a stage change that does not reopen it (or a
    new stage, amount or close date riding on one) would be written after it closed and read by
    the features as if it were still moving. Its name, owner or attributes may still change."""
    status = current.get("status")
    if status not in ("won", "lost") or "status" in fields:
        return
    if "stage" in fields and not _same("stage", current.get("stage"), fields["stage"]):
        closed = str(current.get("closed_at") or "")[:10]
        raise Unapplicable(
            "stage",
            f"deal {deal_id!r} is {status}{f' (closed {closed})' if closed else ''}; its stage "
            "cannot change while it is closed: send the event with status 'open' to reopen it",
        )


def _owner_defaults(row: dict[str, Any], reps: Any) -> None:
    """A deal with an owner and no team (or region) takes its rep's, as the schema says
    (``team``: "defaults to the owner's team") and as dim_deal and the report read it; in
    place. ``reps`` is the reps table (a DataFrame with owner_id, team, region) or None."""
    owner = row.get("owner_id")
    wanted = [c for c in ("team", "region") if row.get(c) in (None, "")]
    if reps is None or owner in (None, "") or not wanted or len(reps) == 0:
        return
    match = reps[reps["owner_id"].astype(str) == str(owner).strip()]
    if match.empty:
        return
    rep = match.iloc[0]
    for column in wanted:
        value = rep.get(column)
        if isinstance(value, str) and value.strip():
            row[column] = value


def _close_day(value: Any, created: Any) -> Any:
    """A CRM close date as ``closed_at``, as the importers read it
    (``salesml.importers._recode.day_after_created``): a bare date on the day the deal was
    created (or the day before, as UTC shifts it) is its creation time, not a close before it."""
    text, made = str(value or "").strip(), str(created or "").strip()
    if not ISO_DAY.fullmatch(text) or not ISO_DAY.match(made[:10]):
        return value
    try:
        day, made_day = date.fromisoformat(text), date.fromisoformat(made[:10])
    except ValueError:
        return value
    return created if made_day - timedelta(days=1) <= day <= made_day else value


def _crm_close_date(
    fields: dict[str, Any], current: dict[str, Any] | None, source: str
) -> dict[str, Any]:
    """A CRM event's close date read against the deal it applies to (in place, returned).

    A change event sends what changed: a CloseDate (HubSpot ``closedate``) alone, for a deal
    that is won or lost when the event arrives, is the day it closed — ``closed_at``, never an
    expected close date (which would spell out the outcome's date). For a deal that is open when
    it arrives it is the expected close date, whatever happens to the deal later. A closing
    event's own close date (``status`` won/lost with ``closed_at``) is read the same way."""
    if source not in CRM_SOURCES:
        return fields
    created = fields.get("created_at") or (current or {}).get("created_at")
    if "status" in fields:
        if fields["status"] in ("won", "lost") and fields.get("closed_at") not in (None, ""):
            fields["closed_at"] = _close_day(fields["closed_at"], created)
        return fields
    if current is None or current.get("status") not in ("won", "lost"):
        return fields
    if "expected_close_date" not in fields:
        return fields
    value = fields.pop("expected_close_date")
    if value not in (None, ""):  # a close date cleared on a closed deal leaves its close as is
        fields["closed_at"] = _close_day(value, created)
    return fields


def resolve_deal(
    event: dict[str, Any],
    current: dict[str, Any] | None,
    reps: Any = None,
    source: str = "canonical",
) -> Rows:
    fields = _crm_close_date(_deal_fields(event["fields"]), current, source)
    kind, occurred = event["type"], event["occurred_at"]
    deal_id = str(fields["deal_id"])
    if kind == "deal.stage_changed" and fields.get("stage") in (None, ""):
        raise Unapplicable("stage", "a deal.stage_changed event names the stage entered")
    if current is None:
        if kind != "deal.created" and "created_at" not in fields:
            raise Unapplicable(
                "deal_id",
                f"deal {deal_id!r} is not known; send a deal.created event (or the deal's "
                "created_at) first",
            )
        row = {"status": "open", "created_at": occurred, **fields}
        previous: dict[str, Any] = {}
    else:
        _refuse_moving_a_closed_deal(deal_id, current, fields)
        row = {**current, **fields}
        previous = current
    _owner_defaults(row, reps)
    status = row.get("status")
    if "status" in fields and status in ("won", "lost") and row.get("closed_at") in (None, ""):
        row["closed_at"] = occurred
    if "status" in fields and status == "open":
        row["closed_at"] = None
    rows: Rows = {"deals": [row]}
    moved = any(not _same(f, previous.get(f), row.get(f)) for f in STAGE_FIELDS)
    # A correction of a closed deal's amount (a won deal's final figure) updates its row; it is
    # not a stage change after the close.
    moved = moved and not (previous.get("status") in ("won", "lost") and status in ("won", "lost"))
    if row.get("stage") not in (None, "") and (current is None or moved):
        changed_at = row.get("created_at") if current is None else occurred
        rows["stage_history"] = [
            {
                "deal_id": deal_id,
                "stage": row["stage"],
                "changed_at": changed_at,
                "amount": row.get("amount"),
                "expected_close_date": row.get("expected_close_date"),
            }
        ]
    return rows


def resolve_lead(event: dict[str, Any], current: dict[str, Any] | None) -> Rows:
    """A lead event merged with the lead as it stands (``current``: its latest journaled row,
    else the warehouse's; ``None``: unknown), as a deal event is: ``lead.updated`` carries the
    fields that changed, so the merged row is what is checked and written. An update of a lead
    the server does not know is refused unless it brings the lead's ``created_at``."""
    fields = dict(event["fields"])
    if current is None:
        if event["type"] == "lead.updated" and fields.get("created_at") in (None, ""):
            raise Unapplicable(
                "lead_id",
                f"lead {str(fields['lead_id'])!r} is not known; send a lead.created event (or "
                "the lead's created_at) first",
            )
        row = {"created_at": event["occurred_at"], **fields}
    else:
        row = {**current, **fields}
    return {"leads": [row]}


def resolve(
    event: dict[str, Any],
    current_deal: dict[str, Any] | None,
    reps: Any = None,
    *,
    current_lead: dict[str, Any] | None = None,
    source: str = "canonical",
) -> Rows:
    """The rows ``event`` writes, given the deal it names as it stands (``None``: unknown),
    the reps table (a deal without a team takes its owner's team and region), for a lead
    event the lead as it stands (``None``: unknown), and the body's source (a CRM's close date
    is read against the deal's status: ``_crm_close_date``)."""
    kind = event["type"]
    fields = dict(event["fields"])
    if kind.startswith("deal."):
        return resolve_deal(event, current_deal, reps, source)
    if kind == "activity.logged":
        fields.setdefault("activity_id", event["event_id"])
        fields.setdefault("occurred_at", event["occurred_at"])
        return {"activities": [fields]}
    return resolve_lead(event, current_lead)


def deal_ids(rows: Rows) -> set[str]:
    """The deals whose score the rows can move."""
    out: set[str] = set()
    for table in ("deals", "stage_history", "activities"):
        out.update(str(r["deal_id"]) for r in rows.get(table, []) if r.get("deal_id"))
    return out


def _content(event: dict[str, Any], source: str) -> dict[str, Any]:
    """What a resend of ``event`` must repeat: its type, time and fields. A Salesforce
    outbound message without LastModifiedDate is stamped with its arrival, so a retry of it
    differs there by design: its time (and a field holding it) is left out."""
    occurred = event.get("occurred_at")
    fields = dict(event.get("fields") or {})
    if source == "salesforce-outbound":
        fields = {k: v for k, v in fields.items() if v != occurred}
        occurred = None
    return {"type": event.get("type"), "occurred_at": occurred, "fields": fields}


def conflict(stored: dict[str, Any], sent: dict[str, Any], source: str) -> tuple[str, str] | None:
    """``(field, why)`` when ``sent`` is not a resend of the journaled event of the same id
    (``None``: it is, a ``duplicate``). Fields compare as JSON values: ``42000`` and
    ``"42000"`` differ, as the sender wrote them differently."""
    was, now = _content(stored, source), _content(sent, source)
    if was == now:
        return None
    for name in ("type", "occurred_at"):
        if was[name] != now[name]:
            return name, f"{name} {_shown(was[name])} then, {_shown(now[name])} now"
    names = sorted(set(was["fields"]) | set(now["fields"]))
    diff = [n for n in names if was["fields"].get(n, _MISSING) != now["fields"].get(n, _MISSING)]
    shown = "; ".join(
        f"{n} {_shown(was['fields'].get(n, _MISSING))} then, "
        f"{_shown(now['fields'].get(n, _MISSING))} now"
        for n in diff[:3]
    )
    body = BODY_KEYS.get(str(now["type"]).split(".")[0], "fields")
    return f"{body}.{diff[0]}", shown + (" …" if len(diff) > 3 else "")


_MISSING = object()
BODY_KEYS = {"deal": "deal", "activity": "activity", "lead": "lead"}


def _shown(value: Any) -> str:
    return "(absent)" if value is _MISSING else "null" if value is None else repr(value)


def resent(
    event_id: str, stored: dict[str, Any], sent: dict[str, Any], source: str
) -> tuple[str, str | None, str | None]:
    """``(status, field, reason)`` of an event whose id is already journaled: ``duplicate``
    (the same event again: a retry, a replay) or ``conflict`` (another body under the id:
    not stored, and said, so a CRM mapping that reuses ids shows up)."""
    found = conflict(stored, sent, source)
    if found is None:
        return "duplicate", None, None
    field, why = found
    return (
        "conflict",
        field,
        f"event id {event_id!r} is already stored with another body ({why}); the first one "
        "stands and this one was not stored. An event id names one change: send a new "
        "change under a new id",
    )

"""The answer to a Salesforce outbound message (docs/events.md, "Salesforce outbound messages").

Salesforce understands two answers only: the SOAP ``notificationsResponse`` with
``<Ack>true</Ack>`` (delivered) and anything else, which it retries with a growing interval
(at most two hours apart) for 24 hours, then drops; the admin sees the pending message and its
delivery failure reason under Setup > Outbound Messages. One Ack covers the whole message (up
to 100 notifications), so a message with a rejected notification cannot be acknowledged in
part. We answer:

* every notification stored, a duplicate, ignored or in conflict → ``<Ack>true</Ack>`` (200);
* any notification rejected → a SOAP fault (HTTP 500, as SOAP 1.1 requires of a fault,
  ``faultcode`` ``soapenv:Client``: the data is at fault, not the server) whose
  ``faultstring`` names each rejected notification id, field and reason, so the admin reads it
  where delivery failures are shown. Salesforce retries, and a retry carries the record's
  *current* fields, so fixing the record in Salesforce is enough; the notifications stored on
  the first delivery come back as duplicates (idempotent by event id), nothing is applied
  twice.

Rejected and conflicting notifications are also written to
``$SALESML_HOME/rejects/salesforce-outbound.csv`` (once per notification, field and reason),
so a notification Salesforce gives up on after 24 hours is still on record here.
"""

from __future__ import annotations

import csv
import logging
import threading
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from serving.api.live import EventResult

log = logging.getLogger("salesml.events")
XML = "text/xml; charset=utf-8"
SOAP_ACK = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    b"<soapenv:Body>"
    b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    b"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"
)
REJECTS_FILE = "salesforce-outbound.csv"  # in $SALESML_HOME/rejects/
REJECTS_COLUMNS = ["received_at", "notification_id", "status", "field", "reason"]
SHOWN = 5  # rejected notifications named in the faultstring; the rest are in the file
_write_lock = threading.Lock()


def notification_id(result: EventResult) -> str:
    """The Salesforce Notification Id of a result (``Notification[<index>]`` without one)."""
    if result.event_id:
        return result.event_id.removeprefix("sfobm-")
    return f"Notification[{result.index}]"


async def outbound_answer(results: list[EventResult], home: Path) -> Response:
    """Ack true when no notification was rejected, else a SOAP fault naming the rejected
    ones; rejected and conflicting notifications are recorded in the rejects file first."""
    rejected = [r for r in results if r.status == "rejected"]
    kept = [r for r in results if r.status in ("rejected", "conflict")]
    if kept:
        await run_in_threadpool(record_rejects, home, kept)
    if not rejected:
        return Response(SOAP_ACK, media_type=XML)
    stored = len(results) - len(rejected)
    log.warning(
        "salesforce outbound message faulted: %d of %d notifications rejected (%s)",
        len(rejected),
        len(results),
        ", ".join(notification_id(r) for r in rejected),
    )
    return Response(fault(rejected, stored), status_code=500, media_type=XML)


def fault_text(rejected: list[EventResult], stored: int) -> str:
    """The faultstring: what was rejected and why, and what happens next."""
    named = "; ".join(
        f"{notification_id(r)} {r.field or 'notification'}: {r.reason or 'rejected'}"
        for r in rejected[:SHOWN]
    )
    more = len(rejected) - SHOWN
    return (
        f"salesml rejected {len(rejected)} of {len(rejected) + stored} notifications: {named}"
        + (f"; and {more} more (in rejects/{REJECTS_FILE})" if more > 0 else "")
        + f". The other {stored} are stored (or ignored) and a retry applies nothing twice. "
        "Fix the record in Salesforce: the next retry sends its current fields."
    )


def fault(rejected: list[EventResult], stored: int) -> bytes:
    """A SOAP 1.1 fault; ``detail`` lists every rejected notification."""
    detail = "".join(
        f"<rejected notification={quoteattr(notification_id(r))} "
        f"field={quoteattr(r.field or 'notification')}>{escape(r.reason or 'rejected')}"
        "</rejected>"
        for r in rejected
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
        "<soapenv:Body><soapenv:Fault><faultcode>soapenv:Client</faultcode>"
        f"<faultstring>{escape(fault_text(rejected, stored))}</faultstring>"
        f'<detail><notifications xmlns="urn:salesml:events">{detail}</notifications></detail>'
        "</soapenv:Fault></soapenv:Body></soapenv:Envelope>"
    ).encode()


def record_rejects(home: Path, results: list[EventResult]) -> Path:
    """Append each (notification, status, field, reason) not yet in the rejects file."""
    path = home / "rejects" / REJECTS_FILE
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with _write_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        seen: set[tuple[str, ...]] = set()
        if path.exists():
            with path.open(encoding="utf-8", newline="") as fh:
                seen = {tuple(row[1:]) for row in list(csv.reader(fh))[1:] if len(row) == 5}
        rows = []
        for r in results:
            key = (notification_id(r), r.status, r.field or "", r.reason or "")
            if key not in seen:
                seen.add(key)
                rows.append([now, *key])
        if rows:
            new = not path.exists()
            with path.open("a", encoding="utf-8", newline="") as fh:
                writer = csv.writer(fh)
                if new:
                    writer.writerow(REJECTS_COLUMNS)
                writer.writerows(rows)
    return path

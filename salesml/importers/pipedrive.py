"""Pipedrive: a deals export (Deals list view → … → Export filter results, CSV or Excel saved
as CSV).

Accepts the file, or a folder holding exactly one CSV with "deal" in its name
(``deals-12345678-42.csv``). Pipedrive writes every column as ``<record> - <field>``: the
deal's own fields start with ``Deal - `` (``Deal - Title``, ``Deal - Value``); columns of the
linked organization or person (``Organization - Name``, ``Person - Email``) are left out with a
warning.

How the export is read:

- ``Deal - ID`` is the deal id; ``Deal - Title`` its name.
- ``Deal - Status`` decides: ``open``, ``won`` or ``lost`` (any language's case). ``deleted``
  and anything else is rejected with the value, so every row is accounted for.
- ``Deal - Won time`` / ``Deal - Lost time`` (``2024-03-05 14:22:10``) are ``closed_at`` of a
  won / lost deal (``Deal - Deal closed on`` when they are empty); ``Deal - Expected close
  date`` is the open deal's ``expected_close_date``.
- ``Deal - Value`` and ``Deal - Currency`` are the amount and currency; ``Deal - Owner`` (a
  name) is the owner and a rep; ``Deal - Organization`` the account; ``Deal - Source channel``
  (or ``Source origin``, ``Lead source``) the lead source; ``Deal - Pipeline`` the attribute
  ``pipeline``; ``Deal - Stage`` the stage.
- Every other ``Deal - `` column, custom fields included, becomes a custom attribute named
  without the prefix. Fields Pipedrive derives from the outcome or from activity up to the
  export (``Lost reason``, ``Probability``, ``Weighted value``, ``Update time``, ``Last stage
  change``, activity dates and counts) are left out with a warning.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from salesml.importers import _recode as rc
from salesml.importers._crm_deals import DealsSpec, deals_file, find_columns, read_deals
from salesml.importers.base import ImportBatch, read_tabular, with_source_rows

STATUSES = ("open", "won", "lost")
P = "Deal - "
SPEC = DealsSpec(
    format="pipedrive",
    product="Pipedrive",
    fields={
        "deal_id": (f"{P}ID", "Deal ID", "ID"),
        "name": (f"{P}Title", "Title"),
        "stage": (f"{P}Stage", "Stage"),
        "status": (f"{P}Status", "Status"),
        "amount": (f"{P}Value", "Value"),
        "currency": (f"{P}Currency", f"{P}Currency of Value", "Currency"),
        "owner": (f"{P}Owner", "Owner"),
        "account": (f"{P}Organization", "Organization"),
        "lead_source": (f"{P}Source channel", f"{P}Source origin", f"{P}Lead source"),
        "created": (f"{P}Deal created", "Deal created", f"{P}Add time"),
        "close": (f"{P}Deal closed on", "Deal closed on", f"{P}Close time"),
        "expected_close": (f"{P}Expected close date", "Expected close date"),
        "won_time": (f"{P}Won time", "Won time"),
        "lost_time": (f"{P}Lost time", "Lost time"),
        "pipeline": (f"{P}Pipeline", "Pipeline"),
    },
    required={
        "deal_id": f"{P}ID",
        "status": f"{P}Status",
        "created": f"{P}Deal created",
    },
    date_formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"),
    leaky=tuple(
        P + f
        for f in (
            "Lost reason",
            "Probability",
            "Weighted value",
            "Weighted value currency",
            "Update time",
            "Last stage change",
            "Stage change time",
            "Next activity date",
            "Last activity date",
            "Last email received",
            "Last email sent",
            "Total activities",
            "Done activities",
            "Activities to do",
            "Email messages count",
            "Product quantity",
            "Product amount",
            "Products count",
            "Rotten time",
            "Deal closed on",
            "Close time",
        )
    ),
    ignored=tuple(
        P + f
        for f in ("Creator", "Contact person", "Visible to", "Followers", "Participants", "Label")
    ),
    attribute_prefix=P,
    foreign_prefixes=("Organization - ", "Person - ", "Product - ", "Lead - "),
    missing_hint=(
        "export deals from Pipedrive's Deals list view (… → Export filter results) with the "
        "default columns"
    ),
    date_hint="Pipedrive dates look like 2024-03-05 14:22:10 or 2024-04-30",
    status_hint="Pipedrive 'Deal - Status' is open, won or lost; deleted deals are not imported",
)


def read_pipedrive(path: Path) -> ImportBatch:
    """Read a Pipedrive deals export (file or folder) into deals and reps."""
    file = deals_file(path, SPEC)
    data = with_source_rows(read_tabular(file))
    cols = find_columns(data, SPEC, file)
    raw = rc.text(data, cols["status"])
    key = pc.utf8_lower(raw)
    # Unknown values (deleted…) pass through as the status: the pipeline rejects them by value.
    status = pc.if_else(pc.fill_null(pc.is_in(key, pa.array(STATUSES)), False), key, raw)
    warnings: list[str] = []
    # "Deal closed on" only stands in when the won/lost time is empty; it is not an attribute.
    sources = read_deals(data, cols, status, SPEC, str(file), warnings)
    return ImportBatch("pipedrive", str(path), sources, warnings)

"""Zoho CRM: a Deals module export (Setup → Data Administration → Export, or a list view's
Export), as CSV.

Accepts the file, or a folder holding exactly one CSV with "deal" in its name
(``Deals_2024_06_03.csv``). Column labels are the module's field labels, matched ignoring case
and punctuation.

How the export is read:

- ``Record Id`` (``zcrm_5725767000000427001``) is the deal id.
- status comes from ``Stage``: "Closed Won" → won; "Closed Lost" and "Closed-Lost to
  Competition" → lost; any other stage → open (the stage stays). Stages outside Zoho's default
  pipeline are listed in a warning. A deal without a stage is rejected.
- ``Closing Date`` is ``closed_at`` of a closed deal (a bare date: on the day of ``Created
  Time`` it reads as that time) and ``expected_close_date`` of an open one.
- ``Created Time`` looks like ``2024-03-05 14:22:10`` (the exporting user's time zone, stored
  as given); ``Mar 05, 2024 02:22 PM`` is read too.
- ``Deal Owner`` (a name) becomes ``owner_id`` and a rep with that name; ``Account Name.id``
  (else ``Account Name``) is the account, ``Lead Source`` the lead source, ``Type`` the deal
  type, ``Pipeline`` the attribute ``pipeline``.
- Custom fields become custom attributes. Fields Zoho derives from the stage or the outcome
  (``Probability (%)``, ``Expected Revenue``, ``Reason For Loss``, the sales-cycle durations,
  ``Last Activity Time``, ``Modified Time``) are left out with a warning, and so are system
  fields (``Created By``, ``Modified By``, ``Tag``, ``Locked``…).
"""

from __future__ import annotations

from pathlib import Path

from salesml.importers import _recode as rc
from salesml.importers._crm_deals import (
    DealsSpec,
    deals_file,
    find_columns,
    labelled_status,
    read_deals,
    unusual_labels,
)
from salesml.importers.base import ImportBatch, read_tabular, with_source_rows

WON = ("Closed Won",)
LOST = ("Closed Lost", "Closed-Lost to Competition", "Closed Lost to Competition")
DEFAULT_STAGES = (
    *WON,
    *LOST,
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Identify Decision Makers",
    "Id. Decision Makers",
    "Proposal/Price Quote",
    "Negotiation/Review",
    "Perception Analysis",
)
SPEC = DealsSpec(
    format="zoho",
    product="Zoho CRM",
    fields={
        "deal_id": ("Record Id", "Deal Id", "Id"),
        "name": ("Deal Name",),
        "stage": ("Stage",),
        "amount": ("Amount",),
        "currency": ("Currency",),
        "owner": ("Deal Owner",),
        "owner_id": ("Deal Owner.id", "Deal Owner Id"),
        "account": ("Account Name",),
        "account_id": ("Account Name.id", "Account Id"),
        "lead_source": ("Lead Source",),
        "deal_type": ("Type",),
        "created": ("Created Time",),
        "close": ("Closing Date",),
        "pipeline": ("Pipeline",),
    },
    required={
        "deal_id": "Record Id",
        "stage": "Stage",
        "created": "Created Time",
        "close": "Closing Date",
    },
    date_formats=("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%b %d, %Y %I:%M %p", "%b %d, %Y"),
    leaky=(
        "Probability (%)",
        "Probability",
        "Expected Revenue",
        "Reason For Loss",
        "Sales Cycle Duration",
        "Overall Sales Duration",
        "Lead Conversion Time",
        "Last Activity Time",
        "Modified Time",
        "Next Step",
        "Closed Time",
    ),
    ignored=(
        "Created By",
        "Modified By",
        "Tag",
        "Locked",
        "Layout",
        "Description",
        "Contact Name",
        "Contact Name.id",
        "Created By.id",
        "Modified By.id",
        "Change Log Time",
        "Exchange Rate",
    ),
    missing_hint=(
        "export the Deals module from Zoho CRM (Setup → Data Administration → Export → Deals) "
        "with its default fields"
    ),
    date_hint="Zoho dates look like 2024-03-05 14:22:10 or 2024-04-30",
    status_hint="Zoho CRM status comes from Stage, which must be filled",
)


def read_zoho(path: Path) -> ImportBatch:
    """Read a Zoho CRM Deals export (file or folder) into deals and reps."""
    file = deals_file(path, SPEC)
    data = with_source_rows(read_tabular(file))
    cols = find_columns(data, SPEC, file)
    stage = rc.text(data, cols["stage"])
    warnings: list[str] = []
    note = unusual_labels(stage, DEFAULT_STAGES, "stages", str(file))
    if note:
        warnings.append(note)
    status = labelled_status(stage, WON, LOST)
    sources = read_deals(data, cols, status, SPEC, str(file), warnings)
    return ImportBatch("zoho", str(path), sources, warnings)

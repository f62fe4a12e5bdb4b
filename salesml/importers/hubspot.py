"""HubSpot: a deals export, as downloaded from the deals view or pulled through the API.

Accepts one CSV/Parquet file, or a folder holding exactly one file with "deal" in its name
(``hubspot-crm-exports-all-deals-2024-06-03.csv``). Headers may be the UI labels (``Record
ID``, ``Deal Stage``, ``Close Date``, ``Deal owner``) or the internal property names
(``hs_object_id``, ``dealstage``, ``closedate``, ``hubspot_owner_id``); they are matched
case-insensitively, ignoring spaces and punctuation. Companies, contacts and engagements
exports are not read.

How the export is read:

- status: "Closed Won" / ``closedwon`` → won, "Closed Lost" / ``closedlost`` → lost, any other
  stage → open. When the export has ``hs_is_closed_won`` / ``hs_is_closed`` ("Is Closed Won",
  "Is Deal Closed?"), those decide, so custom closed stages of other pipelines are read right.
- ``Close Date`` is ``closed_at`` of a closed deal and ``expected_close_date`` of an open one.
- Every filled "Date entered <stage>" cell (``Date entered "Contract Sent (Sales Pipeline)"`` or
  ``hs_date_entered_contractsent``) becomes a stage_history row. The pipeline's name in
  parentheses is dropped so the stage matches the deal's ``Deal Stage``.
- ``Pipeline`` becomes the categorical custom attribute ``pipeline``; other unknown columns
  become custom attributes too. Columns HubSpot computes from the stage changes or the outcome
  ("Date exited …", "Days to close", "Closed Lost Reason", "Deal probability", "Forecast
  amount", last-activity dates) are reported and left out: they would leak the outcome.
- ``Deal owner`` (a name in UI exports) or ``hubspot_owner_id`` becomes ``owner_id``. When a
  name is known, a rep is created with it; owners without one get placeholder reps.
- Epoch-millisecond dates from older API exports are read as UTC timestamps.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from salesml.errors import MissingColumnsError
from salesml.importers import _recode as rc
from salesml.importers.base import (
    SOURCE_ROW,
    AttributeKind,
    ImportBatch,
    SourceTable,
    owner_reps,
    read_tabular,
    with_source_rows,
)
from salesml.schemas import ATTRIBUTE_PREFIX

FIELDS: dict[str, tuple[str, ...]] = {
    "deal_id": ("Record ID", "hs_object_id", "Deal ID", "dealId", "id"),
    "name": ("Deal Name", "dealname"),
    "stage": ("Deal Stage", "dealstage"),
    "pipeline": ("Pipeline",),
    "amount": ("Amount",),
    "close": ("Close Date", "closedate"),
    "created": ("Create Date", "createdate", "hs_createdate"),
    "owner_id": ("hubspot_owner_id", "Deal owner ID", "Owner ID"),
    "owner_name": ("Deal owner", "Owner"),
    "deal_type": ("Deal Type", "dealtype"),
    "currency": ("Currency", "deal_currency_code", "Currency code"),
    "lead_source": (
        "Original Source Type",
        "hs_analytics_source",
        "Original Traffic Source",
        "Original Source",
        "Lead Source",
    ),
    "account_id": (
        "Associated Company IDs",
        "Associated Company ID",
        "associatedcompanyid",
        "Associated Company IDs (Primary)",
        "Associated Company",
    ),
    "is_closed_won": ("hs_is_closed_won", "Is Closed Won"),
    "is_closed": ("hs_is_closed", "Is Deal Closed?", "Is closed"),
}
# Computed by HubSpot from the deal's stage changes, its outcome, or activity up to the export
# date: as features they would leak what happened later.
LEAKY_EXACT = frozenset(
    rc.header_key(c)
    for c in (
        "Days to close",
        "hs_days_to_close",
        "hs_is_closed_lost",
        "Is Closed Lost",
        "Deal probability",
        "hs_deal_stage_probability",
        "Forecast probability",
        "hs_forecast_probability",
        "Forecast amount",
        "hs_forecast_amount",
        "Weighted amount",
        "hs_projected_amount",
        "Closed Won Reason",
        "closed_won_reason",
        "Closed Lost Reason",
        "closed_lost_reason",
        "hs_closed_amount",
        "Closed Deal Amount",
        "hs_closed_amount_in_home_currency",
        "Closed Deal Amount In Home Currency",
        "Amount in company currency",
        "amount_in_home_currency",
        "Last Modified Date",
        "hs_lastmodifieddate",
        "Last Activity Date",
        "notes_last_updated",
        "Last Contacted",
        "notes_last_contacted",
        "Next Activity Date",
        "notes_next_activity_date",
        "Number of Sales Activities",
        "num_notes",
        "Number of times contacted",
        "num_contacted_notes",
        "Deal Description",
        "description",
    )
)
LEAKY_PREFIXES = tuple(
    rc.header_key(p)
    for p in (
        "Date exited",
        "hs_date_exited_",
        "hs_v2_date_exited_",
        "Cumulative time in",
        "hs_v2_cumulative_time_in_",
        "Latest time in",
        "hs_v2_latest_time_in_",
        "Time in",
        "hs_time_in_",
        "hs_v2_time_in_",
    )
)
ASSOCIATIONS = tuple(
    rc.header_key(p) for p in ("Associated", "num_associated", "Number of associated")
)
DATE_ENTERED_LABEL = re.compile(r'^\s*date entered\s*[:"]?\s*(.+?)\s*"?\s*$', re.IGNORECASE)
DATE_ENTERED_INTERNAL = re.compile(r"^\s*hs_(?:v2_)?date_entered_(.+?)\s*$", re.IGNORECASE)
PARENTHETICAL = re.compile(r"^(.*\S)\s*\(([^()]*)\)$")
DEAL_TYPES = {"newbusiness": "new_business", "existingbusiness": "existing_business"}
MISSING_HINT = (
    "export deals from HubSpot (Deals → Export, or the API with dealstage, createdate and "
    "closedate); companies and contacts exports are not read"
)
DATE_HINT = "dates look like 2024-03-01 10:15 or 2024-03-01T10:15:00.000Z"


def read_hubspot(path: Path) -> ImportBatch:
    """Read a HubSpot deals export (file or folder) into deals, stage history and reps."""
    file = _deals_file(path)
    data = with_source_rows(read_tabular(file))
    cols = {field: rc.find_column(data, *aliases) for field, aliases in FIELDS.items()}
    required = {"deal_id": "Record ID (or hs_object_id)", "stage": "Deal Stage (or dealstage)"}
    required["created"] = "Create Date (or createdate)"
    missing = [label for field, label in required.items() if cols[field] is None]
    if missing:
        raise MissingColumnsError(str(file), missing, data.column_names, MISSING_HINT)
    warnings: list[str] = []
    stage_columns = _stage_columns(data, cols["pipeline"])
    deals, status = _deals(data, cols, stage_columns, warnings, file)
    sources = [deals]
    sources += rc.melt_stage_columns(
        data,
        rc.text(data, cols["deal_id"]),
        stage_columns,
        str(file),
        {"_missing": MISSING_HINT, "deal_id": f"HubSpot {cols['deal_id']}"},
        convert=True,
    )
    reps = _reps(data, cols, str(file))
    if reps is not None:
        sources.append(reps)
    warning = rc.outcome_only_warning(str(file), status, deals.data)
    if warning:
        warnings.append(warning)
    return ImportBatch("hubspot", str(path), sources, warnings)


def _deals_file(path: Path) -> Path:
    hint = (
        "expected a CSV or Parquet file with 'deal' in its name (such as "
        "hubspot-crm-exports-all-deals.csv)"
    )
    return rc.deals_file(path, "HubSpot", hint)


def _stage_columns(data: pa.Table, pipeline_col: str | None) -> dict[str, str]:
    """Each "Date entered" column → the stage it records."""
    pipelines = set()
    if pipeline_col is not None:
        pipelines = {str(p).lower() for p in pc.unique(rc.text(data, pipeline_col)).to_pylist()}
    out: dict[str, str] = {}
    for column in data.column_names:
        internal = DATE_ENTERED_INTERNAL.match(column)
        if internal:
            out[column] = internal.group(1)
            continue
        label = DATE_ENTERED_LABEL.match(column)
        if label:
            stage = label.group(1).strip().strip('"').strip()
            paren = PARENTHETICAL.match(stage)
            if paren and (
                paren.group(2).lower() in pipelines or "pipeline" in paren.group(2).lower()
            ):
                stage = paren.group(1)
            out[column] = stage
    return out


UNKNOWN_OUTCOME = "closed, Is Closed Won missing"  # the status of a row rejected for it


def _status(data: pa.Table, cols: dict[str, str | None]) -> pa.ChunkedArray:
    stage = rc.text(data, cols["stage"])
    stripped = pc.replace_substring_regex(stage, r"\s*\([^()]*\)\s*$", "")
    key = pc.fill_null(pc.replace_substring_regex(pc.utf8_lower(stripped), r"[^0-9a-z]+", ""), "")
    won = pc.equal(key, "closedwon")
    named = pc.or_(won, pc.equal(key, "closedlost"))
    closed = named
    bad: list[tuple[pa.ChunkedArray, pa.ChunkedArray]] = []  # (unreadable mask, its text)
    if cols["is_closed_won"] is not None:
        text = rc.text(data, cols["is_closed_won"])
        flag, invalid = rc.parse_bool(text)
        won = pc.coalesce(flag, won)
        bad.append((invalid, text))
    if cols["is_closed"] is not None:
        text = rc.text(data, cols["is_closed"])
        flag, invalid = rc.parse_bool(text)
        closed = pc.coalesce(flag, closed)
        bad.append((invalid, text))
    closed = pc.or_(won, closed)
    status = pc.if_else(
        won, pa.scalar("won"), pc.if_else(closed, pa.scalar("lost"), pa.scalar("open"))
    )
    if cols["is_closed"] is not None and cols["is_closed_won"] is None:
        # Closed, but won? Without "Is Closed Won" only the default stage names tell; a
        # custom pipeline's won stage is not a loss, so such a deal is rejected, not guessed.
        unknown = pc.and_(pc.fill_null(closed, False), pc.invert(pc.fill_null(named, False)))
        status = pc.if_else(unknown, pa.scalar(UNKNOWN_OUTCOME), status)
    for invalid, text in bad:
        # An unreadable flag passes through as the status: the pipeline rejects it with it.
        status = pc.if_else(pc.fill_null(invalid, False), text, status)
    return status


def _deals(
    data: pa.Table,
    cols: dict[str, str | None],
    stage_columns: dict[str, str],
    warnings: list[str],
    file: Path,
) -> tuple[SourceTable, pa.ChunkedArray]:
    status = _status(data, cols)
    is_closed = pc.is_in(status, pa.array(rc.CLOSED_STATUSES))
    created = rc.epoch_ms_to_iso(rc.text(data, cols["created"]))
    close = rc.epoch_ms_to_iso(rc.text(data, cols["close"]))
    owner = rc.text(data, cols["owner_id"] or cols["owner_name"])
    account = rc.text(data, cols["account_id"])
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "deal_id": rc.text(data, cols["deal_id"]),
        "name": rc.text(data, cols["name"]),
        "created_at": created,
        "status": status,
        "closed_at": rc.where(is_closed, rc.day_after_created(close, created)),
        "expected_close_date": rc.where(pc.invert(is_closed), close),
        "amount": rc.text(data, cols["amount"]),
        "currency": rc.text(data, cols["currency"]),
        "owner_id": owner,
        "stage": rc.text(data, cols["stage"]),
        "account_id": rc.blank_to_null(pc.replace_substring_regex(account, r";.*$", "")),
        "lead_source": rc.text(data, cols["lead_source"]),
        "deal_type": _deal_type(rc.text(data, cols["deal_type"])),
    }
    used = {c for c in cols.values() if c is not None} | set(stage_columns) | {SOURCE_ROW}
    if cols["owner_id"] is not None and cols["owner_name"] is not None:
        used.add(cols["owner_name"])
    rest = [c for c in data.column_names if c not in used]
    leaky = [c for c in rest if _matches(c, LEAKY_EXACT, LEAKY_PREFIXES)]
    linked = [c for c in rest if c not in leaky and _matches(c, frozenset(), ASSOCIATIONS)]
    extras = [c for c in rest if c not in leaky and c not in linked]
    attributes: dict[str, AttributeKind | None] = {}
    if cols["pipeline"] is not None:
        columns[ATTRIBUTE_PREFIX + "pipeline"] = rc.text(data, cols["pipeline"])
        attributes[ATTRIBUTE_PREFIX + "pipeline"] = "categorical"
    for column, attr in rc.attribute_names(extras, reserved=("pipeline",)).items():
        columns[attr] = rc.text(data, column)
        attributes[attr] = None
    columns[SOURCE_ROW] = data.column(SOURCE_ROW)
    if leaky:
        warnings.append(
            f"{file.name}: not imported: {rc.shorten(leaky)} (HubSpot computes them from the "
            "deal's stage changes, outcome or latest activity; as features they would leak "
            "what happened later)"
        )
    if linked:
        warnings.append(
            f"{file.name}: not imported: {rc.shorten(linked)} (associated companies and "
            "contacts are out of scope for the HubSpot importer)"
        )
    hints = {
        "_missing": MISSING_HINT,
        "deal_id": f"HubSpot {cols['deal_id']}",
        "created_at": f"HubSpot {cols['created']}; {DATE_HINT}",
        "closed_at": f"HubSpot {cols['close']} of a closed deal; {DATE_HINT}",
        "expected_close_date": f"HubSpot {cols['close']} of an open deal; {DATE_HINT}",
        "amount": f"HubSpot {cols['amount']}",
        "currency": f"HubSpot {cols['currency']}",
        "status": "HubSpot status comes from Is Closed Won / Is Deal Closed? (true or false) "
        "when the export has them, else from the stage (Closed Won / Closed Lost); with Is "
        "Deal Closed? but no Is Closed Won, a closed deal in another stage has no known "
        "outcome — add Is Closed Won (hs_is_closed_won) to the export",
    }
    source = SourceTable(
        "deals",
        pa.table(columns),
        str(file),
        attributes=attributes,
        hints=hints,
    )
    return source, status


def _matches(column: str, exact: frozenset[str], prefixes: tuple[str, ...]) -> bool:
    key = rc.header_key(column)
    return key in exact or key.startswith(prefixes)


def _deal_type(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """HubSpot's two built-in deal types → new_business / existing_business; others as given."""
    key = pc.replace_substring_regex(pc.utf8_lower(values), r"[^0-9a-z]+", "")
    known = pc.fill_null(pc.is_in(key, pa.array(list(DEAL_TYPES))), False)
    return pc.if_else(known, rc.recode(key, DEAL_TYPES), values)


def _reps(data: pa.Table, cols: dict[str, str | None], file: str) -> SourceTable | None:
    """One rep per owner whose name the export gives (``owner_reps``: named after the first
    accepted line)."""
    name_col = cols["owner_name"]
    if name_col is None:
        return None
    ids = rc.text(data, cols["owner_id"] or name_col)
    names = rc.text(data, name_col)
    known = pc.and_(pc.is_valid(ids), pc.is_valid(names))
    if not pc.any(known).as_py():
        return None
    ids, names = pc.filter(ids, known), pc.filter(names, known)
    rows = pc.filter(data.column(SOURCE_ROW), known)
    return owner_reps(
        ids, names, rows, file, {"owner_id": f"HubSpot {cols['owner_id'] or name_col}"}
    )

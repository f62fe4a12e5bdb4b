"""Salesforce: a folder of object exports with API field names.

Accepts the weekly Data Export, Data Loader extracts or any SOQL dump, as CSV or Parquet, one
file per object: ``Opportunity`` (required), ``OpportunityHistory``, ``User``, ``Account``,
``Task``, ``Event`` and ``Lead``. File names are matched case-insensitively, with or without a
plural or separators (``opportunities.csv``, ``Opportunity History.parquet``); field names are
matched case-insensitively too (Data Loader writes ``STAGENAME``).

How the export is read:

- status: won if ``IsWon``, lost if ``IsClosed`` and not ``IsWon``, open otherwise. Without
  those two fields, ``StageName`` "Closed Won" / "Closed Lost" decide (with a warning).
- ``CloseDate`` is ``closed_at`` of a closed opportunity and ``expected_close_date`` of an open
  one. It is a bare date, so a closed opportunity whose CloseDate is the day it was created (or
  the day before, as UTC shifts it) is read as closed at its ``CreatedDate``.
- Custom fields (``…__c``) become custom attributes named without the suffix, snake_cased.
  Standard fields without a canonical home are reported and left out; ``Probability`` and
  ``ForecastCategoryName`` are left out on purpose: Salesforce derives them from the stage, and
  on closed opportunities they spell out the outcome.
- Rows with ``IsDeleted`` true (the recycle bin, in weekly exports) are skipped with a warning.
- ``OpportunityHistory`` keeps every row, including those where only the amount or close date
  changed, so stage_history also tracks amount changes and close-date pushes.
- Tasks and Events are linked through ``WhatId``; those logged against an account or contact
  rather than an opportunity are rejected by the pipeline as unknown deals.
- A lead whose Status reads unqualified / disqualified / "Closed - Not Converted" is
  disqualified; Salesforce keeps no date for that, so ``LastModifiedDate`` stands in.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from salesml.errors import ImportFailedError, MissingColumnsError, WrongFileError
from salesml.importers import _recode as rc
from salesml.importers.base import (
    SOURCE_ROW,
    ImportBatch,
    SourceTable,
    read_tabular,
    require_columns,
    with_source_rows,
)

OBJECTS: dict[str, tuple[str, ...]] = {
    "Opportunity": ("opportunity", "opportunities"),
    "OpportunityHistory": ("opportunityhistory", "opportunityhistories"),
    "User": ("user", "users"),
    "Account": ("account", "accounts"),
    "Task": ("task", "tasks"),
    "Event": ("event", "events"),
    "Lead": ("lead", "leads"),
}
# Salesforce API datetimes carry an offset (+0000 from the Data Export, the local zone from
# Data Loader); these formats keep it. Bare dates and "Z" fall through to ISO parsing.
SF_DATETIME_FORMATS = ["%Y-%m-%dT%H:%M:%S.%g%z", "%Y-%m-%dT%H:%M:%S%z"]
SF_DATE_HINT = "dates look like 2024-03-01 or 2024-03-01T10:15:00.000+0000"
MISSING_HINT = (
    "export the object with its API field names (Data Export or Data Loader), not a report "
    "with column labels; or import the file with --format mapping"
)
OPPORTUNITY_FIELDS = (
    "Id",
    "Name",
    "AccountId",
    "OwnerId",
    "Amount",
    "CloseDate",
    "StageName",
    "IsClosed",
    "IsWon",
    "CreatedDate",
    "CurrencyIsoCode",
    "Type",
    "LeadSource",
)
LEAKY_FIELDS = ("Probability", "ForecastCategoryName", "ForecastCategory", "ExpectedRevenue")
DISQUALIFIED = r"(?i)(unqualified|disqualified|not qualified|not converted|junk)"
ACTIVITY_TYPES = {"listemail": "email", "event": "meeting", "sendletter": "letter"}


def read_salesforce(path: Path) -> ImportBatch:
    """Read a Salesforce export folder (or a single Opportunity file) into canonical tables."""
    files = _object_files(path)
    warnings: list[str] = []
    opportunity = files["Opportunity"]
    sources = [_opportunities(opportunity, warnings)]
    readers = {
        "OpportunityHistory": _history,
        "User": _users,
        "Account": _accounts,
        "Task": _tasks,
        "Event": _events,
        "Lead": _leads,
    }
    for name, reader in readers.items():
        if name in files:
            sources.append(reader(files[name], warnings))
    return ImportBatch("salesforce", str(path), sources, warnings)


def _object_files(path: Path) -> dict[str, Path]:
    if path.is_file():
        if rc.file_key(path) in OBJECTS["Opportunity"]:
            return {"Opportunity": path}
        raise WrongFileError(
            str(path),
            "a Salesforce Opportunity export",
            "pass Opportunity.csv or the export folder (Opportunity.csv plus optional "
            "OpportunityHistory, User, Account, Task, Event and Lead files)",
        )
    if not path.is_dir():
        raise ImportFailedError(f"{path} does not exist; check the path")
    found: dict[str, Path] = {}
    for file in rc.tabular_files(path):
        key = rc.file_key(file)
        for name, aliases in OBJECTS.items():
            if key in aliases:
                if name in found:
                    raise ImportFailedError(
                        f"{path} has two {name} files ({found[name].name} and {file.name}); "
                        "keep one"
                    )
                found[name] = file
    if "Opportunity" not in found:
        present = ", ".join(f.name for f in rc.tabular_files(path)) or "no CSV/Parquet files"
        raise WrongFileError(
            str(path),
            "a Salesforce export",
            f"expected Opportunity.csv (or .parquet) with API field names such as Id, "
            f"StageName, CloseDate, IsWon; optional: OpportunityHistory, User, Account, Task, "
            f"Event, Lead. Found: {present}",
        )
    return found


def _read(file: Path, known: tuple[str, ...], warnings: list[str]) -> pa.Table:
    """Read one object file, spell known fields as the API does, skip recycle-bin rows."""
    data = rc.canonical_headers(with_source_rows(read_tabular(file)), (*known, "IsDeleted"))
    if "IsDeleted" in data.column_names:
        deleted, _ = rc.parse_bool(_col(data, "IsDeleted"))
        deleted = pc.fill_null(deleted, False)
        n = int(pc.sum(pc.cast(deleted, pa.int64())).as_py() or 0)
        if n:
            data = data.filter(pc.invert(deleted))
            warnings.append(f"{file.name}: skipped {n} deleted row(s) (IsDeleted is true)")
    return data


def _col(data: pa.Table, field: str) -> pa.ChunkedArray:
    """A field as trimmed text; all empty when the export does not have it."""
    return rc.text(data, field if field in data.column_names else None)


def _hints(table: str, fields: dict[str, str]) -> dict[str, str]:
    out = {"_missing": MISSING_HINT}
    for column, field in fields.items():
        out[column] = f"Salesforce {table}.{field}"
    return out


def _date_formats(*columns: str) -> dict[str, list[str]]:
    return {c: list(SF_DATETIME_FORMATS) for c in columns}


UNKNOWN_OUTCOME = "closed, IsWon missing"  # the status of a row rejected for it


def _opportunities(file: Path, warnings: list[str]) -> SourceTable:
    known = (*OPPORTUNITY_FIELDS, *LEAKY_FIELDS)
    data = _read(file, known, warnings)
    require_columns(str(file), data, ["Id", "CreatedDate", "CloseDate", "StageName"], MISSING_HINT)
    stage = _col(data, "StageName")
    stage_key = pc.utf8_lower(pc.fill_null(stage, ""))
    is_won, bad_won = _flag(data, "IsWon", pc.equal(stage_key, "closed won"))
    is_closed, bad_closed = _flag(
        data, "IsClosed", pc.or_(is_won, pc.equal(stage_key, "closed lost"))
    )
    missing_flags = [f for f in ("IsWon", "IsClosed") if f not in data.column_names]
    if missing_flags:
        other = (
            "other closed stages would be read as open"
            if "IsClosed" in missing_flags
            else "an opportunity closed (IsClosed) in another stage is rejected, as whether it "
            "was won is unknown"
        )
        warnings.append(
            f"{file.name} has no {' or '.join(missing_flags)}: status read from StageName "
            f"('Closed Won' / 'Closed Lost'); {other} — add IsClosed and IsWon to the export"
        )
    status = pc.if_else(
        pc.fill_null(is_won, False),
        pa.scalar("won"),
        pc.if_else(pc.fill_null(is_closed, False), pa.scalar("lost"), pa.scalar("open")),
    )
    if "IsWon" not in data.column_names and "IsClosed" in data.column_names:
        # Closed, but won or lost? Without IsWon only the default stage names tell; a custom
        # closed stage ("Signed") is not a loss, so the row is rejected rather than guessed.
        named = pc.is_in(stage_key, pa.array(["closed won", "closed lost"]))
        unknown = pc.and_(pc.fill_null(is_closed, False), pc.invert(named))
        status = pc.if_else(unknown, pa.scalar(UNKNOWN_OUTCOME), status)
    # An unreadable flag passes through as the status, so the pipeline rejects the row with it.
    status = pc.if_else(bad_closed, _col(data, "IsClosed"), status)
    status = pc.if_else(bad_won, _col(data, "IsWon"), status)
    closed = pc.is_in(status, pa.array(rc.CLOSED_STATUSES))
    close_date = _col(data, "CloseDate")
    created = _col(data, "CreatedDate")
    columns: dict[str, pa.ChunkedArray | pa.Array] = {
        "deal_id": _col(data, "Id"),
        "name": _col(data, "Name"),
        "created_at": created,
        "status": status,
        "closed_at": rc.where(closed, rc.day_after_created(close_date, created)),
        "expected_close_date": rc.where(pc.invert(closed), close_date),
        "amount": _col(data, "Amount"),
        "currency": _col(data, "CurrencyIsoCode"),
        "owner_id": _col(data, "OwnerId"),
        "stage": stage,
        "account_id": _col(data, "AccountId"),
        "lead_source": _col(data, "LeadSource"),
        "deal_type": _col(data, "Type"),
    }
    custom = [c for c in data.column_names if c.lower().endswith("__c")]
    attributes = rc.attribute_names(custom, strip="__c")
    for column, attr in attributes.items():
        columns[attr] = rc.text(data, column)
    columns[SOURCE_ROW] = data.column(SOURCE_ROW)
    deals = pa.table(columns)
    _report_ignored(file, data, [*OPPORTUNITY_FIELDS, *custom], warnings)
    warning = rc.outcome_only_warning(str(file), status, deals)
    if warning:
        warnings.append(warning)
    return SourceTable(
        "deals",
        deals,
        str(file),
        date_formats=_date_formats("created_at", "closed_at", "expected_close_date"),
        attributes=dict.fromkeys(attributes.values()),
        hints={
            **_hints(
                "Opportunity",
                {
                    "deal_id": "Id",
                    "created_at": "CreatedDate",
                    "amount": "Amount",
                    "currency": "CurrencyIsoCode",
                },
            ),
            "status": "Salesforce Opportunity status comes from IsWon and IsClosed, which must "
            "be true or false (1/0); without IsWon a closed opportunity is won or lost only by "
            "the StageName 'Closed Won' / 'Closed Lost' — add IsWon to the export",
            "closed_at": "Salesforce Opportunity.CloseDate of a closed opportunity; "
            "opportunities entered after they closed often have a CloseDate before their "
            f"CreatedDate; {SF_DATE_HINT}",
            "expected_close_date": f"Salesforce Opportunity.CloseDate; {SF_DATE_HINT}",
        },
    )


def _flag(
    data: pa.Table, field: str, fallback: pa.ChunkedArray
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """A boolean field (or ``fallback`` when the export lacks it) and its unreadable values."""
    if field not in data.column_names:
        return fallback, rc.falses(data.num_rows)
    value, invalid = rc.parse_bool(rc.text(data, field))
    return value, pc.fill_null(invalid, False)


def _report_ignored(file: Path, data: pa.Table, used: list[str], warnings: list[str]) -> None:
    used_keys = {u.lower() for u in used} | {"isdeleted", SOURCE_ROW}
    ignored = [c for c in data.column_names if c.lower() not in used_keys]
    if not ignored:
        return
    note = ""
    leaky = [c for c in ignored if c in LEAKY_FIELDS]
    if leaky:
        note = (
            f"; {', '.join(leaky)} follow the stage and spell out the outcome of closed "
            "opportunities, so they are never used as features"
        )
    warnings.append(
        f"{file.name}: not imported: {rc.shorten(ignored)} (only custom fields ending in __c "
        f"become custom attributes{note})"
    )


def _history(file: Path, warnings: list[str]) -> SourceTable:
    known = ("OpportunityId", "StageName", "Amount", "CloseDate", "CreatedDate")
    data = _read(file, known, warnings)
    require_columns(str(file), data, ["OpportunityId", "StageName", "CreatedDate"], MISSING_HINT)
    history = pa.table(
        {
            "deal_id": _col(data, "OpportunityId"),
            "stage": _col(data, "StageName"),
            "changed_at": _col(data, "CreatedDate"),
            "amount": _col(data, "Amount"),
            "expected_close_date": _col(data, "CloseDate"),
            SOURCE_ROW: data.column(SOURCE_ROW),
        }
    )
    return SourceTable(
        "stage_history",
        history,
        str(file),
        date_formats=_date_formats("changed_at", "expected_close_date"),
        hints=_hints(
            "OpportunityHistory",
            {
                "deal_id": "OpportunityId",
                "stage": "StageName",
                "changed_at": "CreatedDate",
                "amount": "Amount",
                "expected_close_date": "CloseDate",
            },
        ),
    )


def _users(file: Path, warnings: list[str]) -> SourceTable:
    known = ("Id", "Name", "FirstName", "LastName", "ManagerId", "Department", "CreatedDate")
    data = _read(file, known, warnings)
    require_columns(str(file), data, ["Id"], MISSING_HINT)
    name = _col(data, "Name")
    if "Name" not in data.column_names:
        parts = [rc.text(data, c) for c in ("FirstName", "LastName") if c in data.column_names]
        if parts:
            joined = pc.binary_join_element_wise(*(pc.fill_null(p, "") for p in parts), " ")
            name = rc.blank_to_null(joined)
    manager = rc.first_present(data, "Manager.Name", "ManagerName", "Manager")
    if "ManagerId" in data.column_names:
        # Managers are users too: name them from this file, or keep the id when not found.
        manager_id = _col(data, "ManagerId")
        looked_up = pc.take(name, pc.index_in(manager_id, _col(data, "Id")))
        manager = rc.coalesce(manager, looked_up, manager_id)
    reps = pa.table(
        {
            "owner_id": _col(data, "Id"),
            "name": name,
            "team": rc.first_present(
                data,
                "Team__c",
                "Sales_Team__c",
                "Team",
                "UserRole.Name",
                "UserRoleName",
                "Role",
                "Department",
                "Division",
            ),
            "manager": manager,
            "region": rc.first_present(data, "Region__c", "Sales_Region__c", "Region"),
            "hired_at": rc.first_present(
                data,
                "HireDate__c",
                "Hire_Date__c",
                "HireDate",
                "StartDate__c",
                "Start_Date__c",
                "StartDate",
                "CreatedDate",
            ),
            SOURCE_ROW: data.column(SOURCE_ROW),
        }
    )
    return SourceTable(
        "reps",
        reps,
        str(file),
        date_formats=_date_formats("hired_at"),
        hints=_hints("User", {"owner_id": "Id", "hired_at": "HireDate (or CreatedDate)"}),
    )


def _accounts(file: Path, warnings: list[str]) -> SourceTable:
    known = (
        "Id",
        "Name",
        "Industry",
        "NumberOfEmployees",
        "AnnualRevenue",
        "BillingCountry",
        "ShippingCountry",
    )
    data = _read(file, known, warnings)
    require_columns(str(file), data, ["Id"], MISSING_HINT)
    accounts = pa.table(
        {
            "account_id": _col(data, "Id"),
            "name": _col(data, "Name"),
            "industry": _col(data, "Industry"),
            "employees": _col(data, "NumberOfEmployees"),
            "annual_revenue": _col(data, "AnnualRevenue"),
            "country": rc.first_present(data, "BillingCountry", "ShippingCountry"),
            SOURCE_ROW: data.column(SOURCE_ROW),
        }
    )
    return SourceTable(
        "accounts",
        accounts,
        str(file),
        hints=_hints(
            "Account",
            {
                "account_id": "Id",
                "employees": "NumberOfEmployees",
                "annual_revenue": "AnnualRevenue",
            },
        ),
    )


def _tasks(file: Path, warnings: list[str]) -> SourceTable:
    return _activities(
        file,
        warnings,
        "Task",
        ("CompletedDateTime", "ActivityDate", "CreatedDate"),
        ("Type", "TaskSubtype"),
        "task",
    )


def _events(file: Path, warnings: list[str]) -> SourceTable:
    return _activities(
        file,
        warnings,
        "Event",
        ("ActivityDateTime", "StartDateTime", "ActivityDate", "CreatedDate"),
        ("Type", "EventSubtype"),
        "meeting",
    )


def _activities(
    file: Path,
    warnings: list[str],
    kind: str,
    date_fields: tuple[str, ...],
    type_fields: tuple[str, ...],
    default_type: str,
) -> SourceTable:
    known = ("Id", "WhatId", "OwnerId", *date_fields, *type_fields)
    data = _read(file, known, warnings)
    require_columns(str(file), data, ["WhatId"], MISSING_HINT)
    if not any(f in data.column_names for f in date_fields):
        raise MissingColumnsError(
            str(file), [" or ".join(date_fields)], data.column_names, MISSING_HINT
        )
    what = _col(data, "WhatId")
    elsewhere = pc.invert(pc.fill_null(pc.starts_with(what, "006"), True))
    n_elsewhere = int(pc.sum(pc.cast(elsewhere, pa.int64())).as_py() or 0)
    if n_elsewhere:
        warnings.append(
            f"{file.name}: {n_elsewhere} {kind.lower()}(s) are logged against a record that is "
            "not an opportunity (WhatId not starting with 006); unless that id is a deal, they "
            "are rejected as unknown deals"
        )
    raw_type = rc.first_present(data, *type_fields)
    keyed = pc.replace_substring_regex(pc.utf8_lower(raw_type), r"[^0-9a-z]+", "")
    normalised = pc.if_else(
        pc.is_in(keyed, pa.array(list(ACTIVITY_TYPES))),
        rc.recode(keyed, ACTIVITY_TYPES),
        pc.utf8_lower(pc.replace_substring_regex(raw_type, r"[^0-9A-Za-z]+", "_")),
    )
    activity_type = pc.fill_null(pc.utf8_trim(normalised, "_"), default_type)
    activities = pa.table(
        {
            "activity_id": _col(data, "Id"),
            "deal_id": what,
            "occurred_at": rc.first_present(data, *date_fields),
            "type": activity_type,
            "owner_id": _col(data, "OwnerId"),
            SOURCE_ROW: data.column(SOURCE_ROW),
        }
    )
    return SourceTable(
        "activities",
        activities,
        str(file),
        date_formats=_date_formats("occurred_at"),
        hints=_hints(
            kind,
            {
                "deal_id": "WhatId (the opportunity the activity is logged against)",
                "occurred_at": " or ".join(date_fields),
            },
        ),
    )


def _leads(file: Path, warnings: list[str]) -> SourceTable:
    known = (
        "Id",
        "CreatedDate",
        "LeadSource",
        "OwnerId",
        "ConvertedDate",
        "ConvertedOpportunityId",
        "Status",
        "IsConverted",
        "LastModifiedDate",
    )
    data = _read(file, known, warnings)
    require_columns(str(file), data, ["Id", "CreatedDate"], MISSING_HINT)
    created = _col(data, "CreatedDate")
    converted_flag, _ = rc.parse_bool(_col(data, "IsConverted"))
    converted_at = _col(data, "ConvertedDate")
    is_converted = pc.or_(pc.fill_null(converted_flag, False), pc.is_valid(converted_at))
    status = _col(data, "Status")
    disqualified = pc.and_(
        pc.fill_null(pc.match_substring_regex(status, DISQUALIFIED), False),
        pc.invert(is_converted),
    )
    n_disqualified = int(pc.sum(pc.cast(disqualified, pa.int64())).as_py() or 0)
    if n_disqualified:
        stand_in = "LastModifiedDate" if "LastModifiedDate" in data.column_names else "CreatedDate"
        warnings.append(
            f"{file.name}: {n_disqualified} disqualified lead(s) dated by {stand_in} (Salesforce "
            "keeps no disqualification date)"
        )
    leads = pa.table(
        {
            "lead_id": _col(data, "Id"),
            "created_at": created,
            "source": _col(data, "LeadSource"),
            "owner_id": _col(data, "OwnerId"),
            "converted_at": rc.day_after_created(converted_at, created),
            "deal_id": _col(data, "ConvertedOpportunityId"),
            "disqualified_at": rc.where(
                disqualified, rc.coalesce(_col(data, "LastModifiedDate"), created)
            ),
            SOURCE_ROW: data.column(SOURCE_ROW),
        }
    )
    return SourceTable(
        "leads",
        leads,
        str(file),
        date_formats=_date_formats("created_at", "converted_at", "disqualified_at"),
        hints=_hints(
            "Lead",
            {
                "lead_id": "Id",
                "created_at": "CreatedDate",
                "converted_at": "ConvertedDate",
                "deal_id": "ConvertedOpportunityId",
                "disqualified_at": "LastModifiedDate of a disqualified lead",
            },
        ),
    )

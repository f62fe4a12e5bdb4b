"""Monday.com: a deals board exported to Excel (board menu → Export board to Excel), or that
workbook saved as CSV.

Accepts the ``.xlsx``/``.csv`` file, or a folder holding exactly one with "deal" in its name.
Monday does not write a plain table: the first line holds the board's title, each group of
items starts with a line holding the group's name followed by the column headers again, and
blank lines separate the groups. Those lines are not deals: they are recognised and left out,
and a warning counts them; every other line is a deal and is imported or rejected.

How the board is read (column titles are the board's own, matched ignoring case and
punctuation):

- ``Item ID`` is the deal id. Boards without that column get an id made of the item's
  ``Name`` and its creation date (a warning says so): renaming an item then makes a new deal.
- ``Deal Stage`` (or ``Stage``, else ``Status``) decides: "Won" / "Closed Won" → won, "Lost" /
  "Closed Lost" → lost, any other label → open with that label as the stage (labels outside
  Monday's sales-CRM defaults are listed in a warning); an item without a label is open.
- ``Close Date`` (or ``Expected Close Date``) is ``closed_at`` of a closed deal and
  ``expected_close_date`` of an open one. ``Date Created``, ``Created``, or the date inside a
  ``Creation log`` cell ("Dana Lee 2024-03-05 14:22:10") is ``created_at``.
- ``Person`` / ``Owner`` / ``Sales Rep`` (the first person of several) is the owner and a rep;
  ``Deal Value`` / ``Value`` / ``Amount`` the amount; ``Currency`` the currency; ``Company`` /
  ``Account`` / ``Accounts`` (the Sales CRM template's connected column) the account;
  ``Source`` / ``Lead Source`` the lead source; ``Deal Type`` the type; ``Region`` / ``Team`` /
  ``Product`` those fields.
- Other columns become custom attributes. ``Close Probability``, ``Forecast Value``, ``Last
  updated`` and ``Deal Length`` are left out with a warning (they follow the outcome), and so
  are ``Subitems`` and ``Files``. The group an item sits in is not imported: boards often group
  deals by outcome ("Closed won"), which would leak it.
- Subitems: the export writes an item's subitems on the lines under it, after a line starting
  "Subitems" with their column titles, each subitem line leaving the first cell empty. They are
  not imported — the data model has no line items, and a subitem (a product, a task to do) is a
  part or a plan of the deal, not a logged activity, so reading it as one would invent touches —
  but every subitem line is accounted for: it is in the rejects file as ``(subitem)``, naming
  its parent item, and a warning says so. The "Subitems" line is a header line of the layout.
"""

from __future__ import annotations

import csv
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from salesml.errors import WrongFileError
from salesml.importers import _recode as rc
from salesml.importers._crm_deals import (
    DealsSpec,
    deals_file,
    find_columns,
    labelled_status,
    read_deals,
    unusual_labels,
)
from salesml.importers.base import (
    SOURCE_ROW,
    SUBITEM,
    ImportBatch,
    UnparsedRow,
    note_unparsed,
)

WON = ("Won", "Closed Won", "Deal Won")
LOST = ("Lost", "Closed Lost", "Deal Lost")
DEFAULT_LABELS = (
    *WON,
    *LOST,
    "New",
    "Lead",
    "Discovery",
    "Qualified",
    "Proposal",
    "Negotiation",
    "Working on it",
    "Stuck",
)
SPEC = DealsSpec(
    format="monday",
    product="Monday.com",
    fields={
        "deal_id": ("Item ID", "Item ID (auto generated)", "Pulse ID", "ID"),
        "name": ("Name", "Deal", "Deal Name"),
        "status": ("Deal Stage", "Stage", "Status"),
        "amount": ("Deal Value", "Value", "Amount", "Deal Size"),
        "currency": ("Currency",),
        "owner": ("Person", "Owner", "Sales Rep", "Deal Owner", "People"),
        "account": ("Company", "Account", "Accounts", "Organization", "Client"),
        "lead_source": ("Source", "Lead Source"),
        "deal_type": ("Deal Type", "Type"),
        "created": ("Date Created", "Created", "Creation Date", "Creation log", "Created At"),
        "close": ("Close Date", "Expected Close Date", "Closing Date"),
    },
    required={"name": "Name", "created": "Date Created (or Creation log)"},
    date_formats=(
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d",
        "%b %d, %Y %I:%M %p",
        "%b %d, %Y",
    ),
    leaky=("Close Probability", "Forecast Value", "Last updated", "Deal Length", "Timeline"),
    ignored=("Subitems", "Files", "Item ID (auto generated)", "Group"),
    missing_hint=(
        "export the board from Monday.com (board menu → More actions → Export board to Excel) "
        "with its Name and creation date columns (add a Creation log column if it has none)"
    ),
    date_hint="Monday dates look like 2024-03-05 or 2024-03-05 14:22:10",
    status_hint="Monday.com status labels are read as won (Won), lost (Lost) or open (others)",
)
STAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}(?:[ T]\d{1,2}:\d{2}(?::\d{2})?)?|[A-Z][a-z]{2} \d{1,2}, \d{4}"
    r"(?: \d{1,2}:\d{2} [AP]M)?)"
)
Line = tuple[int, list[str]]


def read_monday(path: Path) -> ImportBatch:
    """Read a Monday.com board export (xlsx or csv; file or folder) into deals and reps."""
    file = deals_file(path, SPEC, suffixes=(".xlsx",))
    warnings: list[str] = []
    data = _board_table(file, warnings)
    cols = find_columns(data, SPEC, file)
    if cols["created"] is not None and rc.header_key(cols["created"]) == "creationlog":
        data = _with_stamps(data, cols["created"])
    label = rc.text(data, cols["status"])
    note = unusual_labels(label, DEFAULT_LABELS, "status labels", str(file))
    if note:
        warnings.append(note)
    status = pc.fill_null(labelled_status(label, WON, LOST), "open")
    cols["stage"] = cols["status"]
    if cols["deal_id"] is None:
        data, cols = _derived_ids(data, cols)
        warnings.append(
            f"{file.name} has no Item ID column: each deal's id is its Name and creation date "
            "(add the Item ID column to the board so renamed items keep their id)"
        )
    sources = read_deals(data, cols, status, SPEC, str(file), warnings)
    return ImportBatch("monday", str(path), sources, warnings)


def _board_table(file: Path, warnings: list[str]) -> pa.Table:
    """The board's items as one text table (``_source_row`` = the line in the file); title,
    group and header lines are left out and counted in a warning."""
    lines = _xlsx_lines(file) if file.name.lower().endswith(".xlsx") else _csv_lines(file)
    header: list[str] | None = None
    records: list[dict[str, str | None]] = []
    rows: list[int] = []
    left_out = {"title": 0, "group": 0, "header": 0, "subitems": 0}
    subitems: list[str] | None = None  # the "Subitems" header over the lines that follow
    filled = [(n, cells) for n, cells in lines if any(c.strip() for c in cells)]
    for i, (number, cells) in enumerate(filled):
        if _is_header(cells):
            header = [c.strip() for c in cells]
            while header and not header[-1]:  # a workbook pads rows to its widest one
                header.pop()
            left_out["header"] += 1
            subitems = None
            continue
        if header is not None and _is_subitems_header(cells):
            subitems = [c.strip() for c in cells]
            left_out["subitems"] += 1
            continue
        if subitems is not None and not cells[0].strip():
            _subitem(file, number, subitems, cells, records[-1] if records else None, rows)
            continue
        subitems = None
        following = filled[i + 1][1] if i + 1 < len(filled) else []
        opens_group = _single_cell(cells) and _is_header(following)
        if header is None or opens_group:
            # the first group's name is above the first header, after the board's title
            group = opens_group and (header is not None or i > 0)
            left_out["group" if group else "title"] += 1
            continue
        record = _record(file, number, header, cells)
        if record is not None:
            records.append(record)
            rows.append(number)
    if header is None:
        raise WrongFileError(
            str(file),
            "a Monday.com board export",
            "no header line starting with 'Name' was found; export the board to Excel from "
            "Monday.com and import that file",
        )
    warnings.append(
        f"{file.name}: left out {left_out['title']} title line(s), {left_out['group']} group "
        f"line(s) and {left_out['header'] + left_out['subitems']} header line(s) of the board "
        "layout (not deals)"
    )
    if left_out["subitems"]:
        warnings.append(
            f"{file.name}: subitems are not imported (the data model has no line items, and a "
            "subitem is a part or a plan of the deal, not a logged activity); each subitem line "
            f"is in the rejects file as {SUBITEM} with its parent item — their parent items are "
            "imported as deals"
        )
    names = list(dict.fromkeys(k for r in records for k in r)) or header
    table = pa.table({n: pa.array([r.get(n) for r in records], pa.string()) for n in names})
    return table.append_column(SOURCE_ROW, pa.array(rows, pa.int64()))


def _record(
    file: Path, number: int, header: list[str], cells: list[str]
) -> dict[str, str | None] | None:
    """One item line as header → value; a line with more filled cells than the header is
    not a row (it goes to the rejects file as an unreadable line)."""
    extra = [c for c in cells[len(header) :] if c.strip()]
    if extra:
        unparsed = UnparsedRow(
            str(file),
            number,
            f"this line has {len(cells)} cells, the header above it has {len(header)}; fix "
            "the line or re-export the board",
            ",".join(cells),
        )
        note_unparsed(unparsed)
        return None
    padded = [*cells, *[""] * (len(header) - len(cells))]
    return {h: (v.strip() or None) for h, v in zip(header, padded, strict=False) if h}


def _is_subitems_header(cells: list[str]) -> bool:
    """Monday's line over an item's subitems: "Subitems" then the subitems' column titles
    (the subitem lines under it leave the first cell empty)."""
    return (
        bool(cells) and rc.header_key(cells[0]) == "subitems" and any(c.strip() for c in cells[1:])
    )


def _subitem(
    file: Path,
    number: int,
    titles: list[str],
    cells: list[str],
    parent: dict[str, str | None] | None,
    rows: list[int],
) -> None:
    """A subitem line: into the rejects file (``SUBITEM``) naming its parent item."""
    name = next((v.strip() for t, v in zip(titles[1:], cells[1:], strict=False) if v.strip()), "")
    if parent is None:
        of = "no item above it"
    else:
        item = parent.get("Item ID") or parent.get("Name") or "?"
        of = f"item {item!r} (line {rows[-1]})"
    note_unparsed(
        UnparsedRow(
            str(file),
            number,
            f"subitem {name!r} of {of}: Monday subitems are not imported (the data model has "
            "no line items, and a subitem is a part or a plan of the deal, not a logged "
            "activity); the parent item is imported as the deal",
            ",".join(cells),
            kind=SUBITEM,
        )
    )


def _is_header(cells: list[str]) -> bool:
    first = rc.header_key(cells[0]) if cells else ""
    return first == "name" and sum(1 for c in cells if c.strip()) >= 2


def _single_cell(cells: list[str]) -> bool:
    return bool(cells and cells[0].strip()) and not any(c.strip() for c in cells[1:])


# Python's csv module refuses a cell over 128 KiB and with it the whole file; a cell that
# long is one bad row (the text-length check rejects it with its line), not an unreadable file.
_MAX_CELL = 2**31 - 1


def _csv_lines(file: Path) -> list[Line]:
    limit = csv.field_size_limit(_MAX_CELL)
    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            out: list[Line] = []
            start = 1
            for cells in reader:
                out.append((start, cells))
                start = reader.line_num + 1
            return out
    except UnicodeDecodeError as exc:
        raise WrongFileError(str(file), "UTF-8 text", "re-save it as UTF-8 CSV") from exc
    except csv.Error as exc:
        raise WrongFileError(str(file), "a well-formed CSV file", f"({exc})") from exc
    finally:
        csv.field_size_limit(limit)


def _xlsx_lines(file: Path) -> list[Line]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(file, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several kinds for a file that is not a workbook
        raise WrongFileError(str(file), "an Excel workbook (.xlsx)", f"({exc})") from exc
    try:
        sheet = book.worksheets[0]
        return [
            (number, [_cell_text(v) for v in values])
            for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
        ]
    finally:
        book.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S" if value.time() else "%Y-%m-%d")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _with_stamps(data: pa.Table, column: str) -> pa.Table:
    """A Creation log cell ("Dana Lee 2024-03-05 14:22:10") → its date; cells without one
    stay as they are, to be rejected with their value."""
    values = []
    for v in data.column(column).to_pylist():
        match = STAMP.search(v) if v else None
        values.append(match.group(1) if match else v)
    index = data.column_names.index(column)
    return data.set_column(index, column, pa.array(values, pa.string()))


def _derived_ids(
    data: pa.Table, cols: dict[str, str | None]
) -> tuple[pa.Table, dict[str, str | None]]:
    name = pc.fill_null(rc.text(data, cols["name"]), "")
    created = pc.fill_null(rc.text(data, cols["created"]), "")
    ids = rc.blank_to_null(pc.binary_join_element_wise(name, created, " @ "))
    ids = pc.if_else(pc.equal(name, ""), pa.scalar(None, pa.string()), ids)
    data = data.append_column("_derived_id", ids)
    return data, {**cols, "deal_id": "_derived_id"}

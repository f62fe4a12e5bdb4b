"""Google Analytics 4: sessions and key events by session source / medium (a report or an
exploration downloaded as CSV), into ``web_sessions`` and ``marketing_spend``.

Accepts the CSV file, or a folder holding exactly one CSV. GA4 writes a block of ``#``
comment lines above the table (report name, property, ``# Start date: 20240101``); they are
skipped. The columns, matched ignoring case and punctuation:

| GA4 column | canonical |
|---|---|
| ``Session source / medium`` (else ``Session default channel group``, …) | channel |
| ``Date`` (``20240105``) — without it, the ``# Start date`` of the comment block | period |
| ``Sessions`` | web_sessions.sessions |
| ``Key events`` (``Conversions`` in older properties) | web_sessions.key_events |
| ``Ads cost`` (``Google Ads cost``, ``Advertiser ad cost``, ``Cost``) | marketing_spend.amount |

Every line of the table is one ``web_sessions`` row (imported or rejected). A line with a
cost above zero is also a ``marketing_spend`` row for the same period and channel (lines
without cost, such as organic traffic, have no spend row: they cost nothing in ads, which is
not the same as a known acquisition cost of zero). A line is imported whole or not at all:
when its sessions are rejected its spend is rejected with them, and the other way round (the
rejects file says which field rejected the line), so no spend is counted without the traffic
it bought, nor traffic without the spend it cost. A line rejected for any field takes no
part in duplicate detection (``resolve_line_groups``): it never takes a valid line with the
same day and channel down with it. A ``Grand total`` / ``Totals`` line is
left out with a warning. GA4 keeps no link from a session to a CRM deal, so no leads are made
up from key events: conversion and CAC by channel come from matching the channel to the deals'
``lead_source`` (see docs/importers.md).
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from salesml.errors import ImportFailedError, MissingColumnsError, WrongFileError
from salesml.importers import _recode as rc
from salesml.importers.base import (
    SOURCE_ROW,
    ImportBatch,
    SourceTable,
    UnparsedRow,
    note_unparsed,
)

CHANNEL = (
    "Session source / medium",
    "Session default channel group",
    "Session source",
    "First user source / medium",
    "Source / medium",
)
DATE = ("Date",)
SESSIONS = ("Sessions",)
KEY_EVENTS = ("Key events", "Conversions")
COST = ("Ads cost", "Google Ads cost", "Advertiser ad cost", "Cost")
TOTALS = ("grandtotal", "totals", "total")
ZERO_COST = r"^[\s$€£¥]*0+([.,]0*)?[\s$€£¥]*$"
"""A cost of nothing as GA4 writes it in any locale (``0``, ``0.00``, ``0,00``, ``$0.00``):
no spend row, like an empty cost (not a spend of zero)."""
START_DATE = re.compile(r"^#\s*start date:\s*(\d{8})\s*$", re.IGNORECASE)
DATE_FORMATS = ["%Y%m%d", "%Y-%m-%d"]
MISSING_HINT = (
    "download a GA4 report or exploration with the dimension 'Session source / medium' (and "
    "'Date') and the metrics 'Sessions' and 'Key events' as CSV"
)


def read_ga4(path: Path) -> ImportBatch:
    """Read a GA4 CSV download into web_sessions and marketing_spend rows."""
    file = _csv_file(path)
    warnings: list[str] = []
    data, start = _table(file, warnings)
    cols = {
        "channel": rc.find_column(data, *CHANNEL),
        "date": rc.find_column(data, *DATE),
        "sessions": rc.find_column(data, *SESSIONS),
        "key_events": rc.find_column(data, *KEY_EVENTS),
        "cost": rc.find_column(data, *COST),
    }
    missing = [
        label
        for label, c in (("Session source / medium", "channel"), ("Sessions", "sessions"))
        if cols[c] is None
    ]
    if cols["date"] is None and start is None:
        missing.append("Date (or a '# Start date:' line above the table)")
    if missing:
        names = [c for c in data.column_names if c != SOURCE_ROW]
        raise MissingColumnsError(str(file), missing, names, MISSING_HINT)
    n = data.num_rows
    period = rc.text(data, cols["date"]) if cols["date"] else rc.constant(n, str(start))
    if cols["date"] is None:
        warnings.append(
            f"{file.name} has no Date column: every line is dated at the report's start date "
            f"{start} (add the Date dimension for daily figures)"
        )
    channel = rc.text(data, cols["channel"])
    hints = {
        "_missing": MISSING_HINT,
        "period": f"GA4 {cols['date'] or 'Start date'}; GA4 dates look like 20240105",
        "channel": f"GA4 {cols['channel']}",
    }
    sessions = pa.table(
        {
            "period": period,
            "channel": channel,
            "sessions": (rc.text(data, cols["sessions"])),
            "key_events": (rc.text(data, cols["key_events"])),
            SOURCE_ROW: data.column(SOURCE_ROW),
        }
    )
    sources = [
        SourceTable(
            "web_sessions",
            sessions,
            str(file),
            date_formats={"period": DATE_FORMATS},
            hints={
                **hints,
                "sessions": f"GA4 {cols['sessions']}",
                "key_events": f"GA4 {cols['key_events']}",
            },
            line_group=str(file),
        )
    ]
    if cols["cost"] is not None:
        cost = rc.text(data, cols["cost"])
        spent = pc.fill_null(pc.invert(pc.match_substring_regex(cost, ZERO_COST)), False)
        spend = pa.table(
            {
                "period": period,
                "channel": channel,
                "amount": cost,
                SOURCE_ROW: data.column(SOURCE_ROW),
            }
        ).filter(spent)
        sources.append(
            SourceTable(
                "marketing_spend",
                spend,
                f"{file} [{cols['cost']}]",
                date_formats={"period": DATE_FORMATS},
                hints={**hints, "amount": f"GA4 {cols['cost']}"},
                line_group=str(file),
            )
        )
    return ImportBatch("ga4", str(path), sources, warnings)


def _csv_file(path: Path) -> Path:
    if path.is_file():
        return path
    if not path.is_dir():
        raise ImportFailedError(f"{path} does not exist; check the path")
    files = [f for f in rc.tabular_files(path) if f.name.lower().endswith(".csv")]
    if len(files) == 1:
        return files[0]
    raise WrongFileError(
        str(path),
        "a folder with one GA4 CSV download",
        f"found {len(files)} CSV files ({', '.join(f.name for f in files) or 'none'}); pass "
        "the one to import as PATH",
    )


def _delimiter(header: str) -> str:
    """The header line's most frequent of ``, ; TAB |`` (a download re-saved by a spreadsheet
    in a European locale is separated by ``;``), as ``base.sniff_delimiter`` reads a file
    whose first line is its header."""
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _unique_header(file: Path, header: list[str]) -> None:
    """Two columns of one name would be read as one (the last), silently: refused, as the
    other importers refuse them."""
    dupes = sorted({n for n in header if n and header.count(n) > 1})
    if dupes:
        raise WrongFileError(
            str(file),
            "a CSV with unique column names",
            f"column(s) {', '.join(dupes)} appear twice; rename one of them",
        )


def _table(file: Path, warnings: list[str]) -> tuple[pa.Table, str | None]:
    """The table under GA4's comment block (lines as text, ``_source_row`` = line), and the
    ``# Start date`` of that block."""
    start: str | None = None
    header: list[str] | None = None
    delimiter = ","
    rows: list[list[str]] = []
    lines: list[int] = []
    totals: list[int] = []
    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            number = 0
            for raw in fh:
                number += 1
                text = raw.strip()
                if text.startswith("#") or not text:
                    match = START_DATE.match(text)
                    if match and header is None:
                        start = match.group(1)
                    continue
                if header is None:
                    delimiter = _delimiter(raw)
                cells = next(csv.reader([raw], delimiter=delimiter))
                if header is None:
                    header = [c.strip() for c in cells]
                    _unique_header(file, header)
                elif rc.header_key(cells[0]) in TOTALS:
                    totals.append(number)
                elif len(cells) > len(header) and any(c.strip() for c in cells[len(header) :]):
                    note_unparsed(
                        UnparsedRow(
                            str(file),
                            number,
                            f"this line has {len(cells)} fields, the header has {len(header)}; "
                            "quote values that contain a comma, or fix the line",
                            raw.rstrip("\r\n"),
                        )
                    )
                else:
                    rows.append(cells)
                    lines.append(number)
    except UnicodeDecodeError as exc:
        raise WrongFileError(str(file), "UTF-8 text", "re-save it as UTF-8 CSV") from exc
    if header is None:
        raise WrongFileError(str(file), "a GA4 CSV download", "no table found under the # lines")
    if totals:
        warnings.append(
            f"{file.name}: left out the total line(s) {', '.join(map(str, totals))} (a sum of "
            "the lines above, not a channel)"
        )
    columns = {
        name: pa.array([r[i] if i < len(r) else None for r in rows], pa.string())
        for i, name in enumerate(header)
    }
    table = pa.table(columns) if columns else pa.table({})
    return table.append_column(SOURCE_ROW, pa.array(lines, pa.int64())), start

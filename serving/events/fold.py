"""Journal entries folded into the warehouse through the canonical importer.

The rows an event resolved to (``serving.events.resolve``) are imported like rows of an export:
the importer's rules, its upsert by key (so folding the same entries twice changes nothing —
what makes a crash between the warehouse commit and the journal's ``folded`` mark harmless),
its rejects file and its ``_imports`` record (format ``events``). One fold is one short write
transaction on the warehouse; the warehouse's single-writer lock is taken only for it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from salesml.errors import WarehouseError
from salesml.importers.base import SOURCE_ROW, ImportBatch, SourceTable
from salesml.importers.pipeline import ImportSummary, run_import
from salesml.importers.validate import Limits
from salesml.schemas import ATTRIBUTE_PREFIX, TABLES
from salesml.warehouse import connect, quote
from serving.events.checks import parse_timestamp
from serving.events.journal import Entry

log = logging.getLogger("salesml.events")


def _key(table: str, row: dict[str, Any]) -> tuple[str, ...]:
    """The row's key as the warehouse compares it (times parsed, so 10:00Z is 10:00:00)."""
    schema = TABLES[table]
    out = []
    for name in schema.key:
        value = row.get(name)
        if schema.column(name).kind == "timestamp" and value is not None:
            stamp = parse_timestamp(str(value))
            out.append(stamp.isoformat() if stamp is not None else str(value))
        else:
            out.append(str(value))
    return tuple(out)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return (
        value if isinstance(value, str) else repr(value) if isinstance(value, float) else str(value)
    )


def latest_rows(entries: Sequence[Entry]) -> dict[str, list[tuple[int, dict[str, Any]]]]:
    """Per table, the rows of ``entries`` with one row per key (the latest entry's)."""
    out: dict[str, dict[tuple[str, ...], tuple[int, dict[str, Any]]]] = {}
    for entry in entries:
        for table, rows in (entry.rows or {}).items():
            for row in rows:
                out.setdefault(table, {})[_key(table, row)] = (entry.seq, row)
    return {table: list(rows.values()) for table, rows in out.items()}


def _merge_leads(warehouse: Path, rows: list[tuple[int, dict[str, Any]]]) -> None:
    """A ``lead.updated`` carries the fields that changed: fill in the rest from the lead's
    row in the warehouse (in place)."""
    ids = [str(row["lead_id"]) for _, row in rows]
    con = connect(warehouse, read_only=True)
    try:
        found = con.execute(
            "SELECT * EXCLUDE (_row_hash) FROM leads WHERE lead_id IN "
            "(SELECT unnest(?::VARCHAR[]))",
            [ids],
        ).df()
    finally:
        con.close()
    current = {str(r["lead_id"]): r for r in found.to_dict(orient="records")}
    for _, row in rows:
        base = current.get(str(row["lead_id"]))
        if base is None:
            continue
        for column, value in base.items():
            if column not in row and value is not None and not pd.isna(value):
                row[str(column)] = value.isoformat() if hasattr(value, "isoformat") else value


def _source(table: str, rows: list[tuple[int, dict[str, Any]]]) -> SourceTable:
    columns: list[str] = []
    for _, row in rows:
        columns.extend(c for c in row if c not in columns)
    data = {c: pa.array([_text(row.get(c)) for _, row in rows], pa.string()) for c in columns}
    data[SOURCE_ROW] = pa.array([seq for seq, _ in rows], pa.int64())
    attributes: dict[str, Any] = {c: None for c in columns if c.startswith(ATTRIBUTE_PREFIX)}
    return SourceTable(table, pa.table(data), "events journal", attributes=attributes)


def fold(
    entries: Sequence[Entry], warehouse: Path, rejects_dir: Path, limits: Limits
) -> ImportSummary | None:
    """Import the rows of ``entries`` (in journal order); ``None`` when the warehouse is busy
    (another process holds it: try again later)."""
    by_table = latest_rows(entries)
    if not by_table:
        return None
    try:
        if "leads" in by_table and warehouse.exists():
            _merge_leads(warehouse, by_table["leads"])
        tables = [_source(t, by_table[t]) for t in TABLES if t in by_table]
        first, last = entries[0].seq, entries[-1].seq
        batch = ImportBatch("events", f"events journal #{first}-#{last}", tables)
        return run_import(batch, warehouse, rejects_dir, limits=limits)
    except WarehouseError as exc:
        log.info("warehouse busy, folding events later (%s)", exc)
        return None


def imported_event_ids(warehouse: Path) -> int:
    """How many event imports the warehouse records (for tests and ``/v1/events`` status)."""
    con = connect(warehouse, read_only=True)
    try:
        row = con.execute(f"SELECT count(*) FROM _imports WHERE {quote('format')} = 'events'")
        return int((row.fetchone() or (0,))[0])
    finally:
        con.close()

"""Leads as they stand, for merging a ``lead.updated`` event with its lead.

A lead update carries the fields that changed (HubSpot's ``lifecyclestage``, a Salesforce
``ConvertedDate``): it is merged with the lead's row — the row of its latest journaled event not
yet in the warehouse, else the warehouse's — and the merged row is checked by the import rules
and journaled (``serving.events.resolve.resolve_lead``). The server's in-memory history holds no
leads (no feature reads them), so a lead is looked up in the warehouse when an event names it:
one short read per request that has lead updates, made before the ingestion lock is taken.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from salesml.schemas import TABLES
from salesml.warehouse import connect, quote
from serving.events.journal import Entry

Row = dict[str, Any]
COLUMNS = TABLES["leads"].column_names


def _plain(value: Any) -> Any:
    """A warehouse value as an event would send it (``None`` when empty)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def warehouse_leads(warehouse: Path, ids: Iterable[str]) -> dict[str, Row]:
    """The leads of ``ids`` in the warehouse (``{}`` when there is none yet), without empty
    fields. Raises ``WarehouseError`` when another process holds it past the wait."""
    wanted = sorted(set(ids))
    if not wanted or not warehouse.exists():
        return {}
    con = connect(warehouse, read_only=True)
    try:
        cursor = con.execute(
            f"SELECT {', '.join(quote(c) for c in COLUMNS)} FROM leads WHERE lead_id IN "
            "(SELECT unnest(?::VARCHAR[]))",
            [wanted],
        )
        found = cursor.fetchall()
    finally:
        con.close()
    out: dict[str, Row] = {}
    for values in found:
        row = {c: _plain(v) for c, v in zip(COLUMNS, values, strict=True)}
        out[str(row["lead_id"])] = {c: v for c, v in row.items() if v is not None}
    return out


class PendingLeads:
    """Lead rows journaled and not folded yet: ``lead_id -> (seq, row)``, the newest row of
    each lead. ``folds`` counts folds, so a lookup made before one can tell it may be stale."""

    def __init__(self, unfolded: Sequence[Entry] = ()) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[int, Row]] = {}
        self.folds = 0
        for entry in unfolded:
            self.note(entry.seq, (entry.rows or {}).get("leads", []))

    def get(self, lead_id: str) -> Row | None:
        with self._lock:
            found = self._rows.get(lead_id)
        return None if found is None else dict(found[1])

    def __contains__(self, lead_id: object) -> bool:
        return lead_id in self._rows

    def note(self, seq: int, rows: Iterable[Row]) -> None:
        with self._lock:
            for row in rows:
                lead = str(row["lead_id"])
                if lead not in self._rows or self._rows[lead][0] <= seq:
                    self._rows[lead] = (seq, dict(row))

    def folded(self, entries: Sequence[Entry]) -> None:
        """``entries`` are in the warehouse: their leads are read from it again (a row of a
        later, unfolded entry stays)."""
        with self._lock:
            for entry in entries:
                for row in (entry.rows or {}).get("leads", []):
                    lead = str(row["lead_id"])
                    if lead in self._rows and self._rows[lead][0] <= entry.seq:
                        del self._rows[lead]
            self.folds += 1

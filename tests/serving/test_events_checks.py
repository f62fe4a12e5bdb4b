"""An event's rows are checked by the import rules: ``serving.events.checks`` (row by row, in
Python) gives the same verdict per field as the importer's DuckDB validation on the same rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from salesml.importers.base import SOURCE_ROW, SourceTable
from salesml.importers.validate import Limits, stage_sources
from salesml.schemas import TABLES
from serving.events.checks import check_row

NOW = datetime(2026, 12, 7, 12, 0)
LIMITS = Limits(now=NOW)
KNOWN = {"D1", "D2"}
GOOD_DEAL = {
    "deal_id": "D9",
    "created_at": "2026-03-01T10:00:00Z",
    "status": "open",
    "stage": "Proposal",
    "amount": "1200.50",
    "currency": "USD",
    "owner_id": "R1",
    "expected_close_date": "2026-05-01",
}
CASES: dict[str, list[dict[str, Any]]] = {
    "deals": [
        GOOD_DEAL,
        {**GOOD_DEAL, "amount": "-5"},
        {**GOOD_DEAL, "amount": "12,5x"},
        {**GOOD_DEAL, "amount": "1e13"},
        {**GOOD_DEAL, "amount": "$1,234.50"},
        {**GOOD_DEAL, "created_at": "yesterday"},
        {**GOOD_DEAL, "created_at": "1850-01-01"},
        {**GOOD_DEAL, "created_at": "2029-01-01"},
        {**GOOD_DEAL, "created_at": "2026-03-01T10:00:00+02:00"},
        {**GOOD_DEAL, "status": "pending"},
        {**GOOD_DEAL, "status": "won"},
        {**GOOD_DEAL, "status": "won", "closed_at": "2026-04-01"},
        {**GOOD_DEAL, "closed_at": "2026-04-01"},
        {**GOOD_DEAL, "status": "lost", "closed_at": "2026-01-01"},
        {**GOOD_DEAL, "currency": "usd"},
        {**GOOD_DEAL, "deal_id": "D\x07"},
        {**GOOD_DEAL, "owner_id": "R" * 300},
        {**GOOD_DEAL, "expected_close_date": "2031-01-01"},
        {**GOOD_DEAL, "created_at": None},
        {**GOOD_DEAL, "created_at": "45231"},
        {**GOOD_DEAL, "amount": "1234,5"},
        {**GOOD_DEAL, "amount": "12.345,67"},
        {**GOOD_DEAL, "amount": "1e400"},
    ],
    "stage_history": [
        {"deal_id": "D1", "stage": "Proposal", "changed_at": "2026-04-01T10:00:00Z"},
        {"deal_id": "D3", "stage": "Proposal", "changed_at": "2026-04-01T10:00:00Z"},
        {"deal_id": "D1", "stage": None, "changed_at": "2026-04-01T10:00:00Z"},
        {"deal_id": "D1", "stage": "Proposal", "changed_at": "2026-04-01", "amount": "-1"},
    ],
    "activities": [
        {
            "activity_id": "a1",
            "deal_id": "D2",
            "occurred_at": "2026-04-01 09:00:00",
            "type": "call",
        },
        {"activity_id": "a2", "deal_id": "D2", "occurred_at": "not a date", "type": "call"},
        {"activity_id": "a3", "deal_id": "D9", "occurred_at": "2026-04-01", "type": "call"},
    ],
    "leads": [
        {"lead_id": "L1", "created_at": "2026-04-01T00:00:00Z", "source": "web"},
        {"lead_id": "L2", "created_at": "2026-04-01", "converted_at": "2026-03-01"},
        {"lead_id": "L3", "created_at": None},
    ],
}


def _importer_fields(table: str, rows: list[dict[str, Any]]) -> list[set[str]]:
    """The fields the importer rejects in each row (one import of all of them)."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TEMP TABLE _known_deals AS SELECT unnest(?::VARCHAR[]) AS deal_id", [sorted(KNOWN)]
    )
    columns = sorted({c for row in rows for c in row})
    data = {c: pa.array([row.get(c) for row in rows], pa.string()) for c in columns}
    data[SOURCE_ROW] = pa.array(range(len(rows)), pa.int64())
    # Each row its own source: the importer's duplicate-key rule is not what is compared.
    for i, _ in enumerate(rows):
        one = pa.table({k: v.slice(i, 1) for k, v in data.items()})
        stage_sources(con, TABLES[table], [SourceTable(table, one, f"row{i}")], {}, LIMITS)
    found = con.execute("SELECT file, field FROM _rejects").fetchall()
    out: list[set[str]] = [set() for _ in rows]
    for file, field in found:
        out[int(str(file).removeprefix("row"))].add(str(field))
    return out


@pytest.mark.parametrize("table", sorted(CASES))
def test_event_checks_and_the_importer_reject_the_same_fields(table: str) -> None:
    rows = CASES[table]
    expected = _importer_fields(table, rows)
    for row, fields in zip(rows, expected, strict=True):
        _, problems = check_row(table, row, LIMITS, KNOWN)
        mine = {p.field for p in problems}
        if table == "deals" and mine:
            # The deal rules (closed_at, currency) are checked once the columns read: the
            # importer may name one more field of the same row; the verdict is the same.
            assert mine <= fields, (row, mine, fields)
        else:
            assert mine == fields, (row, mine, fields)
        assert bool(mine) == bool(fields), row


def test_an_unreadable_event_value_is_told_the_form_to_send() -> None:
    """An event has no --mapping or --decimal: its reasons name the accepted form, and what
    the value looks like when that explains it."""
    _, serial = check_row("deals", {**GOOD_DEAL, "created_at": "45231"}, LIMITS, KNOWN)
    _, comma = check_row("deals", {**GOOD_DEAL, "amount": "€ 1.234,5"}, LIMITS, KNOWN)
    _, huge = check_row("deals", {**GOOD_DEAL, "amount": 10**400}, LIMITS, KNOWN)
    assert [p.field for p in serial + comma + huge] == ["created_at", "amount", "amount"]
    assert "Excel serial date" in serial[0].reason and "ISO 8601" in serial[0].reason
    assert "decimal separator" in comma[0].reason and "JSON number" in comma[0].reason
    assert "not a finite number" in huge[0].reason
    for problem in serial + comma + huge:
        assert "mapping" not in problem.reason and "--decimal" not in problem.reason


def test_an_event_time_that_is_not_a_string_is_named_for_what_it_is() -> None:
    """occurred_at sent as a number or a boolean is not 'missing': the reason says what came
    and what to send; an Excel serial date in a string names the date it would be."""
    from serving.events.checks import event_hint
    from serving.events.shapes import Unusable, read_canonical

    base = {"event_id": "e1", "type": "activity.logged", "activity": {"deal_id": "D1"}}
    number, boolean, missing = read_canonical(
        [{**base, "occurred_at": 45231}, {**base, "occurred_at": True}, base]
    ).events
    assert isinstance(number, Unusable) and number.field is not None
    assert "occurred_at" in number.field and "must be a string" in number.reason
    assert "Excel serial date" in number.reason
    assert isinstance(boolean, Unusable) and "boolean" in boolean.reason
    assert isinstance(missing, Unusable) and "is required" in missing.reason
    assert "2023-11-01" in event_hint("timestamp", "45231")

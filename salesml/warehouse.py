"""The embedded warehouse: one DuckDB file per workspace, one table per canonical table.

Rows are upserted by key. Every row carries ``_row_hash`` (a hash of its canonical values and
attributes), so a re-import can tell new, changed and unchanged rows apart and an identical
export changes nothing. Custom deal attributes live in ``attr_<name>`` columns whose kind is
recorded in ``_attributes``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from salesml.errors import WarehouseError
from salesml.schemas import ATTRIBUTE_PREFIX, TABLES, TableSchema

if TYPE_CHECKING:
    import pandas as pd

AttributeKind = str  # "numeric" | "categorical"


def quote(name: str) -> str:
    """Quote an identifier for DuckDB."""
    return '"' + name.replace('"', '""') + '"'


WIDENED = {("BIGINT", "DOUBLE")}
"""Column type changes a warehouse made before takes on its next write connection (a whole
number column that became a number: ``web_sessions.key_events``, fractional in GA4). Values
are kept; a narrower column would otherwise round every new value it is given."""


def create_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every canonical table (and the bookkeeping tables) if missing, and widen the
    columns of an older warehouse whose type the schema widened (``WIDENED``)."""
    for table in TABLES.values():
        cols = ", ".join(f"{quote(c.name)} {c.duckdb_type}" for c in table.columns)
        con.execute(f"CREATE TABLE IF NOT EXISTS {table.name} ({cols}, _row_hash UBIGINT)")
    _widen(con)
    con.execute(
        "CREATE TABLE IF NOT EXISTS _attributes (table_name VARCHAR, name VARCHAR, "
        "kind VARCHAR, source_column VARCHAR)"
    )
    con.execute(
        "CREATE TABLE IF NOT EXISTS _imports (import_id VARCHAR, started_at TIMESTAMP, "
        "format VARCHAR, source VARCHAR, summary JSON)"
    )


def _widen(con: duckdb.DuckDBPyConnection) -> None:
    wanted = {(t.name, c.name): c.duckdb_type for t in TABLES.values() for c in t.columns}
    found = con.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = 'main' AND table_catalog = current_database()"
    ).fetchall()
    for table, column, kind in found:
        target = wanted.get((str(table), str(column)))
        if target is not None and (str(kind), target) in WIDENED:
            con.execute(f"ALTER TABLE {quote(table)} ALTER {quote(column)} TYPE {target}")


LOCK_WAIT_SECONDS = 20.0
"""How long opening the warehouse waits for another process's hold on it (the server folds
CRM events in short write transactions; docs/events.md) before giving up."""


def connect(
    path: Path, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS
) -> duckdb.DuckDBPyConnection:
    """Open (and, unless read-only, create) the warehouse at ``path``.

    DuckDB lets one process write a file, and no other process read it meanwhile: when
    another process holds it, opening is retried for up to ``wait_seconds``. Inside one process
    a read-only and a read-write connection cannot be open at once either (the server's event
    fold writes while its loader reads): that is waited out the same way.
    """
    if read_only and not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}; import an export first: salesml import PATH --format ..."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    pause = 0.02
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except (duckdb.IOException, duckdb.ConnectionException) as exc:
            message = str(exc).lower()
            held = "lock" in message or "different configuration" in message
            if not held or time.monotonic() + pause > deadline:
                raise WarehouseError(
                    f"cannot open the warehouse at {path}: {exc}. Is another salesml process "
                    "using it?"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
    con.execute("SET TimeZone = 'UTC'")
    if not read_only:
        create_schema(con)
    return con


@dataclass(frozen=True)
class Warehouse:
    """Access to one workspace's warehouse file."""

    path: Path

    @contextmanager
    def connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect(self.path, read_only=read_only)
        try:
            yield con
        finally:
            con.close()

    def read(self, table: str) -> pd.DataFrame:
        """The whole table as a DataFrame, without bookkeeping columns."""
        if table not in TABLES:
            raise WarehouseError(f"unknown table {table!r}; tables are {', '.join(TABLES)}")
        with self.connection(read_only=True) as con:
            df = con.execute(f"SELECT * EXCLUDE (_row_hash) FROM {table}").df()
        return df

    def counts(self) -> dict[str, int]:
        with self.connection(read_only=True) as con:
            return {
                t: int(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0])  # type: ignore[index]
                for t in TABLES
            }


def attribute_columns(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """``{column: kind}`` of the custom attributes a table has in the warehouse."""
    rows = con.execute(
        "SELECT name, kind FROM _attributes WHERE table_name = ? ORDER BY name", [table]
    ).fetchall()
    return {ATTRIBUTE_PREFIX + str(name): str(kind) for name, kind in rows}


def table_columns(con: duckdb.DuckDBPyConnection, table: TableSchema) -> list[str]:
    """Canonical columns followed by the table's attribute columns, in warehouse order."""
    return list(table.column_names) + list(attribute_columns(con, table.name))


# Every event timestamp in the data: what "the data's as-of" is computed from.
EVENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "deals": ("created_at", "closed_at"),
    "stage_history": ("changed_at",),
    "activities": ("occurred_at",),
    "leads": ("created_at", "converted_at", "disqualified_at"),
    "nps_responses": ("responded_at",),
    # A day of web analytics (GA4) is an event; marketing_spend's period is the first day of a
    # budget period, not a moment anything happened, and stays out.
    "web_sessions": ("period",),
}


@dataclass(frozen=True)
class DataSpan:
    """The first and the latest event in the warehouse (``None`` when it holds none).

    ``end`` is the data's as-of: the default "today" of every command and endpoint. It never
    lies after the ``now`` it was computed with, so a deal dated in the future cannot move it.
    """

    start: datetime | None
    end: datetime | None

    def warnings(self, as_of: datetime) -> list[str]:
        """What is odd about scoring, forecasting or reporting as of ``as_of`` on this data."""
        if self.start is None or self.end is None:
            return []
        day = as_of.replace(tzinfo=None)
        if day.date() > self.end.date():
            return [
                f"as-of {day.date()} is after the data's latest event ({self.end.date()}): "
                "anything that happened since is missing from the export"
            ]
        if day < self.start:
            return [
                f"as-of {day.date()} is before the data's first event ({self.start.date()}): "
                "there is nothing to work from"
            ]
        return []


def data_span(con: duckdb.DuckDBPyConnection, now: datetime | None = None) -> DataSpan:
    """The first and latest event stamped in any table, the latest capped at ``now``."""
    present = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    parts = [
        f"SELECT min({quote(c)}) AS lo, max({quote(c)}) AS hi FROM {table}"
        for table, columns in EVENT_COLUMNS.items()
        if table in present
        for c in columns
    ]
    if not parts:
        return DataSpan(None, None)
    union = " UNION ALL ".join(parts)
    ((start, end),) = con.execute(
        f"SELECT CAST(min(lo) AS TIMESTAMP), CAST(max(hi) AS TIMESTAMP) FROM ({union})"
    ).fetchall()
    if end is not None and now is not None:
        end = min(end, now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now)
    return DataSpan(start, end)

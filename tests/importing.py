"""Shared helpers for importer tests: import an export twice and inspect the outcome."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from salesml.importers import ImportBatch, ImportSummary, run_import
from salesml.importers.pipeline import REJECT_FIELDS, REJECT_REASONS
from salesml.warehouse import connect


@dataclass
class Imported:
    """Two imports of the same export into one warehouse, and a connection to it."""

    first: ImportSummary
    second: ImportSummary
    con: duckdb.DuckDBPyConnection

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or []).fetchall()

    def rejects(self) -> list[dict[str, str]]:
        """Rows of the first import's rejects file."""
        assert self.first.rejects_file is not None
        with Path(self.first.rejects_file).open(encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def reasons(self) -> dict[tuple[str, str, str], str]:
        """(table, row, field) → reason, from the first import's rejects file."""
        out = {}
        for r in self.rejects():
            fields = r["field"].split(REJECT_FIELDS)
            reasons = r["reason"].split(REJECT_REASONS)
            assert len(fields) == len(reasons), r  # one reason per field, in the same order
            for name, why in zip(fields, reasons, strict=True):
                out[(r["table"], r["row"], name)] = why
        return out


def import_twice(
    read: Callable[[], ImportBatch], home: Path, twice: bool = True
) -> Iterator[Imported]:
    """Import ``read()`` into ``home`` (twice, unless told otherwise: then ``second`` is
    ``first``); yields the outcome and closes the connection afterwards."""
    warehouse = home / "w.duckdb"
    first = run_import(read(), warehouse, home / "rejects")
    second = run_import(read(), warehouse, home / "rejects") if twice else first
    con = connect(warehouse)
    yield Imported(first, second, con)
    con.close()

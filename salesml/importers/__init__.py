"""Importers: each turns one kind of CRM export into canonical tables for the shared pipeline."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pyarrow as pa

from salesml.errors import ConfigError
from salesml.importers.base import ImportBatch, SourceTable, collecting_unparsed
from salesml.importers.pipeline import ImportSummary, TableCounts, run_import
from salesml.schemas import TABLES

FORMATS = (
    "canonical",
    "maven",
    "salesforce",
    "hubspot",
    "zoho",
    "pipedrive",
    "monday",
    "ga4",
    "mapping",
)


def read_export(
    path: Path, fmt: str, mapping: Path | None = None, decimal: str | None = None
) -> ImportBatch:
    """Read an export of format ``fmt`` (one of ``FORMATS``) into an ``ImportBatch``; lines of
    its CSV files that are not rows are left out and listed in ``unparsed`` (the rejects file
    gets them). ``decimal=","``: the export writes numbers with a decimal comma (``1.234,50``,
    ``1234,5``), read as such in every number column of the data model."""
    if decimal not in (None, ".", ","):
        raise ConfigError(f"--decimal is '.' or ',', not {decimal!r}")
    if decimal == "," and fmt == "mapping":
        raise ConfigError(
            "with --format mapping, declare the decimal comma in the mapping file (decimal: "
            '"," at the top, or per field) instead of --decimal; see docs/mapping.md'
        )
    with collecting_unparsed() as unparsed:
        batch = _read_export(path, fmt, mapping)
    batch.unparsed = [*batch.unparsed, *unparsed]
    if decimal == ",":
        batch.tables = [decimal_comma(source) for source in batch.tables]
    return batch


def decimal_comma(source: SourceTable) -> SourceTable:
    """``source`` with its text number columns (canonical ``float`` / ``int``) read with a
    decimal comma: ``12.345,67`` → ``12345.67``, ``1234,5`` → ``1234.5``; a value that is not
    written so (``1234.5``) is rejected rather than read as another number. Typed (Parquet)
    columns are numbers already and stay as they are."""
    data = source.data
    if not isinstance(data, pa.Table) or source.table not in TABLES:
        return source
    columns = {
        col.name
        for col in TABLES[source.table].columns
        if col.kind in ("float", "int")
        and col.name in data.column_names
        and pa.types.is_string(data.column(col.name).type)
    }
    return replace(source, decimal_comma=source.decimal_comma | columns)


def _read_export(path: Path, fmt: str, mapping: Path | None) -> ImportBatch:
    from salesml.importers.canonical import read_canonical
    from salesml.importers.ga4 import read_ga4
    from salesml.importers.hubspot import read_hubspot
    from salesml.importers.mapping import read_mapped
    from salesml.importers.maven import read_maven
    from salesml.importers.monday import read_monday
    from salesml.importers.pipedrive import read_pipedrive
    from salesml.importers.salesforce import read_salesforce
    from salesml.importers.zoho import read_zoho

    if fmt == "mapping":
        if mapping is None:
            raise ConfigError(
                "--format mapping needs --mapping FILE (a YAML mapping; see docs/mapping.md)"
            )
        return read_mapped(path, mapping)
    if mapping is not None:
        raise ConfigError(f"--mapping only applies to --format mapping, not {fmt}")
    readers: dict[str, Callable[[Path], ImportBatch]] = {
        "canonical": read_canonical,
        "maven": read_maven,
        "salesforce": read_salesforce,
        "hubspot": read_hubspot,
        "zoho": read_zoho,
        "pipedrive": read_pipedrive,
        "monday": read_monday,
        "ga4": read_ga4,
    }
    if fmt not in readers:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return readers[fmt](path)


__all__ = ["FORMATS", "ImportBatch", "ImportSummary", "TableCounts", "read_export", "run_import"]

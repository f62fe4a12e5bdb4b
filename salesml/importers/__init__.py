"""Importers: each turns one kind of CRM export into canonical tables for the shared pipeline."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from salesml.errors import ConfigError
from salesml.importers.base import ImportBatch, collecting_unparsed
from salesml.importers.pipeline import ImportSummary, TableCounts, run_import

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


def read_export(path: Path, fmt: str, mapping: Path | None = None) -> ImportBatch:
    """Read an export of format ``fmt`` (one of ``FORMATS``) into an ``ImportBatch``; lines of
    its CSV files that are not rows are left out and listed in ``unparsed`` (the rejects file
    gets them)."""
    with collecting_unparsed() as unparsed:
        batch = _read_export(path, fmt, mapping)
    batch.unparsed = [*batch.unparsed, *unparsed]
    return batch


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

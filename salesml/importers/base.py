"""What every importer hands to the shared import pipeline, and the file readers they share.

A format-specific importer only renames and recodes: it turns an export into ``SourceTable``s
whose columns carry canonical names (values may still be raw strings). Parsing, validation,
rejects, de-duplication and the upsert are the pipeline's job, so every format gets the same
guarantees.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from salesml.errors import ImportFailedError, MissingColumnsError, WrongFileError

SOURCE_ROW = "_source_row"
AttributeKind = Literal["numeric", "categorical"]
TABULAR_SUFFIXES = (".csv", ".parquet", ".csv.gz")


@dataclass
class SourceTable:
    """Rows for one canonical table, from one source file.

    Attributes:
        table: canonical table name.
        data: canonical columns (a subset, raw strings or typed), optional attribute columns,
            and ``_source_row`` (the line in the source file, header = line 1).
        source_file: path shown in messages and the rejects file.
        date_formats: strptime formats per column, tried in order (default: ISO 8601).
        attributes: custom attribute columns in ``data`` → kind (``None`` = infer).
        hints: per canonical column, how to fix a bad value in this format.
    """

    table: str
    data: pa.Table
    source_file: str
    date_formats: dict[str, list[str]] = field(default_factory=dict)
    attributes: dict[str, AttributeKind | None] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportBatch:
    """Everything one ``salesml import`` brings in, plus notes for the user."""

    format: str
    source: str
    tables: list[SourceTable]
    warnings: list[str] = field(default_factory=list)


def snake_case(name: str) -> str:
    """``"Competitor Name"`` → ``"competitor_name"`` (for attribute names)."""
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name.strip())
    s = re.sub(r"[^0-9a-zA-Z]+", "_", s).strip("_").lower()
    return s or "attribute"


def find_table_file(folder: Path, stem: str) -> Path | None:
    """The CSV/Parquet file in ``folder`` named ``stem`` (case-insensitive), if any."""
    for suffix in TABULAR_SUFFIXES:
        for candidate in folder.iterdir():
            if candidate.name.lower() == f"{stem.lower()}{suffix}":
                return candidate
    return None


def read_tabular(path: Path) -> pa.Table:
    """Read a CSV (every column as text, so nothing is coerced silently) or Parquet file."""
    name = path.name.lower()
    if not path.exists():
        raise ImportFailedError(f"{path} does not exist; check the path")
    if name.endswith(".parquet"):
        try:
            return pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise WrongFileError(str(path), "a Parquet file", f"({exc})") from exc
    if name.endswith((".csv", ".csv.gz", ".txt")):
        return _read_csv_as_text(path)
    raise WrongFileError(str(path), "a .csv or .parquet file", "rename or convert the file")


def _read_csv_as_text(path: Path) -> pa.Table:
    read_options = pacsv.ReadOptions(block_size=64 << 20)
    parse_options = pacsv.ParseOptions(newlines_in_values=True)
    try:
        header = pacsv.open_csv(
            path,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=pacsv.ConvertOptions(include_columns=[]),
        )
        names = header.schema.names
        header.close()
    except pa.ArrowInvalid as exc:
        raise WrongFileError(str(path), "a CSV file with a header row", f"({exc})") from exc
    except UnicodeDecodeError as exc:
        raise WrongFileError(str(path), "UTF-8 text", "re-save it as UTF-8 CSV") from exc
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise WrongFileError(
            str(path),
            "a CSV with unique column names",
            f"column(s) {', '.join(dupes)} appear twice; rename one of them",
        )
    convert = pacsv.ConvertOptions(
        column_types={n: pa.string() for n in names},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=True,
    )
    try:
        return pacsv.read_csv(
            path, read_options=read_options, parse_options=parse_options, convert_options=convert
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "utf8" in msg.lower() or "utf-8" in msg.lower():
            raise WrongFileError(str(path), "UTF-8 text", "re-save it as UTF-8 CSV") from exc
        raise WrongFileError(str(path), "a well-formed CSV file", f"({msg})") from exc


def with_source_rows(data: pa.Table, header_lines: int = 1) -> pa.Table:
    """Append ``_source_row``: the 1-based line of each row in its file (header = line 1)."""
    rows = pa.array(range(header_lines + 1, header_lines + 1 + data.num_rows), pa.int64())
    return data.append_column(SOURCE_ROW, rows)


def require_columns(path: str, data: pa.Table, required: list[str], hint: str = "") -> None:
    """Raise ``MissingColumnsError`` naming what is missing and what the file has."""
    missing = [c for c in required if c not in data.column_names]
    if missing:
        raise MissingColumnsError(path, missing, data.column_names, hint)


def select_renamed(data: pa.Table, renames: dict[str, str]) -> pa.Table:
    """Keep the source columns in ``renames`` (source → canonical) that exist, renamed."""
    cols = [c for c in renames if c in data.column_names]
    out = data.select(cols).rename_columns([renames[c] for c in cols])
    if SOURCE_ROW in data.column_names:
        out = out.append_column(SOURCE_ROW, data.column(SOURCE_ROW))
    return out

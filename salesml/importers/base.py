"""What every importer hands to the shared import pipeline, and the file readers they share.

A format-specific importer only renames and recodes: it turns an export into ``SourceTable``s
whose columns carry canonical names (values may still be raw strings). Parsing, validation,
rejects, de-duplication and the upsert are the pipeline's job, so every format gets the same
guarantees.
"""

from __future__ import annotations

import contextlib
import contextvars
import csv
import gzip
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from salesml.errors import ImportFailedError, MissingColumnsError, WrongFileError

SOURCE_ROW = "_source_row"
AttributeKind = Literal["numeric", "categorical"]
TABULAR_SUFFIXES = (".csv", ".parquet", ".csv.gz", ".txt")


@dataclass(frozen=True)
class ParquetFile:
    """A Parquet source read lazily by DuckDB (large exports never pass through Python).

    ``renames`` maps source column → name in the source table; unlisted columns are dropped.
    ``_source_row`` is the 1-based row number in the file.
    """

    path: Path
    renames: dict[str, str]
    schema: pa.Schema
    num_rows: int

    @classmethod
    def open(cls, path: Path) -> ParquetFile:
        try:
            meta = pq.read_metadata(path)
            schema = pq.read_schema(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise WrongFileError(str(path), "a Parquet file", f"({exc})") from exc
        names = [n for n in schema.names if n != SOURCE_ROW]
        return cls(path, {n: n for n in names}, schema, meta.num_rows)

    @property
    def column_names(self) -> list[str]:
        return [*self.renames.values(), SOURCE_ROW]

    def field_type(self, name: str) -> pa.DataType:
        source = next(s for s, t in self.renames.items() if t == name)
        return self.schema.field(source).type

    def with_renames(self, renames: dict[str, str]) -> ParquetFile:
        """Rename columns (old → new); unnamed columns keep their names."""
        return ParquetFile(
            self.path,
            {s: renames.get(t, t) for s, t in self.renames.items()},
            self.schema,
            self.num_rows,
        )

    def without(self, columns: list[str]) -> ParquetFile:
        return ParquetFile(
            self.path,
            {s: t for s, t in self.renames.items() if t not in columns},
            self.schema,
            self.num_rows,
        )

    def sql(self) -> str:
        path = str(self.path).replace("'", "''")
        cols = ", ".join(
            '"' + s.replace('"', '""') + '" AS "' + t.replace('"', '""') + '"'
            for s, t in self.renames.items()
        )
        return (
            f"(SELECT {cols}, file_row_number + 1 AS {SOURCE_ROW} "
            f"FROM read_parquet('{path}', file_row_number = true))"
        )


SourceData: TypeAlias = pa.Table | ParquetFile


def column_names(data: SourceData) -> list[str]:
    """Column names of a source, Arrow table or Parquet file alike."""
    return list(data.column_names)


def column_type(data: SourceData, name: str) -> pa.DataType:
    """Arrow type of a source column."""
    if isinstance(data, ParquetFile):
        return data.field_type(name)
    return data.schema.field(name).type


@dataclass
class SourceTable:
    """Rows for one canonical table, from one source file.

    Attributes:
        table: canonical table name.
        data: canonical columns (a subset, raw strings or typed), optional attribute columns,
            and ``_source_row`` (the line in the source file, header = line 1), which must be
            unique within the source (rejects are counted per file and row).
        source_file: path shown in messages and the rejects file.
        date_formats: strptime formats per column, tried in order (default: ISO 8601).
        attributes: custom attribute columns in ``data`` → kind (``None`` = infer).
        hints: per canonical column, how to fix a bad value in this format.
        decimal_comma: text number columns written with ``,`` as the decimal separator and
            ``.`` or a space between groups of three digits (``1.234,50``); a value that is
            not such a number (``1234.5``, ``$12,500.00``) is rejected, never re-read.
        line_group: sources with the same ``line_group`` are read from the same lines of one
            file (a GA4 line is a ``web_sessions`` row and a ``marketing_spend`` row): a line
            rejected in one of them is rejected in all of them, so no part of a bad line is
            imported on its own.
        headers: column in ``data`` → its header as written in the source file, where they
            differ (a renamed column, a custom attribute): messages name the file's own headers.
        owners_of_deals: reps named after the deals' owners (the export has no reps table):
            a rep is kept only when an accepted deal line of this import names its owner,
            and takes its name from the first such line — never from a rejected deal's line
            (``owner_reps``).
        owner_lines: for ``owners_of_deals``, every line naming an owner: ``owner_id``,
            ``name``, ``_source_row`` and the deals file (``_source_file``) it is a line of.
    """

    table: str
    data: SourceData
    source_file: str
    date_formats: dict[str, list[str]] = field(default_factory=dict)
    attributes: dict[str, AttributeKind | None] = field(default_factory=dict)
    hints: dict[str, str] = field(default_factory=dict)
    decimal_comma: frozenset[str] = frozenset()
    line_group: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    owners_of_deals: bool = False
    owner_lines: pa.Table | None = None


def owner_reps(
    ids: pa.ChunkedArray | pa.Array,
    names: pa.ChunkedArray | pa.Array,
    rows: pa.ChunkedArray | pa.Array,
    deals_file: str,
    hints: dict[str, str],
) -> SourceTable:
    """Reps named after a deals file's owners (``ids``, ``names`` and ``rows``: the lines
    naming one). One row per owner, first line first; the import keeps a rep only when an
    accepted line names its owner and names it after the first accepted one
    (``pipeline._reps_of_accepted_deals``), so nothing of a rejected line makes or names a rep."""
    unique = pc.unique(ids)
    first = pc.index_in(unique, ids)
    reps = pa.table(
        {"owner_id": unique, "name": pc.take(names, first), SOURCE_ROW: pc.take(rows, first)}
    )
    lines = pa.table(
        {
            "owner_id": ids,
            "name": names,
            SOURCE_ROW: rows,
            "_source_file": pa.array([deals_file] * len(ids), pa.string()),
        }
    )
    return SourceTable(
        "reps",
        reps,
        f"{deals_file} [owners]",
        hints=hints,
        owners_of_deals=True,
        owner_lines=lines,
    )


@dataclass(frozen=True)
class UnparsedRow:
    """A line of a CSV file that is not a row of its table (a wrong number of fields): it
    goes to the rejects file with its line, and the rest of the file is imported."""

    file: str
    line: int
    reason: str
    record: str
    # What the line is, in the rejects file's ``table`` column: an unreadable line, or a line
    # the format has but the data model does not take (a Monday subitem, ``SUBITEM``).
    kind: str = "(unreadable line)"


SUBITEM = "(subitem)"


@dataclass
class ImportBatch:
    """Everything one ``salesml import`` brings in, plus notes for the user."""

    format: str
    source: str
    tables: list[SourceTable]
    warnings: list[str] = field(default_factory=list)
    unparsed: list[UnparsedRow] = field(default_factory=list)


_UNPARSED: contextvars.ContextVar[list[UnparsedRow] | None] = contextvars.ContextVar(
    "unparsed_rows", default=None
)
ROW_LINES = b"salesml.row_lines"  # schema metadata: each row's source line, when not 1:1
SKIPPED_LINES = b"salesml.skipped_lines"  # schema metadata: lines read_tabular left out


@contextlib.contextmanager
def collecting_unparsed() -> Iterator[list[UnparsedRow]]:
    """Inside: ``read_tabular`` skips lines that are not rows and lists them here (outside,
    such a line fails the read, naming it)."""
    rows: list[UnparsedRow] = []
    token = _UNPARSED.set(rows)
    try:
        yield rows
    finally:
        _UNPARSED.reset(token)


def note_unparsed(row: UnparsedRow) -> None:
    """List a line that is not a row of its table (inside ``collecting_unparsed``: it goes to
    the rejects file); outside, the read fails naming it."""
    collector = _UNPARSED.get()
    if collector is None:
        raise WrongFileError(
            row.file, "a file whose lines are all rows", f"line {row.line}: {row.reason}"
        )
    collector.append(row)


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


def sniff_delimiter(path: Path) -> str:
    """The header's most frequent of ``, ; TAB |`` (European exports often use ``;``)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return ","
    counts = {d: header.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else ","


def _read_csv_as_text(path: Path) -> pa.Table:
    read_options = pacsv.ReadOptions(block_size=64 << 20)
    parse_options = pacsv.ParseOptions(delimiter=sniff_delimiter(path), newlines_in_values=True)
    try:
        header = pacsv.open_csv(
            path,
            read_options=read_options,
            parse_options=pacsv.ParseOptions(
                delimiter=parse_options.delimiter,
                newlines_in_values=True,
                invalid_row_handler=lambda _row: "skip",  # the read below lists them
            ),
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
    bad: list[pacsv.InvalidRow] = []

    def count(row: pacsv.InvalidRow) -> str:
        bad.append(row)
        return "skip"

    options = pacsv.ParseOptions(
        delimiter=parse_options.delimiter, newlines_in_values=True, invalid_row_handler=count
    )
    try:
        table = pacsv.read_csv(
            path, read_options=read_options, parse_options=options, convert_options=convert
        )
        if bad:  # read again on one thread: only then does Arrow know each bad row's record
            bad.clear()
            one = pacsv.ReadOptions(block_size=64 << 20, use_threads=False)
            table = pacsv.read_csv(
                path, read_options=one, parse_options=options, convert_options=convert
            )
        starts = _record_lines(path, parse_options.delimiter, table.num_rows + len(bad) + 1)
        line_of: dict[int, int] = {}
        if starts is not None:
            table, line_of = _with_row_lines(table, starts, bad)
        return _skipping(table, path, names, bad, line_of) if bad else table
    except pa.ArrowInvalid as exc:
        msg = str(exc)
        if "utf8" in msg.lower() or "utf-8" in msg.lower():
            raise WrongFileError(str(path), "UTF-8 text", "re-save it as UTF-8 CSV") from exc
        raise WrongFileError(str(path), "a well-formed CSV file", f"({msg})") from exc


def _physical_lines(path: Path) -> int:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    lines, last = 0, b"\n"
    with opener(path, "rb") as fh:
        while chunk := fh.read(16 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


def _record_lines(path: Path, delimiter: str, records: int) -> list[int] | None:
    """The source line each record starts on (header first), when records and lines differ
    (a quoted value spanning lines, blank lines); ``None`` when every record is one line —
    the common case, told by counting newlines, so large files are not scanned twice."""
    if _physical_lines(path) == records:
        return None
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    starts: list[int] = []
    with opener(path, "rt", encoding="utf-8-sig", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        previous = 0
        try:
            for record in reader:
                if record:  # Arrow skips blank lines: they are not records
                    starts.append(previous + 1)
                previous = reader.line_num
        except csv.Error:  # a field beyond the csv module's limit: keep Arrow's numbering
            return None
    return starts


def _with_row_lines(
    table: pa.Table, starts: list[int], bad: list[pacsv.InvalidRow]
) -> tuple[pa.Table, dict[int, int]]:
    """Arrow numbers rows by record (header = 1), not by line: each kept row's source line
    (``ROW_LINES`` metadata, read by ``with_source_rows``) and each bad row's (Arrow's record
    number -> line), from ``starts``."""
    skipped = {int(row.number) for row in bad if row.number is not None}
    kept = [line for n, line in enumerate(starts[1:], start=2) if n not in skipped]
    if len(kept) != table.num_rows:  # the two readers disagree: keep Arrow's numbering
        return table, {}
    line_of = {n: starts[n - 1] for n in skipped if 0 < n <= len(starts)}
    metadata = dict(table.schema.metadata or {}) | {ROW_LINES: ",".join(map(str, kept)).encode()}
    return table.replace_schema_metadata(metadata), line_of


def _skipping(
    table: pa.Table,
    path: Path,
    names: list[str],
    bad: list[pacsv.InvalidRow],
    line_of: dict[int, int] | None = None,
) -> pa.Table:
    """``table`` without the lines that are not rows: listed for the rejects file (inside
    ``collecting_unparsed``), else the read fails naming the first."""
    unparsed = [
        UnparsedRow(
            str(path),
            (line_of or {}).get(int(row.number), int(row.number)) if row.number is not None else 0,
            f"this line has {row.actual_columns} fields, the header has {row.expected_columns} "
            f"({', '.join(names[:4])}{', …' if len(names) > 4 else ''}); quote values that "
            "contain the separator, or fix the line",
            row.text,
        )
        for row in bad
    ]
    collector = _UNPARSED.get()
    if collector is None:
        first = unparsed[0]
        raise WrongFileError(
            str(path),
            "a CSV file whose lines all have the header's fields",
            f"line {first.line}: {first.reason}",
        )
    collector.extend(unparsed)
    lines = ",".join(str(u.line) for u in unparsed if u.line > 0)
    metadata = dict(table.schema.metadata or {}) | {SKIPPED_LINES: lines.encode()}
    return table.replace_schema_metadata(metadata)


def with_source_rows(data: pa.Table, header_lines: int = 1) -> pa.Table:
    """Append ``_source_row``: the 1-based line of each row in its file (header = line 1),
    counting the lines ``read_tabular`` left out (``collecting_unparsed``)."""
    known = (data.schema.metadata or {}).get(ROW_LINES)
    if known is not None:  # records spanning lines: each row's line was counted when read
        rows = np.array([int(v) for v in known.decode().split(",") if v], dtype=np.int64)
        return data.append_column(SOURCE_ROW, pa.array(rows))
    lines = np.arange(header_lines + 1, header_lines + 1 + data.num_rows, dtype=np.int64)
    skipped = (data.schema.metadata or {}).get(SKIPPED_LINES, b"")
    for line in sorted(int(v) for v in skipped.decode().split(",") if v):
        lines[lines >= line] += 1
    return data.append_column(SOURCE_ROW, pa.array(lines))


def require_columns(
    path: str,
    data: SourceData,
    required: list[str],
    hint: str = "",
    headers: dict[str, str] | None = None,
) -> None:
    """Raise ``MissingColumnsError`` naming what is missing and what the file has.

    ``headers`` maps a column of ``data`` to its header as written in the file, so the message
    lists the file's own headers rather than internal names (``attr_...``)."""
    names = column_names(data)
    missing = [c for c in required if c not in names]
    if missing:
        shown = headers or {}
        present = [shown.get(n, n) for n in names if n != SOURCE_ROW]
        raise MissingColumnsError(path, missing, present, hint)


def select_renamed(data: pa.Table, renames: dict[str, str]) -> pa.Table:
    """Keep the source columns in ``renames`` (source → canonical) that exist, renamed."""
    cols = [c for c in renames if c in data.column_names]
    out = data.select(cols).rename_columns([renames[c] for c in cols])
    if SOURCE_ROW in data.column_names:
        out = out.append_column(SOURCE_ROW, data.column(SOURCE_ROW))
    return out

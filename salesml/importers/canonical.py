"""The canonical format: a folder of CSV or Parquet files named after the tables."""

from __future__ import annotations

from pathlib import Path

from salesml.errors import ImportFailedError
from salesml.importers.base import (
    SOURCE_ROW,
    TABULAR_SUFFIXES,
    AttributeKind,
    ImportBatch,
    ParquetFile,
    SourceData,
    SourceTable,
    column_names,
    read_tabular,
    snake_case,
    with_source_rows,
)
from salesml.schemas import ATTRIBUTE_PREFIX, TABLES

MISSING_HINT = (
    "rename the column in the file's header to the canonical name (docs/data-model.md lists "
    "them), or import with --format mapping and a mapping file that names your column"
)


def read_canonical(path: Path) -> ImportBatch:
    """Read ``deals.csv`` / ``deals.parquet`` and any other canonical tables in ``path``.

    Files whose names start with ``_`` or ``.`` are skipped (the synthetic generator keeps its
    ground truth in ``_truth/``); other unknown files are reported as warnings. Extra columns
    on deals become custom attributes; extra columns elsewhere are reported and ignored.
    """
    if path.is_file():
        if path.stem.lower().removesuffix(".csv") == "deals":
            files = {"deals": path}
            folder = path.parent
        else:
            raise ImportFailedError(
                f"{path} is a file; --format canonical takes a folder of files named after the "
                f"tables ({', '.join(TABLES)}), or a single deals.csv/deals.parquet"
            )
    elif path.is_dir():
        folder = path
        files = {}
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(("_", ".")):
                continue
            stem = entry.name.lower()
            for suffix in TABULAR_SUFFIXES:
                stem = stem.removesuffix(suffix)
            if entry.is_file() and stem in TABLES and entry.name.lower().endswith(TABULAR_SUFFIXES):
                if stem in files:
                    raise ImportFailedError(
                        f"{folder} has two files for {stem} ({files[stem].name} and "
                        f"{entry.name}); keep one"
                    )
                files[stem] = entry
        if not files:
            raise ImportFailedError(
                f"no table files in {folder}; a canonical export holds files named after the "
                f"tables ({', '.join(TABLES)}), e.g. deals.csv or deals.parquet"
            )
    else:
        raise ImportFailedError(f"{path} does not exist; check the path")

    warnings: list[str] = []
    if path.is_dir():
        known = {f.name for f in files.values()}
        for entry in sorted(folder.iterdir()):
            if entry.name.startswith(("_", ".")) or entry.name in known:
                continue
            warnings.append(
                f"ignored {entry.name}: not a canonical table name "
                f"(expected files named {', '.join(TABLES)})"
            )
    sources = [_source(table, file, warnings) for table, file in files.items()]
    return ImportBatch("canonical", str(path), sources, warnings)


def _source(table: str, file: Path, warnings: list[str]) -> SourceTable:
    """One canonical table's file: columns named as the data model's, extras as attributes
    (deals) or dropped with a warning; ``headers`` keeps the file's own names for messages."""
    data: SourceData
    if file.name.lower().endswith(".parquet"):
        data = ParquetFile.open(file)
    else:
        data = with_source_rows(read_tabular(file))
    schema = TABLES[table]
    headers = {c: c for c in column_names(data)}
    data = _canonical_names(data, table, file, warnings, headers)
    extras = [c for c in column_names(data) if c not in schema.column_names and c != SOURCE_ROW]
    attributes: dict[str, AttributeKind | None] = {}
    if schema.allows_attributes:
        renames = {}
        for c in extras:
            name = ATTRIBUTE_PREFIX + snake_case(c.removeprefix(ATTRIBUTE_PREFIX))
            renames[c] = name
            attributes[name] = None
        data = _rename(data, renames)
        headers = {renames.get(c, c): h for c, h in headers.items()}
    elif extras:
        warnings.append(
            f"{file.name}: ignored column(s) {', '.join(extras)} (not part of {table}; only "
            "deals keep extra columns, as custom attributes)"
        )
        data = data.without(extras) if isinstance(data, ParquetFile) else data.drop_columns(extras)
    shown = {c: h for c, h in headers.items() if c != h}
    return SourceTable(
        table,
        data,
        str(file),
        attributes=attributes,
        hints={"_missing": MISSING_HINT},
        headers=shown,
    )


def _canonical_names(
    data: SourceData, table: str, file: Path, warnings: list[str], headers: dict[str, str]
) -> SourceData:
    """A column named as a canonical column but for case, spaces or punctuation (``Deal ID``,
    ``Created_At``, ``amount `` with a trailing space) is read as that column, with a warning,
    instead of becoming a custom attribute while the column is reported missing. When the
    export also has the exact name, nothing is renamed (the warning says which is used)."""
    wanted = set(TABLES[table].column_names)
    names = [c for c in column_names(data) if c != SOURCE_ROW]
    taken = {c for c in names if c in wanted}
    renames: dict[str, str] = {}
    for column in names:
        target = snake_case(column)
        if column in wanted or target not in wanted:
            continue
        if target in taken:
            warnings.append(
                f"{file.name}: column {column!r} reads as {target}, which the file also has: "
                f"{target!r} is used"
                + (" and this one kept as a custom attribute" if table == "deals" else "")
            )
            continue
        taken.add(target)
        renames[column] = target
    if renames:
        warnings.append(
            f"{file.name}: read "
            + ", ".join(f"{c!r} as {t}" for c, t in renames.items())
            + " (canonical column names are lower case with underscores)"
        )
    for column, target in renames.items():
        headers[target] = headers.pop(column)
    return _rename(data, renames) if renames else data


def _rename(data: SourceData, renames: dict[str, str]) -> SourceData:
    if isinstance(data, ParquetFile):
        return data.with_renames(renames)
    return data.rename_columns([renames.get(c, c) for c in data.column_names])

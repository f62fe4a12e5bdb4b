"""Assemble canonical Arrow tables (checked against ``salesml.schemas``) and write them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from salesml.schemas import TABLES, ColumnKind

Format = Literal["parquet", "csv"]
FORMATS: tuple[Format, ...] = ("parquet", "csv")


def _is_str(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_str(t.value_type)
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t))


KIND_CHECKS: dict[ColumnKind, Callable[[pa.DataType], bool]] = {
    "str": _is_str,
    "timestamp": lambda t: bool(pa.types.is_timestamp(t) and t.tz is None),
    "date": lambda t: bool(pa.types.is_date32(t)),
    "float": lambda t: bool(pa.types.is_float64(t)),
    "int": lambda t: bool(pa.types.is_int64(t)),
    "bool": lambda t: bool(pa.types.is_boolean(t)),
}


def canonical_table(
    name: str, columns: dict[str, pa.Array], extra: dict[str, pa.Array] | None = None
) -> pa.Table:
    """A table with exactly the canonical columns of ``name`` (in order), plus ``extra``.

    Args:
        name: Canonical table name (a key of ``salesml.schemas.TABLES``).
        columns: One Arrow array per canonical column, in schema order.
        extra: Custom attribute columns (only for tables that allow attributes).

    Returns:
        The assembled ``pa.Table``.

    Raises:
        ValueError: If the columns or their kinds do not match the canonical schema.
    """
    schema = TABLES[name]
    if tuple(columns) != schema.column_names:
        raise ValueError(f"{name}: columns {list(columns)} != canonical {schema.column_names}")
    for col in schema.columns:
        arr = columns[col.name]
        if not KIND_CHECKS[col.kind](arr.type):
            raise ValueError(f"{name}.{col.name}: {arr.type} is not a {col.kind} column")
    if extra and not schema.allows_attributes:
        raise ValueError(f"{name} does not allow custom attribute columns")
    clash = set(extra or {}) & set(schema.column_names)
    if clash:
        raise ValueError(f"{name}: attribute columns clash with canonical ones: {sorted(clash)}")
    return pa.table({**columns, **(extra or {})})


def file_path(out_dir: Path, name: str, fmt: Format) -> Path:
    """Where table ``name`` goes in ``out_dir``."""
    return out_dir / f"{name}.{fmt}"


LARGE_DICTIONARY = 1000


def _small_dictionaries_only(table: pa.Table) -> pa.Table:
    """Decode id columns with big dictionaries: Parquet writes plain strings twice as fast."""
    return pa.table([_plain_if_large(a) for a in table.columns], names=table.column_names)


def _plain_if_large(column: pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    if not pa.types.is_dictionary(column.type):
        return column
    arr = column.combine_chunks()
    return arr.dictionary_decode() if len(arr.dictionary) > LARGE_DICTIONARY else arr


def write_table(table: pa.Table, path: Path, fmt: Format) -> None:
    """Write ``table`` as Parquet (strings read back as plain strings) or CSV.

    Parquet files are written without the Arrow schema, so dictionary-encoded columns read
    back as plain strings; CSV timestamps are written to the second, nulls as empty fields.
    """
    if fmt == "parquet":
        pq.write_table(_small_dictionaries_only(table), path, store_schema=False)
        return
    cols = [
        arr.cast(pa.timestamp("s")) if pa.types.is_timestamp(arr.type) else arr
        for arr in table.columns
    ]
    pa_csv.write_csv(pa.table(cols, names=table.column_names), path)

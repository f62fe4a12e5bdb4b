"""Column helpers shared by the Salesforce, HubSpot and mapping importers (private).

They only rename, pick and recode text columns with pyarrow; parsing and validation stay in the
shared pipeline. Column helpers return arrays as long as the source table, so a row's
``_source_row`` keeps pointing at its line in the export; ``melt_stage_columns`` keeps each
cell's line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from salesml.errors import ImportFailedError, WrongFileError
from salesml.importers.base import SOURCE_ROW, TABULAR_SUFFIXES, SourceTable, snake_case
from salesml.schemas import ATTRIBUTE_PREFIX

TRUE_VALUES = ("true", "t", "1", "yes", "y")
FALSE_VALUES = ("false", "f", "0", "no", "n")
CLOSED_STATUSES = ("won", "lost")
_EPOCH_MS = r"^\d{12,13}$"
_ISO_DAY = r"^\d{4}-\d{2}-\d{2}$"
ONE_DAY_S = 86_400


def header_key(name: str) -> str:
    """Normalise a header for matching: ``"Deal Stage"``, ``"dealstage"`` → ``"dealstage"``."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def file_key(path: Path) -> str:
    """``"Opportunity History.csv"`` → ``"opportunityhistory"`` (suffix dropped, normalised)."""
    name = path.name.lower()
    for suffix in TABULAR_SUFFIXES:
        name = name.removesuffix(suffix)
    return header_key(name)


def tabular_files(folder: Path) -> list[Path]:
    """CSV/Parquet files directly in ``folder`` (hidden and ``_``-prefixed ones skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file()
        and not p.name.startswith((".", "_"))
        and p.name.lower().endswith(TABULAR_SUFFIXES)
    )


def deals_file(path: Path, product: str, hint: str, suffixes: tuple[str, ...] = ()) -> Path:
    """``path`` itself, or the one file with "deal" in its name in the folder ``path`` (CSV,
    Parquet, or a name ending in one of ``suffixes``); ``hint`` says what to pass instead."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise ImportFailedError(f"{path} does not exist; check the path")
    files = tabular_files(path)
    files += sorted(p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(suffixes))
    deal_files = [f for f in files if "deal" in f.name.lower()]
    if len(deal_files) == 1:
        return deal_files[0]
    if len(deal_files) > 1:
        raise ImportFailedError(
            f"{path} has several deals files ({', '.join(f.name for f in deal_files)}); pass "
            "the one to import as PATH"
        )
    raise WrongFileError(
        str(path),
        f"a {product} deals export",
        f"{hint}; found: " + (", ".join(f.name for f in files) or "no CSV/Parquet files"),
    )


def find_column(data: pa.Table, *aliases: str) -> str | None:
    """The first of ``aliases`` present in ``data`` (case, spaces and punctuation ignored)."""
    keys: dict[str, str] = {}
    for column in data.column_names:
        keys.setdefault(header_key(column), column)
    for alias in aliases:
        hit = keys.get(header_key(alias))
        if hit is not None:
            return hit
    return None


def canonical_headers(data: pa.Table, known: Iterable[str]) -> pa.Table:
    """Rename columns that match ``known`` names case-insensitively to their exact spelling.

    Salesforce Data Loader writes ``STAGENAME`` where the API says ``StageName``.
    """
    spelled = {name.lower(): name for name in known}
    names = [spelled.get(c.lower(), c) for c in data.column_names]
    if len(set(names)) != len(names):
        return data  # two spellings of one field: leave them alone, the user must choose
    return data.rename_columns(names)


def nulls(n: int) -> pa.Array:
    """``n`` empty text values."""
    return pa.nulls(n, pa.string())


def constant(n: int, value: str) -> pa.Array:
    """``n`` copies of ``value``."""
    return pa.array([value] * n, pa.string())


def text(data: pa.Table, column: str | None) -> pa.ChunkedArray:
    """A column as trimmed text, empty strings as null (all nulls when ``column`` is None)."""
    if column is None:
        return pa.chunked_array([nulls(data.num_rows)])
    values = data.column(column)
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    return blank_to_null(values)


def blank_to_null(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Trim text values and turn empty strings into nulls."""
    values = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def falses(n: int) -> pa.ChunkedArray:
    """An all-false mask of length ``n``."""
    return pa.chunked_array([pa.array([False] * n, pa.bool_())])


def coalesce(*arrays: pa.ChunkedArray) -> pa.ChunkedArray:
    """Per row, the first non-null value."""
    if len(arrays) == 1:
        return arrays[0]
    return pc.coalesce(*arrays)


def first_present(data: pa.Table, *names: str) -> pa.ChunkedArray:
    """Per row, the first filled value among the columns of ``names`` that exist."""
    columns = [c for c in (find_column(data, n) for n in names) if c is not None]
    if not columns:
        return text(data, None)
    return coalesce(*(text(data, c) for c in dict.fromkeys(columns)))


def parse_bool(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(boolean or null, mask of filled values that are not a recognisable boolean)."""
    lower = pc.utf8_lower(values)
    true = pc.is_in(lower, pa.array(TRUE_VALUES))
    false = pc.is_in(lower, pa.array(FALSE_VALUES))
    parsed = pc.if_else(
        true, pa.scalar(True), pc.if_else(false, pa.scalar(False), pa.scalar(None, pa.bool_()))
    )
    invalid = pc.and_(pc.is_valid(lower), pc.is_null(parsed))
    return parsed, invalid


def recode(
    values: pa.ChunkedArray, mapping: Mapping[str, str], default: str | None = None
) -> pa.ChunkedArray:
    """Map values through ``mapping`` (keys matched trimmed and case-insensitively).

    Values not in the mapping become ``default``, or pass through unchanged when ``default``
    is None, so the pipeline can reject them with their own value in the message.
    """
    keys = list(mapping)
    lookup = pc.index_in(
        pc.utf8_lower(pc.utf8_trim_whitespace(values)), pa.array([k.strip().lower() for k in keys])
    )
    mapped = pc.take(pa.array([mapping[k] for k in keys], pa.string()), lookup)
    fallback = values if default is None else pa.scalar(default, pa.string())
    return pc.if_else(pc.is_valid(lookup), mapped, fallback)


def where(mask: pa.ChunkedArray, values: pa.ChunkedArray) -> pa.ChunkedArray:
    """``values`` where ``mask`` is true, null elsewhere."""
    return pc.if_else(pc.fill_null(mask, False), values, pa.scalar(None, pa.string()))


def epoch_ms_to_iso(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Turn epoch-millisecond strings (older HubSpot exports) into ISO timestamps (UTC)."""
    is_epoch = pc.fill_null(pc.match_substring_regex(values, _EPOCH_MS), False)
    if not pc.any(is_epoch).as_py():
        return values
    digits = pc.if_else(is_epoch, values, pa.scalar("0"))
    stamps = pc.cast(pc.cast(digits, pa.int64()), pa.timestamp("ms"))
    iso = pc.strftime(stamps, format="%Y-%m-%dT%H:%M:%S")
    return pc.if_else(is_epoch, iso, values)


def _day(values: pa.ChunkedArray) -> pa.ChunkedArray:
    head = pc.utf8_slice_codeunits(values, 0, 10)
    return pc.strptime(head, format="%Y-%m-%d", unit="s", error_is_null=True)


def day_after_created(day: pa.ChunkedArray, created: pa.ChunkedArray) -> pa.ChunkedArray:
    """A bare date on the day a record was created (or the day before) → its creation time.

    CRM close/convert dates carry no time of day and are in the user's time zone, while
    creation times are UTC timestamps; read naively, a deal created and closed the same day
    looks closed before it was created.
    """
    bare = pc.fill_null(pc.match_substring_regex(day, _ISO_DAY), False)
    if not pc.any(bare).as_py():
        return day
    seconds = pa.int64()
    d = pc.cast(pc.cast(_day(day), pa.timestamp("s")), seconds)
    c = pc.cast(pc.cast(_day(created), pa.timestamp("s")), seconds)
    near = pc.and_(pc.less(d, pc.add(c, 1)), pc.greater_equal(d, pc.subtract(c, ONE_DAY_S)))
    use_created = pc.and_(bare, pc.fill_null(near, False))
    return pc.if_else(use_created, created, day)


def attribute_names(
    columns: Sequence[str], strip: str = "", reserved: Iterable[str] = ()
) -> dict[str, str]:
    """Source column → ``attr_<snake_case name>``, unique (``strip``: a suffix such as ``__c``;
    ``reserved``: names already taken)."""
    out: dict[str, str] = {}
    used: set[str] = set(reserved)
    for column in columns:
        base = column[: -len(strip)] if strip and column.lower().endswith(strip) else column
        name = snake_case(base)
        candidate, i = name, 2
        while candidate in used:
            candidate, i = f"{name}_{i}", i + 1
        used.add(candidate)
        out[column] = ATTRIBUTE_PREFIX + candidate
    return out


def outcome_only_warning(file: str, status: pa.ChunkedArray, deals: pa.Table) -> str | None:
    """Warn about attributes filled on closed deals only: they may record the outcome."""
    closed = pc.fill_null(pc.is_in(status, pa.array(CLOSED_STATUSES)), False)
    if not pc.any(pc.invert(closed)).as_py():
        return None  # no open deals (an order history): nothing to compare with
    suspects = []
    for column in deals.column_names:
        if not column.startswith(ATTRIBUTE_PREFIX):
            continue
        filled = pc.is_valid(text(deals, column))
        on_open = pc.sum(pc.cast(pc.and_(filled, pc.invert(closed)), pa.int64())).as_py() or 0
        on_closed = pc.sum(pc.cast(pc.and_(filled, closed), pa.int64())).as_py() or 0
        if on_open == 0 and on_closed >= 2:
            suspects.append(column.removeprefix(ATTRIBUTE_PREFIX))
    if not suspects:
        return None
    return (
        f"{Path(file).name}: custom attribute(s) {', '.join(suspects)} are filled on closed deals "
        "only; if they record the outcome (a loss reason, a signature date) they leak it into "
        "win-probability features — drop them from the export or the mapping"
    )


def shorten(names: Sequence[str], limit: int = 12) -> str:
    """``a, b, c … (+5 more)`` for warnings."""
    shown = ", ".join(names[:limit])
    return shown + (f" … (+{len(names) - limit} more)" if len(names) > limit else "")


def melt_stage_columns(
    data: pa.Table,
    deal_ids: pa.ChunkedArray,
    stage_columns: Mapping[str, str],
    source_file: str,
    hints: Mapping[str, str],
    date_formats: Sequence[str] = (),
    convert: bool = False,
) -> list[SourceTable]:
    """Wide "date entered <stage>" columns → stage_history rows, one per filled cell.

    Each column becomes its own source (labelled ``file [column]``) so every row keeps a
    unique line number within its source and a reject names the column it came from.
    """
    sources: list[SourceTable] = []
    rows = data.column(SOURCE_ROW)
    for column, stage in stage_columns.items():
        changed = text(data, column)
        if convert:
            changed = epoch_ms_to_iso(changed)
        filled = pc.is_valid(changed)
        if not pc.any(filled).as_py():
            continue
        table = pa.table(
            {
                "deal_id": pc.filter(deal_ids, filled),
                "stage": constant(int(pc.sum(pc.cast(filled, pa.int64())).as_py()), stage),
                "changed_at": pc.filter(changed, filled),
                SOURCE_ROW: pc.filter(rows, filled),
            }
        )
        column_hints = {"changed_at": f"from column {column!r}", **hints}
        sources.append(
            SourceTable(
                "stage_history",
                table,
                f"{source_file} [{column}]",
                date_formats={"changed_at": list(date_formats)} if date_formats else {},
                hints=column_hints,
            )
        )
    return sources

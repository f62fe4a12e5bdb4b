"""Parse and validate source rows in DuckDB; every failing row becomes a reject with its reason.

Runs entirely in SQL so that millions of rows validate in seconds: each source is parsed in one
pass that also flags rows breaking any rule (``_bad``); only flagged rows are revisited to write
one reject line per broken rule. For each canonical table the result is a temp table
``valid_<table>`` of typed, de-duplicated rows; rejects accumulate in the temp table
``_rejects`` (table_name, file, row, field, value, reason, record).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb
import pyarrow as pa

from salesml.importers.base import (
    SOURCE_ROW,
    AttributeKind,
    ParquetFile,
    SourceTable,
    column_names,
    column_type,
)
from salesml.schemas import ATTRIBUTE_PREFIX, Column, TableSchema
from salesml.warehouse import quote

ISO_HINT = "use ISO 8601 (2025-03-31 or 2025-03-31T14:00:00Z)"
NUMBER_HINT = "use a plain number such as 1234.50"
DECIMAL_COMMA = "-?[0-9][0-9.]*,[0-9]+"
"""A number written with a decimal comma (``1234,5``, ``12.345,67``) that did not read as
one with thousands commas (``12,345``)."""
DECIMAL_HINT = (
    "it is written with ',' as the decimal separator (and '.' or a space between thousands); "
    'import with --decimal , (with --format mapping: decimal: "," in the mapping), or '
    "write it as 1234.50"
)
COMMA_NUMBER = "-?([0-9]{1,3}(\\.[0-9]{3})+|[0-9]+)(,[0-9]+)?"
"""A number as a decimal-comma export writes it, once currency signs and spaces are taken out:
``1.234,50``, ``1234,5``, ``1234``. A ``.`` anywhere else (``1234.5``, ``12.34``) or a ``,``
between thousands (``12,500.00``) is not one: read with a decimal comma it would be off by a
power of ten, so it is rejected instead."""
COMMA_HINT = (
    "this column is read with ',' as the decimal separator and '.' or a space between groups "
    'of three digits (--decimal , or decimal: "," in the mapping), so this value would be '
    "misread; write it as 1.234,50 or 1234,50, or import without the decimal comma if the "
    "export writes 1234.50"
)
EXCEL_SERIAL = "[0-9]{5}(\\.[0-9]+)?"
"""A bare five-digit number in a date column: Excel's serial date (days since 1899-12-30),
written when a date cell is saved as a number. Not converted (a number could be anything;
the fix belongs in the export), but named with the date it would be."""
REJECTS_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _rejects (table_name VARCHAR, file VARCHAR, row BIGINT, "
    "field VARCHAR, value VARCHAR, reason VARCHAR, record VARCHAR)"
)
PARSE_HINTS = {
    "timestamp": ISO_HINT,
    "date": ISO_HINT,
    "float": NUMBER_HINT,
    "int": "use a whole number",
    "bool": "use true or false",
}


@dataclass(frozen=True)
class Limits:
    """What counts as absurd: values outside these bounds are rejected, never stored.

    Set through ``Settings`` (``SALESML_IMPORT_MAX_FUTURE_DAYS``, ``SALESML_IMPORT_MIN_YEAR``,
    ``SALESML_IMPORT_MAX_AMOUNT``, ``SALESML_IMPORT_MAX_TEXT_CHARS``); ``now`` is the import's
    clock, passed in (validation never reads the clock itself).
    """

    now: datetime
    max_future_days: int = 366
    min_year: int = 1900
    max_amount: float = 1e12
    max_text_chars: int = 10_000
    max_id_chars: int = 256
    # An expected close date is a plan, not an event: it may lie further ahead.
    max_expected_years: int = 10

    @property
    def earliest(self) -> datetime:
        return datetime(self.min_year, 1, 1)

    def latest(self, column: str) -> datetime:
        """The latest acceptable value of timestamp/date ``column``."""
        now = self.now.replace(tzinfo=None)
        if column == "expected_close_date":
            return now + timedelta(days=366 * self.max_expected_years)
        return now + timedelta(days=self.max_future_days)


# Control characters: none in an id; in other text only tab, newline and carriage return.
# Ids: C0 and C1 controls, and the bidi controls that make an id display as another one
ID_CONTROL = "[\\x00-\\x1f\\x7f-\\x{9f}\\x{200e}\\x{200f}\\x{202a}-\\x{202e}\\x{2066}-\\x{2069}]"
TEXT_CONTROL = "[\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f\\x7f]"
SHOWN_CHARS = 200  # of an offending value, in the rejects file (the whole row is in ``record``)


@dataclass(frozen=True)
class Check:
    """One row rule: the rows where ``condition`` holds are rejected for ``field``."""

    condition: str
    field: str
    value: str  # SQL for the offending value (VARCHAR)
    reason: str  # SQL for the message (VARCHAR)


@dataclass
class StagedTable:
    """Outcome of validating one canonical table's sources."""

    table: str
    input_rows: int = 0
    duplicate_rows: int = 0  # exact duplicates of another row with the same key
    attributes: dict[str, AttributeKind] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid_name(self) -> str:
        return f"valid_{self.table}"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _is_text(arrow_type: pa.DataType) -> bool:
    if pa.types.is_dictionary(arrow_type):
        return _is_text(arrow_type.value_type)
    return bool(pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type))


def _parse_expr(
    col: Column, raw: str, arrow_type: pa.DataType, formats: list[str], comma: bool = False
) -> str:
    """SQL turning the source column ``raw`` into the canonical kind (NULL when unparseable);
    ``comma``: a text number is written with a decimal comma (``COMMA_NUMBER``)."""
    kind = col.kind
    text = f"NULLIF(TRIM(CAST({raw} AS VARCHAR)), '')"
    if kind == "str":
        return text if _is_text(arrow_type) else f"CAST({raw} AS VARCHAR)"
    if kind in ("timestamp", "date"):
        if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
            ts = f"CAST({raw} AS TIMESTAMP)"
        else:
            # Offsets are honoured (stored as UTC): the zone-aware parse comes first, since a
            # plain TIMESTAMP cast would silently drop "-0800".
            options = [f"CAST(TRY_STRPTIME({text}, {_lit(f)}) AS TIMESTAMP)" for f in formats]
            options += [
                f"CAST(TRY_CAST({text} AS TIMESTAMPTZ) AS TIMESTAMP)",
                f"CAST(TRY_STRPTIME({text}, '%Y-%m-%d %H:%M:%S %z') AS TIMESTAMP)",
                f"TRY_CAST({text} AS TIMESTAMP)",
            ]
            ts = f"COALESCE({', '.join(options)})"
        return f"CAST({ts} AS DATE)" if kind == "date" else ts
    if kind in ("float", "int"):
        if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
            number = f"CAST({raw} AS DOUBLE)"
        elif comma:
            cleaned = f"regexp_replace({text}, '[\\s$€£¥]', '', 'g')"
            number = (
                f"CASE WHEN regexp_full_match({cleaned}, {_lit(COMMA_NUMBER)}) THEN TRY_CAST("
                f"replace(replace({cleaned}, '.', ''), ',', '.') AS DOUBLE) END"
            )
        else:
            cleaned = f"regexp_replace({text}, '[\\s$€£¥]', '', 'g')"
            thousands = "'-?[0-9]{1,3}(,[0-9]{3})+(\\.[0-9]+)?'"
            grouped = (
                f"CASE WHEN regexp_full_match({cleaned}, {thousands}) "
                f"THEN replace({cleaned}, ',', '') ELSE {cleaned} END"
            )
            number = f"TRY_CAST({grouped} AS DOUBLE)"
        if kind == "int":
            # TRY_CAST: an infinite or huge whole number ("inf", "1e309", "1e20") is no
            # BIGINT, so the value is unreadable (rejected) rather than the import failing
            return f"CASE WHEN {number} = round({number}) THEN TRY_CAST({number} AS BIGINT) END"
        return number
    if pa.types.is_boolean(arrow_type):
        return raw
    return (
        f"CASE WHEN lower({text}) IN ('true','t','1','yes','y') THEN TRUE "
        f"WHEN lower({text}) IN ('false','f','0','no','n') THEN FALSE END"
    )


def _parse_hint(kind: str, raw: str, comma: bool = False) -> str:
    """SQL for how to fix a value of ``kind`` that did not parse (``raw``: SQL for the value
    as written): the advice that fits the value — an Excel serial date, a decimal comma —
    else the kind's usual form."""
    usual = _lit(PARSE_HINTS[kind])
    if kind in ("date", "timestamp"):
        return (
            f"CASE WHEN regexp_full_match({raw}, {_lit(EXCEL_SERIAL)}) THEN 'it looks like an "
            f"Excel serial date (days since 1899-12-30: ' || {raw} || ' would be ' || "
            f"strftime(DATE '1899-12-30' + CAST(floor(CAST({raw} AS DOUBLE)) AS INTEGER), "
            "'%Y-%m-%d') || '); format the column as a date (yyyy-mm-dd) in the spreadsheet "
            f"before saving it as CSV' ELSE {usual} END"
        )
    if kind in ("float", "int") and comma:
        return _lit(COMMA_HINT)
    if kind in ("float", "int"):
        cleaned = f"regexp_replace({raw}, '[\\s$€£¥]', '', 'g')"
        return (
            f"CASE WHEN regexp_full_match({cleaned}, {_lit(DECIMAL_COMMA)}) THEN "
            f"{_lit(DECIMAL_HINT)} ELSE {usual} END"
        )
    return usual


def _shown(sql: str) -> str:
    """SQL for an offending value as the rejects file shows it (long values cut short)."""
    return (
        f"CASE WHEN length({sql}) > {SHOWN_CHARS} THEN left({sql}, {SHOWN_CHARS}) || '…' "
        f"ELSE {sql} END"
    )


def _absurd_checks(
    table: TableSchema, col: Column, raw: Callable[[str], str], limits: Limits
) -> list[Check]:
    """The rules that keep absurd values out: dates centuries away, infinite or huge amounts,
    control characters in ids, oversized text."""
    name, q = col.name, quote(col.name)
    if col.kind in ("timestamp", "date"):
        sql_type = "TIMESTAMP" if col.kind == "timestamp" else "DATE"
        earliest = limits.earliest.date().isoformat()
        latest = limits.latest(name)
        latest_text = latest.date().isoformat()
        bound = latest.isoformat(sep=" ") if col.kind == "timestamp" else latest_text
        after = (
            "a year from now"
            if name != "expected_close_date"
            else (f"{limits.max_expected_years} years from now")
        )
        return [
            Check(
                f"{q} < {sql_type} {_lit(earliest)} OR {q} > {sql_type} {_lit(bound)}",
                name,
                raw(name),
                _lit(f"{name} ")
                + f" || {raw(name)} || "
                + _lit(
                    f" is not a plausible date (before {earliest} or after {latest_text}, "
                    f"{after}); fix the date, or change the bounds with SALESML_IMPORT_MIN_YEAR / "
                    "SALESML_IMPORT_MAX_FUTURE_DAYS"
                ),
            )
        ]
    if col.kind == "float":
        return [
            Check(
                f"isinf({q}) OR isnan({q})",
                name,
                raw(name),
                _lit(f"{name} ")
                + f" || {raw(name)} || "
                + _lit(" is not a finite number; write it as a plain number such as 1234.50"),
            ),
            Check(
                f"NOT isinf({q}) AND NOT isnan({q}) AND abs({q}) > {limits.max_amount!r}",
                name,
                raw(name),
                _lit(f"{name} ")
                + f" || {raw(name)} || "
                + _lit(
                    f" is above the ceiling of {limits.max_amount:,.0f}; fix the value (a unit or "
                    "decimal-separator mix-up?) or raise SALESML_IMPORT_MAX_AMOUNT"
                ),
            ),
        ]
    if col.kind != "str":
        return []
    is_id = name in table.key or name.endswith("_id")
    longest = limits.max_id_chars if is_id else limits.max_text_chars
    what = "an id" if is_id else "a text field"
    control = ID_CONTROL if is_id else TEXT_CONTROL
    return [
        Check(
            f"length({q}) > {longest}",
            name,
            _shown(q),
            _lit(f"{name} is ")
            + f" || CAST(length({q}) AS VARCHAR) || "
            + _lit(
                f" characters long; {what} holds at most {longest:,} (raise "
                "SALESML_IMPORT_MAX_TEXT_CHARS for long text)"
                if not is_id
                else f" characters long; an id holds at most {longest:,}: is this the right column?"
            ),
        ),
        Check(
            f"regexp_matches({q}, {_lit(control)})",
            name,
            _shown(f"to_json({q})"),
            _lit(
                f"{name} contains control characters"
                + (" (an id cannot)" if is_id else " (other than tab and line breaks)")
                + "; remove them from the export"
            ),
        ),
    ]


def _checks(
    table: TableSchema,
    parsed: set[str],
    raw: Callable[[str], str],
    limits: Limits,
    comma: frozenset[str] = frozenset(),
) -> list[Check]:
    """Every row-level rule of ``table``.

    ``parsed`` are the columns parsed from text (they can fail to parse); ``raw(name)`` is SQL
    for a column's value as the source wrote it; ``comma`` the columns read with a decimal
    comma.
    """
    checks: list[Check] = []
    for col in table.columns:
        checks += _absurd_checks(table, col, raw, limits)
        name, q = col.name, quote(col.name)
        if name in parsed:
            checks.append(
                Check(
                    f"_raw_{name} IS NOT NULL AND {q} IS NULL",
                    name,
                    raw(name),
                    _lit("could not read ")
                    + f" || quote({raw(name)}) || "
                    + _lit(f" as {col.kind}; ")
                    + f" || {_parse_hint(col.kind, raw(name), name in comma)}",
                )
            )
        if not col.nullable and not (table.derived_key and name in table.key):
            empty = f"{q} IS NULL" + (f" AND _raw_{name} IS NULL" if name in parsed else "")
            checks.append(
                Check(
                    empty, name, "NULL", _lit(f"{name} is empty; every {table.name} row needs one")
                )
            )
        if col.minimum is not None:
            checks.append(
                Check(
                    # -inf is reported once, as not finite (as an event's check reports it)
                    f"{q} < {col.minimum} AND {q} > CAST('-inf' AS DOUBLE)",
                    name,
                    raw(name),
                    _lit(f"{name} is negative (")
                    + f" || {raw(name)} || "
                    + _lit(
                        f"); {name} must be ≥ {col.minimum:g}: fix the sign, or leave it empty "
                        "if unknown"
                    ),
                )
            )
        if col.choices is not None:
            checks.append(
                Check(
                    f"{q} NOT IN ({', '.join(_lit(c) for c in col.choices)})",
                    name,
                    raw(name),
                    _lit(f"{name} ")
                    + f" || quote({raw(name)}) || "
                    + _lit(
                        f" is not one of {', '.join(col.choices)}; map the export's values to these"
                    ),
                )
            )
    if table.name == "nps_responses":
        checks.append(
            Check("score > 10", "score", raw("score"), _lit("NPS score must be between 0 and 10"))
        )
    if table.name == "deals":
        checks += [
            Check(
                "status IN ('won', 'lost') AND closed_at IS NULL"
                + (" AND _raw_closed_at IS NULL" if "closed_at" in parsed else ""),
                "closed_at",
                "NULL",
                "'deal is ' || status || ' but has no closed_at; fill in the date it closed'",
            ),
            Check(
                "status = 'open' AND closed_at IS NOT NULL",
                "closed_at",
                raw("closed_at"),
                f"'deal is open but has closed_at ' || {raw('closed_at')} || '; set status to "
                "won or lost, or clear closed_at'",
            ),
            Check(
                "closed_at < created_at",
                "closed_at",
                raw("closed_at"),
                f"'closed_at ' || {raw('closed_at')} || ' is before created_at ' || "
                f"{raw('created_at')} || '; fix whichever date is wrong'",
            ),
            Check(
                "NOT regexp_full_match(currency, '[A-Z]{3}')",
                "currency",
                raw("currency"),
                f"'currency ' || quote({raw('currency')}) || ' is not an ISO 4217 code such as "
                "USD'",
            ),
        ]
    if table.name == "leads":
        for later in ("converted_at", "disqualified_at"):
            checks.append(
                Check(
                    f"{later} < created_at",
                    later,
                    raw(later),
                    f"'{later} ' || {raw(later)} || ' is before created_at ' || "
                    f"{raw('created_at')} || '; fix whichever date is wrong'",
                )
            )
    return checks


MOSTLY_NUMERIC = 0.8  # share of filled cells that read as numbers: a text cell is suspect


def _infer_attribute_kind(
    con: duckdb.DuckDBPyConnection, view: str, column: str, warnings: list[str] | None = None
) -> AttributeKind:
    """Numeric when every filled cell reads as a number. A column of numbers with a few text
    cells (``seats=many``) is categorical — and said, in ``warnings``: one cell should not
    silently turn a number into a label."""
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE v IS NOT NULL), "
        f"count(*) FILTER (WHERE v IS NOT NULL AND TRY_CAST(v AS DOUBLE) IS NULL), "
        f"list(DISTINCT v) FILTER (WHERE v IS NOT NULL AND TRY_CAST(v AS DOUBLE) IS NULL)[:3] "
        f"FROM (SELECT NULLIF(TRIM(CAST({quote(column)} AS VARCHAR)), '') AS v FROM {view})"
    ).fetchone()
    assert row is not None
    filled, non_numeric = int(row[0]), int(row[1])
    if filled > 0 and non_numeric == 0:
        return "numeric"
    numbers = filled - non_numeric
    if warnings is not None and numbers >= 2 and numbers >= MOSTLY_NUMERIC * filled:
        name = column.removeprefix(ATTRIBUTE_PREFIX)
        shown = ", ".join(repr(v) for v in row[2] or [])
        warnings.append(
            f"custom attribute {name}: {numbers:,} of {filled:,} values are numbers but "
            f"{non_numeric:,} {'is' if non_numeric == 1 else 'are'} text ({shown}), so {name} "
            "is read as categories (each number a label); fix those cells to read it as a "
            "number, or declare it in a mapping (docs/mapping.md)"
        )
    return "categorical"


def stage_sources(
    con: duckdb.DuckDBPyConnection,
    table: TableSchema,
    sources: list[SourceTable],
    known_attributes: dict[str, str],
    limits: Limits,
    resolve_duplicates: bool = True,
) -> StagedTable:
    """Validate ``sources`` of one table into ``valid_<table>``; rejects go to ``_rejects``.
    Values outside ``limits`` are rejected like any other broken rule. Rows sharing a key are
    resolved among the rows that passed (unless ``resolve_duplicates`` is false: then the
    caller does it, as ``resolve_line_groups`` does for sources that share lines)."""
    con.execute(REJECTS_DDL)
    con.execute("CREATE OR REPLACE TEMP MACRO quote(x) AS chr(39) || x || chr(39)")
    staged = StagedTable(table=table.name)
    views: list[tuple[str, SourceTable]] = []
    parts: list[str] = []
    for i, source in enumerate(sources):
        if isinstance(source.data, ParquetFile):
            view = source.data.sql()
        else:
            view = f"_src_{table.name}_{i}"
            con.register(view, source.data)
        views.append((view, source))
        part = f"_stg_{table.name}_{i}"
        _stage_one(con, table, source, view, part, staged, known_attributes, limits)
        parts.append(part)
    cols = staged_columns(table, staged)
    valid = staged.valid_name
    con.execute(f"DROP TABLE IF EXISTS {valid}")
    if len(parts) == 1:
        # One source (the usual case): keep its table, minus the rejected rows; no copy.
        con.execute(f"DELETE FROM {parts[0]} WHERE _bad")
        con.execute(f"ALTER TABLE {parts[0]} RENAME TO {valid}")
    else:
        selects = []
        for part in parts:
            have = {r[0] for r in con.execute(f"DESCRIBE {part}").fetchall()}
            exprs = [quote(c) if c in have else f"NULL AS {quote(c)}" for c in cols]
            selects.append(
                f"SELECT {', '.join(exprs)}, _source_file, {SOURCE_ROW} FROM {part} WHERE NOT _bad"
            )
        con.execute(f"CREATE TEMP TABLE {valid} AS {' UNION ALL BY NAME '.join(selects)}")
        for part in parts:
            con.execute(f"DROP TABLE {part}")
    if resolve_duplicates:
        reject_conflicts(con, table, valid, cols)
        staged.duplicate_rows = drop_exact_duplicates(con, table, valid)
    for view, source in views:
        _fill_reject_records(con, table.name, view, source)
        if not isinstance(source.data, ParquetFile):
            con.unregister(view)
    return staged


def staged_columns(table: TableSchema, staged: StagedTable) -> list[str]:
    """The columns of ``valid_<table>`` that make up a row's content."""
    return [*table.column_names, *(ATTRIBUTE_PREFIX + a for a in sorted(staged.attributes))]


def _attribute_columns(
    con: duckdb.DuckDBPyConnection,
    source: SourceTable,
    view: str,
    staged: StagedTable,
    known_attributes: dict[str, str],
    limits: Limits,
    exprs: list[str],
    raws: list[str],
) -> list[Check]:
    """Parse the custom attributes of ``source`` (appending to ``exprs`` / ``raws``) and
    return their rules: a numeric attribute must read as a finite number, a categorical one
    must be plausible text."""
    checks: list[Check] = []
    for column, declared in source.attributes.items():
        name = column.removeprefix(ATTRIBUTE_PREFIX)
        found = known_attributes.get(name) or staged.attributes.get(name) or declared
        if found is None:
            found = _infer_attribute_kind(con, view, column, staged.warnings)
        kind: AttributeKind = "numeric" if found == "numeric" else "categorical"
        staged.attributes[name] = kind
        target = ATTRIBUTE_PREFIX + name
        text = f"NULLIF(TRIM(CAST({quote(column)} AS VARCHAR)), '')"
        if kind == "numeric":
            exprs.append(f"TRY_CAST({text} AS DOUBLE) AS {quote(target)}")
            raws.append(f"{text} AS {quote('_raw_' + target)}")
            checks.append(
                Check(
                    f"{quote('_raw_' + target)} IS NOT NULL AND {quote(target)} IS NULL",
                    name,
                    quote("_raw_" + target),
                    f"'custom attribute {name} is numeric, got ' || "
                    f"quote({quote('_raw_' + target)}) || '; fix the value (with --format "
                    "mapping, or declare the attribute categorical in the mapping)'",
                )
            )
            checks.append(
                Check(
                    f"isinf({quote(target)}) OR isnan({quote(target)})",
                    name,
                    quote("_raw_" + target),
                    f"'custom attribute {name} is not a finite number: ' || "
                    f"quote({quote('_raw_' + target)}) || '; write it as a plain number'",
                )
            )
        else:
            exprs.append(f"{text} AS {quote(target)}")
            checks.append(
                Check(
                    f"length({quote(target)}) > {limits.max_text_chars} OR "
                    f"regexp_matches({quote(target)}, {_lit(TEXT_CONTROL)})",
                    name,
                    _shown(f"to_json({quote(target)})"),
                    f"'custom attribute {name} is longer than {limits.max_text_chars:,} "
                    "characters or contains control characters; fix the value in the export'",
                )
            )
    return checks


def _stage_one(
    con: duckdb.DuckDBPyConnection,
    table: TableSchema,
    source: SourceTable,
    view: str,
    part: str,
    staged: StagedTable,
    known_attributes: dict[str, str],
    limits: Limits,
) -> None:
    names = column_names(source.data)
    exprs: list[str] = []
    raws: list[str] = []
    parsed: set[str] = set()
    for col in table.columns:
        q = quote(col.name)
        if col.name not in names:
            exprs.append(f"CAST(NULL AS {col.duckdb_type}) AS {q}")
            continue
        arrow_type = column_type(source.data, col.name)
        formats = source.date_formats.get(col.name, [])
        comma = col.name in source.decimal_comma
        exprs.append(f"{_parse_expr(col, q, arrow_type, formats, comma)} AS {q}")
        if col.kind != "str" and _is_text(arrow_type):
            parsed.add(col.name)
            raws.append(f"NULLIF(TRIM({q}), '') AS {quote('_raw_' + col.name)}")
    checks = _attribute_columns(con, source, view, staged, known_attributes, limits, exprs, raws)

    def raw(name: str) -> str:
        return f"_raw_{name}" if name in parsed else f"CAST({quote(name)} AS VARCHAR)"

    checks = _checks(table, parsed, raw, limits, source.decimal_comma) + checks
    for column, parent, _ in table.references:
        # _known_deals: deal ids of this import and of the warehouse (made by the pipeline).
        checks.append(
            Check(
                f"{quote(column)} IS NOT NULL AND {quote(column)} NOT IN "
                f"(SELECT deal_id FROM _known_{parent})",
                column,
                quote(column),
                f"'{column} ' || quote({quote(column)}) || ' is not in {parent} (neither in this "
                "import nor in the warehouse); import it too or correct the id'",
            )
        )
    if table.derived_key:
        key = quote(table.key[0])
        digest = (
            "md5(concat_ws('|', "
            + ", ".join(
                f"coalesce(CAST({quote(c)} AS VARCHAR), '')"
                for c in table.column_names
                if c != table.key[0]
            )
            + "))"
        )
        derive = f"SELECT * REPLACE (coalesce({key}, 'auto-' || left({digest}, 20)) AS {key})"
    else:
        derive = "SELECT *"
    bad = " OR ".join(f"coalesce({c.condition}, FALSE)" for c in checks) or "FALSE"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {part} AS SELECT *, {bad} AS _bad FROM ({derive} FROM ("
        f"SELECT {', '.join(exprs + raws)}, {_lit(source.source_file)} AS _source_file, "
        f"{SOURCE_ROW} FROM {view}))"
    )
    staged.input_rows += source.data.num_rows
    hint_sql = (
        "CASE field "
        + " ".join(f"WHEN {_lit(c)} THEN {_lit(h)}" for c, h in source.hints.items())
        + " END"
        if source.hints
        else "NULL"
    )
    for check in checks:
        con.execute(
            f"INSERT INTO _rejects SELECT {_lit(table.name)}, _source_file, {SOURCE_ROW}, "
            f"field, value, reason || coalesce(' (' || ({hint_sql}) || ')', ''), NULL "
            f"FROM (SELECT *, {_lit(check.field)} AS field, CAST({check.value} AS VARCHAR) AS "
            f"value, {check.reason} AS reason FROM {part} WHERE _bad AND ({check.condition}))"
        )


def reject_conflicts(
    con: duckdb.DuckDBPyConnection, table: TableSchema, valid: str, cols: list[str]
) -> None:
    """Reject every row of a key that occurs in ``valid`` with different content.

    Rows sharing a key but differing in content are all rejected: we cannot tell which is
    right. Only rows still in ``valid`` take part — a row already rejected for any field is
    not a candidate, so it never takes a valid row with the same key down with it. Only keys
    that occur more than once are examined, so a clean export costs one aggregation.
    """
    keys = ", ".join(quote(k) for k in table.key)
    content = f"hash({', '.join(quote(c) for c in cols)})"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _dupkeys AS SELECT {keys} FROM {valid} "
        f"GROUP BY {keys} HAVING count(*) > 1"
    )
    row = con.execute("SELECT count(*) FROM _dupkeys").fetchone()
    if row and row[0]:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _dupkeys AS SELECT {keys} FROM {valid} SEMI JOIN "
            f"_dupkeys USING ({keys}) GROUP BY {keys} HAVING count(DISTINCT {content}) > 1"
        )
        row = con.execute("SELECT count(*) FROM _dupkeys").fetchone()
    if not row or not row[0]:
        con.execute("DROP TABLE _dupkeys")
        return
    key_text = " || '/' || ".join(f"CAST({quote(k)} AS VARCHAR)" for k in table.key)
    label = "/".join(table.key)
    con.execute(
        f"INSERT INTO _rejects SELECT {_lit(table.name)}, _source_file, {SOURCE_ROW}, "
        f"{_lit(label)}, {key_text}, '{label} ' || quote({key_text}) || ' appears on ' || "
        f"CAST(count(*) OVER (PARTITION BY {keys}) AS VARCHAR) || ' rows with different data "
        f"(lines ' || string_agg(CAST({SOURCE_ROW} AS VARCHAR), ', ' ORDER BY {SOURCE_ROW}) "
        f"OVER (PARTITION BY {keys}) || '); keep one row per {label} and re-import', NULL "
        f"FROM {valid} SEMI JOIN _dupkeys USING ({keys})"
    )
    con.execute(
        f"DELETE FROM {valid} v USING _dupkeys d WHERE "
        + " AND ".join(f"v.{quote(k)} = d.{quote(k)}" for k in table.key)
    )
    con.execute("DROP TABLE _dupkeys")


def drop_exact_duplicates(con: duckdb.DuckDBPyConnection, table: TableSchema, valid: str) -> int:
    """Keep the first row (by file and line) of each key left in ``valid`` after
    ``reject_conflicts`` (its rows are identical); return how many were dropped."""
    keys = ", ".join(quote(k) for k in table.key)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _dupkeys AS SELECT {keys} FROM {valid} "
        f"GROUP BY {keys} HAVING count(*) > 1"
    )
    row = con.execute("SELECT count(*) FROM _dupkeys").fetchone()
    if not row or not row[0]:
        con.execute("DROP TABLE _dupkeys")
        return 0
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _duprows AS SELECT v.*, row_number() OVER (PARTITION "
        f"BY {keys} ORDER BY _source_file, {SOURCE_ROW}) AS _rn FROM {valid} v "
        f"SEMI JOIN _dupkeys d USING ({keys})"
    )
    exact = con.execute("SELECT count(*) FROM _duprows WHERE _rn > 1").fetchone()
    n_exact = int((exact or (0,))[0])
    con.execute(
        f"DELETE FROM {valid} v USING _dupkeys d WHERE "
        + " AND ".join(f"v.{quote(k)} = d.{quote(k)}" for k in table.key)
    )
    con.execute(f"INSERT INTO {valid} SELECT * EXCLUDE (_rn) FROM _duprows WHERE _rn = 1")
    con.execute("DROP TABLE _dupkeys")
    con.execute("DROP TABLE _duprows")
    return n_exact


def _fill_reject_records(
    con: duckdb.DuckDBPyConnection, table: str, view: str, source: SourceTable
) -> None:
    """Attach the original row, as JSON, to each reject from this source file."""
    names = [c for c in column_names(source.data) if c != SOURCE_ROW]
    record = (
        "to_json(struct_pack("
        + ", ".join(f"{quote(c)} := CAST(v.{quote(c)} AS VARCHAR)" for c in names)
        + "))"
    )
    con.execute(
        f"UPDATE _rejects SET record = {record} FROM {view} v WHERE _rejects.record IS NULL "
        f"AND _rejects.table_name = {_lit(table)} AND _rejects.file = {_lit(source.source_file)} "
        f"AND _rejects.row = v.{SOURCE_ROW}"
    )


def line_grouped_tables(sources: list[SourceTable]) -> set[str]:
    """Tables with a source whose lines are shared with another table (``line_group``):
    their duplicates are resolved by ``resolve_line_groups``, not by ``stage_sources``."""
    return {s.table for s in sources if s.line_group is not None}


def resolve_line_groups(
    con: duckdb.DuckDBPyConnection,
    sources: list[SourceTable],
    staged: dict[str, StagedTable],
    schemas: dict[str, TableSchema],
) -> None:
    """Reject whole lines and resolve duplicates of line-grouped tables, in the order that
    keeps one rule for every bad field: a line rejected for any field, in any table it
    carries, never takes part in duplicate detection (so it cannot take a valid line with
    the same key down with it); then a key with conflicting valid lines rejects those lines
    whole; then exact duplicates are dropped (counted as unchanged)."""
    grouped = line_grouped_tables(sources) & staged.keys()
    reject_whole_lines(con, sources)
    for name in sorted(grouped):
        reject_conflicts(
            con, schemas[name], staged[name].valid_name, staged_columns(schemas[name], staged[name])
        )
    reject_whole_lines(con, sources)
    for name in sorted(grouped):
        staged[name].duplicate_rows = drop_exact_duplicates(
            con, schemas[name], staged[name].valid_name
        )


def reject_whole_lines(con: duckdb.DuckDBPyConnection, sources: list[SourceTable]) -> int:
    """Sources sharing a ``line_group`` come from the same lines: a line rejected in one of
    them is taken out of the others' ``valid_<table>`` and rejected there too, naming what
    rejected it (no part of a bad line is imported on its own). Returns the rows taken out.

    Runs after every table is staged and before the upsert."""
    groups: dict[str, list[SourceTable]] = {}
    for source in sources:
        if source.line_group is not None:
            groups.setdefault(source.line_group, []).append(source)
    taken = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        files = ", ".join(_lit(s.source_file) for s in members)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _bad_lines AS SELECT row, string_agg(DISTINCT "
            "table_name || '.' || field, ', ' ORDER BY table_name || '.' || field) AS what "
            f"FROM _rejects WHERE file IN ({files}) GROUP BY row"
        )
        for i, source in enumerate(members):
            valid = f"valid_{source.table}"
            where = f"v._source_file = {_lit(source.source_file)} AND v.{SOURCE_ROW} = b.row"
            con.execute(
                f"INSERT INTO _rejects SELECT {_lit(source.table)}, v._source_file, "
                f"v.{SOURCE_ROW}, 'line', NULL, 'line ' || CAST(b.row AS VARCHAR) || ' is "
                "rejected as a whole: its ' || b.what || ' was rejected (see that reject), and "
                f"the {source.table} it also carries is not imported without it', NULL "
                f"FROM {valid} v JOIN _bad_lines b ON {where}"
            )
            done = con.execute(f"DELETE FROM {valid} v USING _bad_lines b WHERE {where}")
            taken += int((done.fetchone() or (0,))[0])
            view = f"_line_{source.table}_{i}"
            if isinstance(source.data, ParquetFile):
                con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {source.data.sql()}")
                _fill_reject_records(con, source.table, view, source)
                con.execute(f"DROP VIEW {view}")
            else:
                con.register(view, source.data)
                _fill_reject_records(con, source.table, view, source)
                con.unregister(view)
        con.execute("DROP TABLE _bad_lines")
    return taken

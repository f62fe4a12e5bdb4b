"""Parse and validate source rows in DuckDB; every failing row becomes a reject with its reason.

Runs entirely in SQL so that millions of rows validate in seconds. For each canonical table the
result is a temp table ``valid_<table>`` of typed, de-duplicated rows, and rejects accumulate in
the temp table ``_rejects`` (table, file, row, field, value, reason, record).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb
import pyarrow as pa

from salesml.importers.base import SOURCE_ROW, AttributeKind, SourceTable
from salesml.schemas import ATTRIBUTE_PREFIX, Column, TableSchema
from salesml.warehouse import quote

ISO_HINT = "use ISO 8601 (2025-03-31 or 2025-03-31T14:00:00Z) or declare date_formats in a mapping"
NUMBER_HINT = "use a plain number such as 1234.50 (no currency symbols mixed with text)"
REJECTS_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS _rejects (table_name VARCHAR, file VARCHAR, row BIGINT, "
    "field VARCHAR, value VARCHAR, reason VARCHAR, record VARCHAR)"
)


@dataclass
class StagedTable:
    """Outcome of validating one canonical table's sources."""

    table: str
    input_rows: int = 0
    duplicate_rows: int = 0  # exact duplicates of another row with the same key
    attributes: dict[str, AttributeKind] = field(default_factory=dict)

    @property
    def valid_name(self) -> str:
        return f"valid_{self.table}"


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _parse_expr(col: Column, raw: str, arrow_type: pa.DataType, formats: list[str]) -> str:
    """SQL turning the source column ``raw`` into the canonical kind (NULL when unparseable)."""
    kind = col.kind
    text = f"NULLIF(TRIM(CAST({raw} AS VARCHAR)), '')"
    if kind == "str":
        return text
    if kind in ("timestamp", "date"):
        if pa.types.is_timestamp(arrow_type) or pa.types.is_date(arrow_type):
            ts = f"CAST({raw} AS TIMESTAMP)"
        else:
            options = [f"TRY_STRPTIME({text}, {_lit(f)})" for f in formats]
            options += [
                f"TRY_CAST({text} AS TIMESTAMP)",
                f"CAST(TRY_CAST({text} AS TIMESTAMPTZ) AS TIMESTAMP)",
            ]
            ts = f"COALESCE({', '.join(options)})"
        return f"CAST({ts} AS DATE)" if kind == "date" else ts
    if kind in ("float", "int"):
        if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
            number = f"CAST({raw} AS DOUBLE)"
        else:
            cleaned = f"regexp_replace({text}, '[\\s$€£¥]', '', 'g')"
            thousands = "'-?[0-9]{1,3}(,[0-9]{3})+(\\.[0-9]+)?'"
            grouped = (
                f"CASE WHEN regexp_full_match({cleaned}, {thousands}) "
                f"THEN replace({cleaned}, ',', '') ELSE {cleaned} END"
            )
            number = f"TRY_CAST({grouped} AS DOUBLE)"
        if kind == "int":
            return f"CASE WHEN {number} = round({number}) THEN CAST({number} AS BIGINT) END"
        return number
    # bool
    if pa.types.is_boolean(arrow_type):
        return raw
    return (
        f"CASE WHEN lower({text}) IN ('true','t','1','yes','y') THEN TRUE "
        f"WHEN lower({text}) IN ('false','f','0','no','n') THEN FALSE END"
    )


def _infer_attribute_kind(con: duckdb.DuckDBPyConnection, view: str, column: str) -> AttributeKind:
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE v IS NOT NULL), "
        f"count(*) FILTER (WHERE v IS NOT NULL AND TRY_CAST(v AS DOUBLE) IS NULL) "
        f"FROM (SELECT NULLIF(TRIM(CAST({quote(column)} AS VARCHAR)), '') AS v FROM {view})"
    ).fetchone()
    assert row is not None
    filled, non_numeric = int(row[0]), int(row[1])
    return "numeric" if filled > 0 and non_numeric == 0 else "categorical"


def _checks(table: TableSchema, present: set[str]) -> list[tuple[str, str, str, str]]:
    """(condition, field, value expression, reason expression) for every row-level rule."""
    checks: list[tuple[str, str, str, str]] = []
    for col in table.columns:
        name, raw = col.name, f"_raw_{col.name}"
        q = quote(name)
        if name in present and col.kind != "str":
            checks.append(
                (
                    f"{raw} IS NOT NULL AND {q} IS NULL",
                    name,
                    raw,
                    _lit("could not read ")
                    + f" || quote({raw}) || "
                    + _lit(
                        f" as {col.kind}; "
                        + (
                            ISO_HINT
                            if col.kind in ("timestamp", "date")
                            else NUMBER_HINT
                            if col.kind in ("float", "int")
                            else "use true/false"
                        )
                    ),
                )
            )
        if not col.nullable and not (table.derived_key and name in table.key):
            checks.append(
                (
                    f"{raw} IS NULL",
                    name,
                    "NULL",
                    _lit(f"{name} is empty; every {table.name} row needs one"),
                )
            )
        if col.minimum is not None:
            checks.append(
                (
                    f"{q} < {col.minimum}",
                    name,
                    raw,
                    _lit(f"{name} is negative (")
                    + f" || {raw} || "
                    + _lit(
                        f"); {name} must be ≥ {col.minimum:g}: fix the sign, or leave it empty if "
                        "unknown"
                    ),
                )
            )
        if col.choices is not None:
            allowed = ", ".join(col.choices)
            checks.append(
                (
                    f"{q} IS NOT NULL AND {q} NOT IN ({', '.join(_lit(c) for c in col.choices)})",
                    name,
                    raw,
                    _lit(f"{name} ")
                    + f" || quote({raw}) || "
                    + _lit(f" is not one of {allowed}; map the export's values to these"),
                )
            )
        if name == "score" and table.name == "nps_responses":
            checks.append((f"{q} > 10", name, raw, _lit("NPS score must be between 0 and 10")))
    if table.name == "deals":
        checks += [
            (
                "status IN ('won', 'lost') AND closed_at IS NULL AND _raw_closed_at IS NULL",
                "closed_at",
                "NULL",
                "'deal is ' || status || ' but has no closed_at; fill in the date it closed'",
            ),
            (
                "status = 'open' AND closed_at IS NOT NULL",
                "closed_at",
                "_raw_closed_at",
                "'deal is open but has closed_at ' || _raw_closed_at || '; set status to won or "
                "lost, or clear closed_at'",
            ),
            (
                "closed_at < created_at",
                "closed_at",
                "_raw_closed_at",
                "'closed_at ' || _raw_closed_at || ' is before created_at ' || _raw_created_at || "
                "'; fix whichever date is wrong'",
            ),
            (
                "currency IS NOT NULL AND NOT regexp_full_match(currency, '[A-Z]{3}')",
                "currency",
                "_raw_currency",
                "'currency ' || quote(_raw_currency) || ' is not an ISO 4217 code such as USD'",
            ),
        ]
    if table.name == "leads":
        for later in ("converted_at", "disqualified_at"):
            checks.append(
                (
                    f"{later} < created_at",
                    later,
                    f"_raw_{later}",
                    f"'{later} ' || _raw_{later} || ' is before created_at ' || _raw_created_at || "
                    "'; fix whichever date is wrong'",
                )
            )
    # Columns the source lacks are NULL, so their rules cannot fire (required columns are
    # checked for presence before validation).
    return checks


def stage_sources(
    con: duckdb.DuckDBPyConnection,
    table: TableSchema,
    sources: list[SourceTable],
    known_attributes: dict[str, str],
) -> StagedTable:
    """Validate ``sources`` of one table into ``valid_<table>``; rejects go to ``_rejects``."""
    con.execute(REJECTS_DDL)
    con.execute("CREATE OR REPLACE TEMP MACRO quote(x) AS chr(39) || x || chr(39)")
    staged = StagedTable(table=table.name)
    parts: list[str] = []
    views: list[tuple[str, SourceTable]] = []
    for i, source in enumerate(sources):
        view = f"_src_{table.name}_{i}"
        con.register(view, source.data)
        views.append((view, source))
        part = f"_stg_{table.name}_{i}"
        _stage_one(con, table, source, view, part, staged, known_attributes)
        parts.append(part)
    attr_cols = [ATTRIBUTE_PREFIX + a for a in sorted(staged.attributes)]
    cols = [*table.column_names, *attr_cols]
    selects = []
    for part in parts:
        have = {r[0] for r in con.execute(f"DESCRIBE {part}").fetchall()}
        exprs = [quote(c) if c in have else f"NULL AS {quote(c)}" for c in cols]
        selects.append(
            f"SELECT {', '.join(exprs)}, _source_file, {SOURCE_ROW} FROM {part} WHERE NOT _rejected"
        )
    hashed = f"hash({', '.join(quote(c) for c in cols)})"
    keys = ", ".join(quote(k) for k in table.key)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _all_{table.name} AS "
        f"SELECT *, {hashed} AS _row_hash FROM ({' UNION ALL BY NAME '.join(selects)})"
    )
    _reject_conflicting_duplicates(con, table, keys)
    dup = con.execute(
        f"SELECT count(*) - count(DISTINCT ({keys})) FROM _all_{table.name} WHERE NOT _conflict"
    ).fetchone()
    staged.duplicate_rows = int(dup[0]) if dup else 0
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {staged.valid_name} AS SELECT * EXCLUDE (_conflict, _rn) "
        f"FROM (SELECT *, row_number() OVER (PARTITION BY {keys} ORDER BY _source_file, "
        f"{SOURCE_ROW}) AS _rn FROM _all_{table.name} WHERE NOT _conflict) WHERE _rn = 1"
    )
    for part in parts:
        con.execute(f"DROP TABLE {part}")
    con.execute(f"DROP TABLE _all_{table.name}")
    for view, source in views:
        _fill_reject_records(con, table.name, view, source)
        con.unregister(view)
    return staged


def _fill_reject_records(
    con: duckdb.DuckDBPyConnection, table: str, view: str, source: SourceTable
) -> None:
    """Attach the original row, as JSON, to each reject from this source file."""
    names = [c for c in source.data.column_names if c != SOURCE_ROW]
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


def _stage_one(
    con: duckdb.DuckDBPyConnection,
    table: TableSchema,
    source: SourceTable,
    view: str,
    part: str,
    staged: StagedTable,
    known_attributes: dict[str, str],
) -> None:
    schema = source.data.schema
    present = {c for c in table.column_names if c in schema.names}
    exprs: list[str] = []
    raws: list[str] = []
    for col in table.columns:
        if col.name in present:
            q = quote(col.name)
            formats = source.date_formats.get(col.name, [])
            exprs.append(f"{_parse_expr(col, q, schema.field(col.name).type, formats)} AS {q}")
            raws.append(f"NULLIF(TRIM(CAST({q} AS VARCHAR)), '') AS {quote('_raw_' + col.name)}")
        else:
            exprs.append(f"CAST(NULL AS {col.duckdb_type}) AS {quote(col.name)}")
            raws.append(f"CAST(NULL AS VARCHAR) AS {quote('_raw_' + col.name)}")
    attr_names: list[str] = []
    for column, declared in source.attributes.items():
        name = column.removeprefix(ATTRIBUTE_PREFIX)
        kind = known_attributes.get(name) or staged.attributes.get(name) or declared
        if kind is None:
            kind = _infer_attribute_kind(con, view, column)
        kind = "numeric" if kind == "numeric" else "categorical"
        staged.attributes[name] = kind
        target = quote(ATTRIBUTE_PREFIX + name)
        src = quote(column)
        text = f"NULLIF(TRIM(CAST({src} AS VARCHAR)), '')"
        exprs.append(
            f"TRY_CAST({text} AS DOUBLE) AS {target}"
            if kind == "numeric"
            else f"{text} AS {target}"
        )
        raws.append(f"{text} AS {quote('_raw_' + ATTRIBUTE_PREFIX + name)}")
        attr_names.append(name)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {part} AS SELECT {', '.join(exprs)}, {', '.join(raws)}, "
        f"{_lit(source.source_file)} AS _source_file, {SOURCE_ROW}, "
        f"FALSE AS _rejected FROM {view}"
    )
    staged.input_rows += source.data.num_rows
    if table.derived_key:
        key = table.key[0]
        others = [c for c in table.column_names if c != key]
        digest = (
            "md5(concat_ws('|', "
            + ", ".join(f"coalesce(CAST({quote(c)} AS VARCHAR), '')" for c in others)
            + "))"
        )
        con.execute(
            f"UPDATE {part} SET {quote(key)} = 'auto-' || left({digest}, 20) "
            f"WHERE {quote(key)} IS NULL"
        )
    checks = _checks(table, present)
    for name in attr_names:
        if staged.attributes[name] == "numeric":
            a, r = quote(ATTRIBUTE_PREFIX + name), f"_raw_{ATTRIBUTE_PREFIX}{name}"
            checks.append(
                (
                    f"{r} IS NOT NULL AND {a} IS NULL",
                    name,
                    r,
                    f"'custom attribute {name} is numeric, got ' || quote({r}) || '; fix the value "
                    "or declare the attribute categorical in a mapping'",
                )
            )
    hint_sql = (
        "CASE field "
        + " ".join(f"WHEN {_lit(c)} THEN {_lit(h)}" for c, h in source.hints.items())
        + " END"
        if source.hints
        else "NULL"
    )
    for condition, fld, value, reason in checks:
        con.execute(
            f"INSERT INTO _rejects SELECT {_lit(table.name)}, _source_file, {SOURCE_ROW}, "
            f"field, value, reason || coalesce(' (' || ({hint_sql}) || ')', ''), NULL "
            f"FROM (SELECT *, {_lit(fld)} AS field, CAST({value} AS VARCHAR) AS value, "
            f"{reason} AS reason FROM {part} WHERE {condition})"
        )
    con.execute(
        f"UPDATE {part} SET _rejected = TRUE WHERE {SOURCE_ROW} IN (SELECT row FROM _rejects "
        f"WHERE table_name = {_lit(table.name)} AND file = {_lit(source.source_file)})"
    )


def _reject_conflicting_duplicates(
    con: duckdb.DuckDBPyConnection, table: TableSchema, keys: str
) -> None:
    """Rows sharing a key but differing in content are all rejected: we cannot pick one."""
    all_name = f"_all_{table.name}"
    key_text = " || '/' || ".join(f"CAST({quote(k)} AS VARCHAR)" for k in table.key)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {all_name} AS SELECT *, "
        f"count(DISTINCT _row_hash) OVER (PARTITION BY {keys}) > 1 AS _conflict FROM {all_name}"
    )
    key_label = "/".join(table.key)
    con.execute(
        f"INSERT INTO _rejects SELECT {_lit(table.name)}, _source_file, {SOURCE_ROW}, "
        f"{_lit(key_label)}, {key_text}, "
        f"'{key_label} ' || quote({key_text}) || ' appears on ' || "
        f"CAST(count(*) OVER (PARTITION BY {keys}) AS VARCHAR) || ' rows with different "
        f"data (lines ' || string_agg(CAST({SOURCE_ROW} AS VARCHAR), ', ') OVER "
        f"(PARTITION BY {keys}) || '); keep one row per {key_label} and re-import', NULL "
        f"FROM {all_name} WHERE _conflict"
    )

"""The shared import pipeline: validate → reconcile → upsert in one transaction → summary.

Every input row ends up counted exactly once: ``imported`` (new key), ``updated`` (known key,
different content), ``unchanged`` (known key, same content, or an exact duplicate within the
export) or ``rejected`` (written to the rejects file with file, line, field and reason).
"""

from __future__ import annotations

import csv
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from salesml import jsonio
from salesml.errors import ImportFailedError
from salesml.importers.base import SOURCE_ROW, ImportBatch, SourceTable, require_columns
from salesml.importers.validate import (
    REJECTS_DDL,
    TEXT_CONTROL,
    Limits,
    StagedTable,
    line_grouped_tables,
    resolve_line_groups,
    stage_sources,
)
from salesml.schemas import ATTRIBUTE_PREFIX, DUCKDB_TYPES, IMPORT_ORDER, TABLES, TableSchema
from salesml.warehouse import attribute_columns, connect, quote

Progress = Callable[[str], None]
IMPORT_MEMORY_LIMIT = "2GB"


@dataclass
class TableCounts:
    """Per-table outcome; ``input == imported + updated + unchanged + rejected``."""

    input: int = 0
    imported: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0


@dataclass
class ImportSummary:
    """What an import did, as printed by ``salesml import`` (``--json``: ``to_json()``)."""

    import_id: str
    format: str
    source: str
    tables: dict[str, TableCounts]
    rejects_file: str | None = None
    placeholder_reps: int = 0
    warnings: list[str] = field(default_factory=list)
    unreadable_lines: int = 0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {name: asdict(c) for name, c in self.tables.items()}
        out.update(
            import_id=self.import_id,
            format=self.format,
            source=self.source,
            rejects_file=self.rejects_file,
            placeholder_reps=self.placeholder_reps,
            unreadable_lines=self.unreadable_lines,
            warnings=self.warnings,
        )
        return out


def run_import(
    batch: ImportBatch,
    warehouse_path: Path,
    rejects_dir: Path,
    progress: Progress | None = None,
    limits: Limits | None = None,
) -> ImportSummary:
    """Validate and upsert ``batch`` into the warehouse; all or nothing on failure.

    Values outside ``limits`` (default: ``Limits`` as of now) are rejected."""
    limits = limits or Limits(now=datetime.now(UTC))
    say = progress or (lambda _msg: None)
    by_table: dict[str, list[SourceTable]] = {}
    for source in batch.tables:
        if source.table not in TABLES:
            raise ImportFailedError(f"internal: importer produced unknown table {source.table!r}")
        schema = TABLES[source.table]
        require_columns(
            source.source_file,
            source.data,
            list(schema.required_columns),
            source.hints.get("_missing", ""),
            source.headers,
        )
        by_table.setdefault(source.table, []).append(source)
    import_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    summary = ImportSummary(import_id, batch.format, batch.source, {}, warnings=batch.warnings)
    for source in batch.tables:
        if source.data.num_rows == 0:
            summary.warnings.append(
                f"{source.source_file} has no rows (only a header?): nothing was read from it"
            )
    con = connect(warehouse_path)
    # Row order never matters here (rows carry their source line), and a bounded memory
    # budget lets DuckDB spill instead of growing with the export.
    con.execute("SET preserve_insertion_order = false")
    con.execute(f"SET memory_limit = '{IMPORT_MEMORY_LIMIT}'")
    try:
        if "deals" not in by_table:
            _require_deals_in_warehouse(con, batch.source)
            con.execute("CREATE OR REPLACE TEMP TABLE _known_deals AS SELECT deal_id FROM deals")
        staged: dict[str, StagedTable] = {}
        grouped = line_grouped_tables(batch.tables)
        for name in IMPORT_ORDER:
            if name not in by_table:
                continue
            say(f"validating {name}")
            known = {
                k.removeprefix(ATTRIBUTE_PREFIX): v for k, v in attribute_columns(con, name).items()
            }
            staged[name] = stage_sources(
                con,
                TABLES[name],
                by_table[name],
                known,
                limits,
                resolve_duplicates=name not in grouped,
            )
            summary.warnings.extend(staged[name].warnings)
            if name == "deals":
                _reconcile_products(con, summary)
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _known_deals AS SELECT deal_id FROM "
                    "valid_deals UNION SELECT deal_id FROM deals"
                )
        _settle(con, batch.tables, staged, limits)
        say("writing to the warehouse")
        con.execute("BEGIN TRANSACTION")
        try:
            for name, st in staged.items():
                _add_attribute_columns(con, TABLES[name], st)
                summary.tables[name] = _upsert(con, TABLES[name], st)
            summary.placeholder_reps = _placeholder_reps(con, summary)
            _reject_unreadable(con, batch, summary)
            summary.rejects_file = _write_rejects(con, rejects_dir, import_id)
            con.execute(
                "INSERT INTO _imports VALUES (?, ?, ?, ?, ?)",
                [
                    import_id,
                    datetime.now(UTC).replace(tzinfo=None),
                    batch.format,
                    batch.source,
                    jsonio.dumps(summary.to_json()),
                ],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
    except duckdb.Error as exc:
        raise ImportFailedError(
            f"import of {batch.source} failed and nothing was written: {exc}"
        ) from exc
    finally:
        con.close()
    return summary


def _settle(
    con: duckdb.DuckDBPyConnection,
    sources: list[SourceTable],
    staged: dict[str, StagedTable],
    limits: Limits,
) -> None:
    """What is left to decide once every table is staged: whole lines, then derived reps."""
    resolve_line_groups(con, sources, staged, TABLES)
    _reps_of_accepted_deals(con, sources, staged, limits)


def _reps_of_accepted_deals(
    con: duckdb.DuckDBPyConnection,
    sources: list[SourceTable],
    staged: dict[str, StagedTable],
    limits: Limits,
) -> None:
    """Reps made from deal owners (``owners_of_deals``) come only from accepted deal lines: an
    owner named only on rejected lines gets no rep, and a kept rep takes its name from the
    first accepted line naming it, never from a rejected one (that line's reject already says
    what is wrong; the rep is not an input row of its own, so it is not counted or rejected).
    A replacement name breaking the text rules leaves the validated one."""
    owned = [s for s in sources if s.table == "reps" and s.owners_of_deals]
    if not owned or "reps" not in staged:
        return
    reps = staged["reps"].valid_name
    deals = staged["deals"].valid_name if "deals" in staged else None
    for source in owned:
        if deals is None or source.owner_lines is None:
            row = con.execute(
                f"DELETE FROM {reps} WHERE _source_file = ?", [source.source_file]
            ).fetchone()
            staged["reps"].input_rows -= int(row[0]) if row else 0
            continue
        con.register("_owner_lines", source.owner_lines)
        try:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _owner_first AS SELECT o.owner_id, "
                f"arg_min(o.name, o.{SOURCE_ROW}) AS name, min(o.{SOURCE_ROW}) AS line "
                f"FROM _owner_lines o JOIN {deals} d ON d._source_file = o._source_file AND "
                f"d.{SOURCE_ROW} = o.{SOURCE_ROW} GROUP BY o.owner_id"
            )
        finally:
            con.unregister("_owner_lines")
        row = con.execute(
            f"DELETE FROM {reps} r WHERE r._source_file = ? AND NOT EXISTS "
            "(SELECT 1 FROM _owner_first f WHERE f.owner_id = r.owner_id)",
            [source.source_file],
        ).fetchone()
        staged["reps"].input_rows -= int(row[0]) if row else 0
        con.execute(
            f"UPDATE {reps} r SET name = f.name, {SOURCE_ROW} = f.line FROM _owner_first f "
            f"WHERE r._source_file = ? AND f.owner_id = r.owner_id AND r.{SOURCE_ROW} <> f.line "
            f"AND length(f.name) <= {int(limits.max_text_chars)} AND NOT "
            f"regexp_matches(f.name, {_sql_text(TEXT_CONTROL)})",
            [source.source_file],
        )


def _sql_text(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _require_deals_in_warehouse(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """An import without deals (leads, activities, spend…) adds to deals imported before."""
    ((deals,),) = con.execute("SELECT count(*) FROM deals").fetchall()
    if not deals:
        raise ImportFailedError(
            f"{source} has no deals and the warehouse holds none yet; import the deals first "
            "(or in the same export): every other table refers to them"
        )


def _reconcile_products(con: duckdb.DuckDBPyConnection, summary: ImportSummary) -> None:
    """Map product-name variants ("GTXPro") onto the catalogue's spelling ("GTX Pro")."""
    catalogue = "SELECT product FROM products"
    if _exists(con, "valid_products"):
        catalogue += " UNION SELECT product FROM valid_products"
    norm = "regexp_replace(lower({}), '[^a-z0-9]', '', 'g')"
    rows = con.execute(
        f"WITH cat AS ({catalogue}), variants AS (SELECT DISTINCT d.product AS variant, "
        f"c.product AS canonical FROM valid_deals d JOIN cat c ON {norm.format('d.product')} = "
        f"{norm.format('c.product')} WHERE d.product <> c.product) "
        "SELECT variant, any_value(canonical), count(DISTINCT canonical) FROM variants "
        "GROUP BY variant"
    ).fetchall()
    for variant, canonical, n in rows:
        if int(n) > 1:
            continue
        hits = con.execute(
            "UPDATE valid_deals SET product = ? WHERE product = ?", [canonical, variant]
        ).fetchone()
        count = int(hits[0]) if hits else 0
        summary.warnings.append(
            f"product {variant!r} on {count} deal(s) read as {canonical!r} (the catalogue's name)"
        )


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    row = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]
    ).fetchone()
    return bool(row and row[0])


def _add_attribute_columns(
    con: duckdb.DuckDBPyConnection, table: TableSchema, staged: StagedTable
) -> None:
    existing = attribute_columns(con, table.name)
    added = False
    for name, kind in sorted(staged.attributes.items()):
        column = ATTRIBUTE_PREFIX + name
        if column in existing:
            continue
        sql_type = DUCKDB_TYPES["float"] if kind == "numeric" else DUCKDB_TYPES["str"]
        con.execute(f"ALTER TABLE {table.name} ADD COLUMN {quote(column)} {sql_type}")
        con.execute("INSERT INTO _attributes VALUES (?, ?, ?, ?)", [table.name, name, kind, column])
        added = True
    if added:
        # The row hash covers every column, so existing rows get it recomputed once.
        cols = [*table.column_names, *attribute_columns(con, table.name)]
        con.execute(
            f"UPDATE {table.name} SET _row_hash = hash({', '.join(quote(c) for c in cols)})"
        )


def _upsert(con: duckdb.DuckDBPyConnection, table: TableSchema, staged: StagedTable) -> TableCounts:
    name, valid = table.name, staged.valid_name
    cols = [*table.column_names, *attribute_columns(con, name)]
    have = {r[0] for r in con.execute(f"DESCRIBE {valid}").fetchall()}
    exprs = [quote(c) if c in have else f"NULL AS {quote(c)}" for c in cols]
    # The hash covers the warehouse's full column list (attributes may differ per export).
    incoming = (
        f"(SELECT *, hash({', '.join(quote(c) for c in cols)}) AS _row_hash FROM "
        f"(SELECT {', '.join(exprs)} FROM {valid}))"
    )
    keys = ", ".join(quote(k) for k in table.key)
    existing = con.execute(f"SELECT count(*) FROM {name}").fetchone()
    if not existing or not existing[0]:
        inserted = con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM {incoming}").fetchone()
        counts = {"imported": int(inserted[0]) if inserted else 0}
    else:
        join = " AND ".join(f"i.{quote(k)} = t.{quote(k)}" for k in table.key)
        placeholder = "coalesce(t.is_placeholder, FALSE)" if name == "reps" else "FALSE"
        i_keys = ", ".join("i." + quote(k) for k in table.key)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _diff AS SELECT {i_keys}, "
            f"CASE WHEN t._row_hash IS NULL OR {placeholder} THEN 'imported' "
            "WHEN t._row_hash <> i._row_hash THEN 'updated' ELSE 'unchanged' END AS _outcome "
            f"FROM {incoming} i LEFT JOIN {name} t ON {join}"
        )
        counts = dict(con.execute("SELECT _outcome, count(*) FROM _diff GROUP BY 1").fetchall())
        con.execute("DELETE FROM _diff WHERE _outcome = 'unchanged'")
        t_keys = " AND ".join(f"{name}.{quote(k)} = d.{quote(k)}" for k in table.key)
        con.execute(f"DELETE FROM {name} USING _diff d WHERE {t_keys}")
        con.execute(
            f"INSERT INTO {name} BY NAME SELECT i.* FROM {incoming} i "
            f"SEMI JOIN _diff USING ({keys})"
        )
        con.execute("DROP TABLE _diff")
    rejected = con.execute(
        "SELECT count(DISTINCT (file, row)) FROM _rejects WHERE table_name = ?", [name]
    ).fetchone()
    result = TableCounts(
        input=staged.input_rows,
        imported=int(counts.get("imported", 0)),
        updated=int(counts.get("updated", 0)),
        unchanged=int(counts.get("unchanged", 0)) + staged.duplicate_rows,
        rejected=int(rejected[0]) if rejected else 0,
    )
    con.execute(f"DROP TABLE IF EXISTS {valid}")
    total = result.imported + result.updated + result.unchanged + result.rejected
    if total != result.input:
        raise ImportFailedError(
            f"internal: {name} counts do not add up ({total} accounted for, {result.input} "
            "read); nothing was written. Please report this with the export's shape."
        )
    return result


def _placeholder_reps(con: duckdb.DuckDBPyConnection, summary: ImportSummary) -> int:
    """Owners missing from reps get a placeholder rep, so their deals are never lost."""
    rows = con.execute(
        "SELECT owner_id, any_value(team), any_value(region), count(*) FROM deals d "
        "WHERE owner_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM reps r WHERE r.owner_id = "
        "d.owner_id) GROUP BY owner_id ORDER BY owner_id"
    ).fetchall()
    if not rows:
        return 0
    con.executemany(
        "INSERT INTO reps (owner_id, name, team, region, is_placeholder, _row_hash) "
        "VALUES (?, ?, ?, ?, TRUE, 0)",
        [[r[0], f"Unknown rep {r[0]}", r[1], r[2]] for r in rows],
    )
    n_deals = sum(int(r[3]) for r in rows)
    shown = ", ".join(str(r[0]) for r in rows[:5]) + (" …" if len(rows) > 5 else "")
    summary.warnings.append(
        f"{n_deals} deal(s) are owned by {len(rows)} owner_id(s) not in reps ({shown}); the "
        "deals were kept with placeholder reps — import the reps table to fill in their "
        "names and teams"
    )
    return len(rows)


UNREADABLE = "(unreadable line)"


def _reject_unreadable(
    con: duckdb.DuckDBPyConnection, batch: ImportBatch, summary: ImportSummary
) -> None:
    """Lines of the export that are not rows (``ImportBatch.unparsed``) into the rejects."""
    if not batch.unparsed:
        return
    con.execute(REJECTS_DDL)
    con.executemany(
        "INSERT INTO _rejects VALUES (?, ?, ?, NULL, NULL, ?, ?)",
        [[u.kind, u.file, u.line, u.reason, u.record] for u in batch.unparsed],
    )
    # Lines of another kind (Monday subitems) are warned about by their importer.
    unreadable = [u for u in batch.unparsed if u.kind == UNREADABLE]
    summary.unreadable_lines = len(unreadable)
    files: dict[str, int] = {}
    for u in unreadable:
        files[u.file] = files.get(u.file, 0) + 1
    for file, n in files.items():
        summary.warnings.append(
            f"{n:,} line(s) of {file} are not rows (a wrong number of fields) and were not "
            "imported: they are in the rejects file with their line numbers"
        )


REJECT_FIELDS = "; "
REJECT_REASONS = " | "


def _write_rejects(con: duckdb.DuckDBPyConnection, rejects_dir: Path, import_id: str) -> str | None:
    # One line per bad row, naming every bad field: fields and values joined by "; ", their
    # reasons (in the same order) by " | " (REJECT_FIELDS / REJECT_REASONS).
    rows = con.execute(
        "SELECT table_name, file, row, "
        "CASE WHEN count(*) = 1 THEN any_value(field) ELSE string_agg(coalesce(field, ''), "
        f"'{REJECT_FIELDS}' ORDER BY field, reason) END, "
        "CASE WHEN count(*) = 1 THEN any_value(value) ELSE string_agg(coalesce(value, ''), "
        f"'{REJECT_FIELDS}' ORDER BY field, reason) END, "
        f"string_agg(reason, '{REJECT_REASONS}' ORDER BY field, reason), any_value(record) "
        "FROM _rejects GROUP BY table_name, file, row ORDER BY table_name, file, row"
    ).fetchall()
    con.execute("DELETE FROM _rejects")
    if not rows:
        return None
    rejects_dir.mkdir(parents=True, exist_ok=True)
    path = rejects_dir / f"{import_id}.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["table", "file", "row", "field", "value", "reason", "record"])
        writer.writerows(rows)
    return str(path)

"""``salesml export``: the star schema of ``serving.bi_schema`` written as Parquet or CSV files
(one file per table, replaced atomically) for Power BI and Tableau; see docs/bi.md."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from salesml.errors import SalesmlError
from serving.bi_schema import BI_TABLES, TARGETS, arrow_schema

FORMATS = ("parquet", "csv")
KPI_GROUPINGS: tuple[Literal["team", "rep"] | None, ...] = (None, "team", "rep")
KPI_KEYS = ("as_of_date_key", "grouping", "group_key", "period", "period_start_date_key")
KPI_FIGURES = tuple(
    c.name for c in BI_TABLES["fact_kpis"] if c.name not in (*KPI_KEYS, "rep_key", "team_key")
)
FORMULA_START = r"^[=+\-@\t\r]"
UNASSIGNED = "Unassigned"  # the KPI engine's group of deals without an owner or team
DATE_YEARS_AHEAD = 2  # dim_date runs to the end of the as-of year + this (forecasts, close dates)


class ExportError(SalesmlError):
    """The export cannot be written (nothing to export, or an unwritable folder)."""


def date_key(values: pd.Series) -> pd.Series:
    """Dates / timestamps → YYYYMMDD integers (nullable)."""
    moments = pd.to_datetime(values, errors="coerce")
    keys = moments.dt.year * 10_000 + moments.dt.month * 100 + moments.dt.day
    return keys.astype("Int32")


def _key(moment: date | datetime) -> int:
    return moment.year * 10_000 + moment.month * 100 + moment.day


def dim_date(first: date, last: date) -> pd.DataFrame:
    """Every day from 1 January of ``first``'s year to 31 December of ``last``'s year."""
    days = pd.date_range(date(first.year, 1, 1), date(last.year, 12, 31))
    iso = days.isocalendar()
    return pd.DataFrame(
        {
            "date_key": date_key(pd.Series(days)),
            "date": days.date,
            "year": days.year,
            "quarter": days.quarter,
            "month": days.month,
            "month_name": days.month_name(),
            "iso_week": iso["week"].to_numpy(),
            "day_of_week": iso["day"].to_numpy(),
            "month_start": days.to_period("M").start_time.date,
            "quarter_start": days.to_period("Q").start_time.date,
        }
    )


def dim_rep(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per rep, and the ``Unassigned`` member: the rep key of deals without an owner,
    as ``fact_kpis`` groups them (``salesml kpis --by rep``), so every key finds its row."""
    rows = con.execute(
        "SELECT owner_id AS rep_key, CASE WHEN coalesce(is_placeholder, FALSE) THEN NULL "
        f"ELSE name END AS rep_name, coalesce(NULLIF(team, ''), '{UNASSIGNED}') AS team_key, "
        "manager, region, hired_at FROM reps ORDER BY owner_id"
    ).df()
    rows["hired_date_key"] = date_key(rows.pop("hired_at"))
    if UNASSIGNED not in set(rows["rep_key"]):
        member = {"rep_key": UNASSIGNED, "rep_name": UNASSIGNED, "team_key": UNASSIGNED}
        rows = pd.concat([rows, pd.DataFrame([member])], ignore_index=True)
    return rows


def dim_team(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """One row per team of the reps and deals, and the ``Unassigned`` member (deals and reps
    without a team, as ``fact_kpis`` groups them)."""
    return con.execute(
        "SELECT team_key, count(DISTINCT rep) AS reps FROM ("
        f"SELECT coalesce(NULLIF(team, ''), '{UNASSIGNED}') AS team_key, owner_id AS rep "
        f"FROM reps UNION ALL SELECT team, NULL FROM deals WHERE NULLIF(team, '') IS NOT NULL "
        f"UNION ALL SELECT '{UNASSIGNED}', NULL) "
        "GROUP BY team_key ORDER BY team_key"
    ).df()


def dim_deal(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    rows = con.execute(
        """
        SELECT d.deal_id AS deal_key, d.name AS deal_name, d.status, d.stage, d.amount,
               d.currency, coalesce(NULLIF(d.owner_id, ''), $none) AS rep_key,
               coalesce(NULLIF(d.team, ''), NULLIF(r.team, ''), $none) AS team_key,
               coalesce(d.region, r.region) AS region, d.account_id, a.name AS account_name,
               a.industry, d.product, d.lead_source, d.deal_type, d.created_at, d.closed_at,
               d.expected_close_date
        FROM deals d
        LEFT JOIN (SELECT owner_id, any_value(team) AS team, any_value(region) AS region
                   FROM reps GROUP BY owner_id) r ON d.owner_id = r.owner_id
        LEFT JOIN (SELECT account_id, any_value(name) AS name, any_value(industry) AS industry
                   FROM accounts GROUP BY account_id) a ON d.account_id = a.account_id
        ORDER BY d.deal_id
        """,
        {"none": UNASSIGNED},
    ).df()
    rows["created_date_key"] = date_key(rows["created_at"])
    rows["closed_date_key"] = date_key(rows.pop("closed_at"))
    rows["expected_close_date_key"] = date_key(rows.pop("expected_close_date"))
    return rows


def deal_keys(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """``dim_deal``'s rep and team keys by deal (what a score row without them takes)."""
    return dim_deal(con).set_index("deal_key")[["rep_key", "team_key"]]


def fact_deal_scores(
    scores: pd.DataFrame, run_id: str, keys: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The latest score run's rows in the star's shape (timing columns empty without them).
    A row without a rep or team takes the deal's (``keys``: ``deal_keys``), so a deal has
    the same keys here as in ``dim_deal``."""

    def first(values: pd.Series, key: str) -> list[Any]:
        out: list[Any] = []
        for value in values:
            items = json.loads(value) if isinstance(value, str) else value
            has = isinstance(items, list) and items and isinstance(items[0], dict)
            out.append(items[0].get(key) if has else None)
        return out

    def column(name: str) -> pd.Series:
        if name in scores:
            return scores[name]
        return pd.Series([None] * len(scores), index=scores.index, dtype=object)

    deal = scores["deal_id"].astype(str)

    def key(name: str, source: str) -> pd.Series:
        values = column(source).astype(object).replace("", None)
        if keys is not None:
            values = values.fillna(pd.Series(deal.map(keys[name]).to_numpy(), index=values.index))
        return values.where(values.notna(), UNASSIGNED)

    return pd.DataFrame(
        {
            "deal_key": deal,
            "rep_key": key("rep_key", "owner_id"),
            "team_key": key("team_key", "team"),
            "as_of_date_key": date_key(scores["as_of"]),
            "run_id": run_id,
            "model_version": scores["model_version"].astype(str),
            "win_probability": scores["win_probability"],
            "score": scores["score"],
            "p_close_90d": column("p_close_90d"),
            "expected_close_date_key": date_key(column("expected_close_date")),
            "expected_revenue": column("expected_revenue"),
            "top_driver": first(column("drivers"), "text"),
            "top_action": first(column("actions"), "action"),
        }
    )


def fact_kpis(kpis: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The ``periods`` rows of ``compute_kpis`` results (overall, and every group)."""
    rows: list[dict[str, Any]] = []
    for result in kpis:
        as_of = _key(datetime.fromisoformat(result["as_of"]))
        blocks = [("overall", None, result["overall"])]
        blocks += [(result["by"], g["group"], g) for g in result.get("groups", [])]
        for grouping, group, block in blocks:
            for p in block["periods"]:
                rows.append(
                    {
                        "as_of_date_key": as_of,
                        "grouping": grouping,
                        "group_key": group,
                        "period": result["period"],
                        "period_start_date_key": _key(date.fromisoformat(p["period_start"])),
                        **{name: p.get(name) for name in KPI_FIGURES},
                        "rep_key": group if grouping == "rep" else None,
                        "team_key": group if grouping == "team" else None,
                    }
                )
    return pd.DataFrame(rows, columns=[c.name for c in BI_TABLES["fact_kpis"]])


def fact_forecast(
    rows: pd.DataFrame, as_of: datetime, freq: str, segment_by: str | None, version: str
) -> pd.DataFrame:
    """``forecast_rows`` output in the star's shape."""
    segment = rows["segment"].astype(str)
    return pd.DataFrame(
        {
            "as_of_date_key": _key(as_of),
            "freq": freq,
            "period_start_date_key": date_key(rows["period_start"]),
            "segment_by": [
                "total" if s == "total" or segment_by is None else segment_by for s in segment
            ],
            "segment": segment,
            **{c: rows[c].astype(float) for c in ("forecast", "lower_80", "upper_80")},
            **{c: rows[c].astype(float) for c in ("lower_95", "upper_95")},
            "forecast_version": version,
        }
    )


def to_arrow(table: str, frame: pd.DataFrame) -> pa.Table:
    """``frame`` as the declared columns and types of ``table`` (extra columns dropped)."""
    schema = arrow_schema(table)
    missing = [n for n in schema.names if n not in frame.columns]
    if missing:
        raise ExportError(f"internal: {table} lacks column(s) {', '.join(missing)}")
    arrays = []
    for field in schema:
        values = frame[field.name]
        if pa.types.is_timestamp(field.type):
            values = pd.to_datetime(values, errors="coerce")
        values = values.astype(object).where(values.notna(), None)
        arrays.append(pa.array(values.tolist(), type=field.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


def defuse_formulas(data: pa.Table) -> pa.Table:
    """Text cells a spreadsheet would run as a formula (starting with ``= + - @``, a tab or a
    carriage return: ``=HYPERLINK("http://evil";"x")`` in a deal name) prefixed with ``'``, as
    OWASP advises for CSV files that may be opened in Excel. Only text columns change; numbers,
    dates and keys without such a first character are written as they are."""
    columns = []
    for column, field in zip(data.columns, data.schema, strict=True):
        if pa.types.is_string(field.type):
            risky = pc.match_substring_regex(column, FORMULA_START)
            columns.append(pc.if_else(risky, pc.binary_join_element_wise("'", column, ""), column))
        else:
            columns.append(column)
    return pa.Table.from_arrays(columns, schema=data.schema)


def write_table(data: pa.Table, folder: Path, name: str, fmt: str) -> Path:
    """Write ``name.parquet`` / ``name.csv`` into ``folder``, replacing it atomically."""
    path = folder / f"{name}.{fmt}"
    tmp = folder / f".{name}.{fmt}.tmp"
    try:
        if fmt == "parquet":
            pq.write_table(data, tmp)
        else:
            pacsv.write_csv(defuse_formulas(data), tmp, pacsv.WriteOptions(quoting_style="needed"))
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"cannot write {path}: {exc}; check the folder's permissions") from exc
    return path


def write_star(
    targets: Iterable[str],
    builders: dict[str, Callable[[], pd.DataFrame]],
    out: Path,
    fmt: str,
) -> dict[str, int]:
    """Build and write every table the ``targets`` need (each once); table → rows written."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be parquet or csv, got {fmt!r}")
    tables = list(dict.fromkeys(t for target in targets for t in TARGETS[target]))
    # Every table is built before any is written: a target that cannot be built (no score run,
    # no forecast model) leaves the folder as it was, not half refreshed.
    built = {table: to_arrow(table, builders[table]()) for table in tables}
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out}: {exc}") from exc
    written: dict[str, int] = {}
    for table, data in built.items():
        write_table(data, out, table, fmt)
        written[table] = data.num_rows
    return written


def span_dates(con: duckdb.DuckDBPyConnection, as_of: datetime) -> tuple[date, date]:
    """(first, last) day of ``dim_date``: the first deal's creation or rep's hire date (every
    ``dim_rep.hired_date_key`` finds its day) to the latest expected close date, and at least to
    the end of the as-of year + 2 (forecast periods)."""
    row = con.execute(
        "SELECT least(min(created_at)::DATE, min(expected_close_date), "
        "(SELECT min(hired_at)::DATE FROM reps)), "
        "greatest(max(expected_close_date), $as_of::DATE) FROM deals",
        {"as_of": as_of},
    ).fetchone()
    first = row[0] if row and row[0] else as_of.date()
    # Expected close dates may lie up to ten years ahead (the import's bound); beyond that the
    # calendar would only grow.
    last = min(row[1] if row and row[1] else as_of.date(), as_of.date() + timedelta(days=3660))
    ahead = date(as_of.year + DATE_YEARS_AHEAD, 12, 31)
    return first, max(last, ahead)

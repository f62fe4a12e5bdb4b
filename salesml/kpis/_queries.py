"""The SQL half of the KPI engine: every figure is aggregated inside DuckDB.

Each function runs one or two queries on a private cursor and returns small Python structures
keyed by ``(group, period_start)``; ``None`` as the group means "overall" and ``None`` as the
period means "the whole history up to as_of". The deals in scope, with their status at as_of
and their group, are the temporary view ``_kpi_deals`` (see ``load_deals``); a view measured
faster than a materialised table, since each query then reads only the columns it needs.
Tables other than deals may be missing or empty: their figures come back empty, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Literal

import duckdb

PeriodUnit = Literal["month", "quarter", "year"]
GroupBy = Literal["rep", "team", "region", "product", "segment"]
Key = tuple[str | None, date | None]

UNASSIGNED = "Unassigned"
UNKNOWN = "Unknown"
DEALS_VIEW = "_kpi_deals"

# A deal without an account is a new customer only when it is new business.
NEW_BUSINESS_TYPES = ("newbusiness", "new", "newlogo", "newcustomer")

SEGMENT_SQL = (
    "CASE WHEN a.employees IS NULL THEN 'Unknown' WHEN a.employees < 100 THEN 'SMB' "
    "WHEN a.employees < 1000 THEN 'Mid-Market' ELSE 'Enterprise' END"
)


@dataclass
class ClosedAgg:
    """Closed-deal figures of one (group, period) cell."""

    won: int = 0
    lost: int = 0
    revenue: float | None = None
    won_with_amount: int = 0
    median_cycle: float | None = None
    p75_cycle: float | None = None


@dataclass
class NpsAgg:
    """NPS answers of one (group, period) cell."""

    responses: int = 0
    promoters: int = 0
    detractors: int = 0


@dataclass
class LeadRow:
    """Lead-to-customer counts of one lead source."""

    source: str
    leads: int
    converted: int
    customers: int


@dataclass
class Funnel:
    """Stages in funnel order and, per (group, stage), deals that entered and advanced."""

    stages: list[str] = field(default_factory=list)
    counts: dict[tuple[str | None, str], tuple[int, int]] = field(default_factory=dict)


def present_tables(cur: duckdb.DuckDBPyConnection) -> set[str]:
    rows = cur.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = 'main'"
    ).fetchall()
    return {str(r[0]) for r in rows}


def grouping_sets(by: GroupBy | None, grouped: str, overall: str) -> str:
    """GROUPING SETS for the group rows plus, when grouping, the overall rollup.

    When ``by`` is None the group column is a constant NULL, so the grouped sets already are
    the overall figures.
    """
    if by is None:
        return f"GROUPING SETS ({grouped})"
    return f"GROUPING SETS ({grouped}, {overall})"


def _group_sql(by: GroupBy | None, tables: set[str]) -> tuple[str, str]:
    """(expression for the group of a deal ``d``, joins it needs)."""
    reps = (
        "(SELECT owner_id, any_value(team) AS team, any_value(region) AS region "
        "FROM reps GROUP BY owner_id)"
        if "reps" in tables
        else "(SELECT NULL::VARCHAR AS owner_id, NULL::VARCHAR AS team, NULL::VARCHAR AS region)"
    )
    accounts = (
        "(SELECT account_id, any_value(employees) AS employees FROM accounts GROUP BY account_id)"
        if "accounts" in tables
        else "(SELECT NULL::VARCHAR AS account_id, NULL::BIGINT AS employees)"
    )
    if by is None:
        return "NULL::VARCHAR", ""
    if by == "rep":
        return f"COALESCE(NULLIF(d.owner_id, ''), '{UNASSIGNED}')", ""
    if by in ("team", "region"):
        return (
            f"COALESCE(NULLIF(d.{by}, ''), NULLIF(r.{by}, ''), '{UNASSIGNED}')",
            f"LEFT JOIN {reps} r ON d.owner_id = r.owner_id",
        )
    if by == "product":
        return f"COALESCE(NULLIF(d.product, ''), '{UNKNOWN}')", ""
    return SEGMENT_SQL, f"LEFT JOIN {accounts} a ON d.account_id = a.account_id"


def deal_bounds(cur: duckdb.DuckDBPyConnection, tables: set[str]) -> tuple[int, datetime | None]:
    """(number of deals, latest created_at/closed_at), or (0, None) without a deals table."""
    if "deals" not in tables:
        return 0, None
    row = cur.execute(
        "SELECT count(*), max(greatest(created_at, COALESCE(closed_at, created_at))) FROM deals"
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def load_deals(
    cur: duckdb.DuckDBPyConnection,
    tables: set[str],
    by: GroupBy | None,
    unit: PeriodUnit,
    as_of: datetime,
) -> tuple[int, int, date | None]:
    """Define the deals created up to as_of, with their group and status at as_of.

    Returns (deals in scope, closed deals ignored for lacking closed_at, first period start).
    """
    group, joins = _group_sql(by, tables)
    # A view cannot take parameters: as_of goes in as a literal we format ourselves.
    at = f"TIMESTAMP '{as_of.isoformat(sep=' ')}'"
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW {DEALS_VIEW} AS
        SELECT deal_id, g, st, created_at, amount, account_id, product, lead_source, deal_type,
               currency, CASE WHEN st IN ('won', 'lost') THEN closed_at END AS closed_at
        FROM (
            SELECT d.deal_id, {group} AS g, d.created_at, d.closed_at, d.amount, d.account_id,
                   d.product, d.lead_source, d.deal_type, d.currency,
                   CASE WHEN d.status IN ('won', 'lost') AND d.closed_at <= {at} THEN d.status
                        WHEN d.status = 'open' OR d.closed_at > {at} THEN 'open'
                   END AS st
            FROM deals d {joins}
            WHERE d.created_at <= {at}
        )
        WHERE st IS NOT NULL
        """
    )
    row = cur.execute(
        f"SELECT count(*), date_trunc('{unit}', min(created_at))::DATE FROM {DEALS_VIEW}"
    ).fetchone()
    undated = cur.execute(
        "SELECT count(*) FROM deals WHERE status IN ('won', 'lost') AND closed_at IS NULL "
        "AND created_at <= $as_of",
        {"as_of": as_of},
    ).fetchone()
    assert row is not None and undated is not None
    return int(row[0]), int(undated[0]), row[1]


def currencies(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """Currencies of the deals in scope with their deal counts, most common first."""
    rows = cur.execute(
        f"SELECT currency, count(*) AS n FROM {DEALS_VIEW} WHERE currency IS NOT NULL "
        "GROUP BY currency ORDER BY n DESC, currency"
    ).fetchall()
    return [(str(c), int(n)) for c, n in rows]


def groups(
    cur: duckdb.DuckDBPyConnection, tables: set[str], by: GroupBy
) -> list[tuple[str, str | None]]:
    """The groups that have deals in scope, sorted, with a display label for reps."""
    if by == "rep" and "reps" in tables:
        rows = cur.execute(
            f"SELECT k.g, n.name FROM (SELECT DISTINCT g FROM {DEALS_VIEW}) k "
            "LEFT JOIN (SELECT owner_id, any_value(name) AS name FROM reps "
            "GROUP BY owner_id) n ON k.g = n.owner_id ORDER BY k.g"
        ).fetchall()
        return [(str(g), None if n is None else str(n)) for g, n in rows]
    rows = cur.execute(f"SELECT DISTINCT g FROM {DEALS_VIEW} ORDER BY g").fetchall()
    return [(str(r[0]), None) for r in rows]


def closed_figures(
    cur: duckdb.DuckDBPyConnection, by: GroupBy | None, unit: PeriodUnit
) -> dict[Key, ClosedAgg]:
    """Won/lost counts, revenue and cycle quantiles per (group, close period)."""
    sets = grouping_sets(by, "(g, p), (g)", "(p), ()")
    rows = cur.execute(
        f"""
        SELECT g, p,
               count(*) FILTER (WHERE st = 'won'),
               count(*) FILTER (WHERE st = 'lost'),
               sum(amount) FILTER (WHERE st = 'won'),
               count(amount) FILTER (WHERE st = 'won'),
               quantile_cont(cycle, [0.5, 0.75]) FILTER (WHERE st = 'won')
        FROM (
            SELECT g, st, amount, date_trunc('{unit}', closed_at)::DATE AS p,
                   (closed_at::DATE - created_at::DATE)::DOUBLE AS cycle
            FROM {DEALS_VIEW} WHERE st IN ('won', 'lost')
        )
        GROUP BY {sets}
        """
    ).fetchall()
    return {
        (g, p): ClosedAgg(int(won), int(lost), rev, int(n_amt), *(q or (None, None)))
        for g, p, won, lost, rev, n_amt, q in rows
    }


def new_customers(
    cur: duckdb.DuckDBPyConnection, by: GroupBy | None, unit: PeriodUnit
) -> tuple[dict[Key, int], dict[str, int]]:
    """New customers per (group, period), and overall per lead source of their first deal.

    A new customer is an account's first won deal (earliest closed_at, then deal_id); a won
    deal without an account is a new customer of its own when its type is empty or new
    business.
    """
    kinds = ", ".join(f"'{t}'" for t in NEW_BUSINESS_TYPES)
    sets = (
        grouping_sets(by, "(g, p), (g)", "(p), (), (src)")
        if by
        else "GROUPING SETS ((g, p), (g), (g, src))"
    )
    rows = cur.execute(
        f"""
        WITH first_wins AS (
            SELECT f.g, f.t AS closed_at, f.lead_source FROM (
                SELECT min({{'t': closed_at, 'd': deal_id, 'g': g, 'lead_source': lead_source}})
                    AS f
                FROM {DEALS_VIEW} WHERE st = 'won' AND account_id IS NOT NULL
                GROUP BY account_id)
            UNION ALL
            SELECT g, closed_at, lead_source FROM {DEALS_VIEW}
            WHERE st = 'won' AND account_id IS NULL AND (deal_type IS NULL OR
                  regexp_replace(lower(deal_type), '[^a-z]', '', 'g') IN ({kinds}))
        )
        SELECT g, p, src, grouping(src) AS by_src, count(*)
        FROM (SELECT g, date_trunc('{unit}', closed_at)::DATE AS p, lead_source AS src
              FROM first_wins)
        GROUP BY {sets}
        """
    ).fetchall()
    per: dict[Key, int] = {}
    per_channel: dict[str, int] = {}
    for g, p, src, by_src, n in rows:
        if by_src == 0:
            if src is not None:
                per_channel[str(src)] = int(n)
        else:
            per[(g, p)] = int(n)
    return per, per_channel


def open_pipeline(
    cur: duckdb.DuckDBPyConnection, tables: set[str], by: GroupBy | None
) -> dict[str | None, tuple[int, float, float]]:
    """Per group: open deals at as_of, their value, and the part estimated from list prices."""
    prices = (
        "(SELECT product, any_value(list_price) AS list_price FROM products GROUP BY product)"
        if "products" in tables
        else "(SELECT NULL::VARCHAR AS product, NULL::DOUBLE AS list_price)"
    )
    rows = cur.execute(
        f"""
        SELECT k.g, count(*), COALESCE(sum(COALESCE(k.amount, pr.list_price)), 0),
               COALESCE(sum(pr.list_price) FILTER (WHERE k.amount IS NULL), 0)
        FROM {DEALS_VIEW} k LEFT JOIN {prices} pr ON k.product = pr.product
        WHERE k.st = 'open'
        GROUP BY {grouping_sets(by, "(k.g)", "()")}
        """
    ).fetchall()
    return {g: (int(n), float(total), float(est)) for g, n, total, est in rows}

"""The SQL half of the KPI engine: every figure is aggregated inside DuckDB.

Each function runs one or two queries on a private cursor and returns small Python structures
keyed by ``(group, period_start)``; ``None`` as the group means "overall" and ``None`` as the
period means "the whole history up to as_of". The deals in scope are materialised once, in the
temporary table ``_kpi_deals`` (see ``load_deals``), so each later query reads 1 table, not 4.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import duckdb

PeriodUnit = Literal["month", "quarter", "year"]
GroupBy = Literal["rep", "team", "region", "product", "segment"]
Key = tuple[str | None, date | None]

UNASSIGNED = "Unassigned"
UNKNOWN = "Unknown"
DEALS_TABLE = "_kpi_deals"
STAGES_TABLE = "_kpi_stage_entries"

# Stage names that mean "closed" rather than a step of the pipeline; left out of the funnel.
TERMINAL_STAGE = re.compile(r"^(closed[\s_-]*(won|lost)?|won|lost)$", re.IGNORECASE)
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


def _present_tables(cur: duckdb.DuckDBPyConnection) -> set[str]:
    rows = cur.execute(
        "SELECT table_name FROM information_schema.tables "
        "WHERE table_catalog = current_database() AND table_schema = 'main'"
    ).fetchall()
    return {str(r[0]) for r in rows}


def _sets(by: GroupBy | None, grouped: str, overall: str) -> str:
    """GROUPING SETS for the group rows plus, when grouping, the overall rollup.

    When ``by`` is None the group column is a constant NULL, so the grouped sets already are
    the overall figures.
    """
    if by is None:
        return f"GROUPING SETS ({grouped})"
    return f"GROUPING SETS ({grouped}, {overall})"


def _group_sql(by: GroupBy | None) -> tuple[str, str]:
    """(expression for the group of a deal ``d``, joins it needs)."""
    reps = "LEFT JOIN (SELECT owner_id, any_value(team) AS team, any_value(region) AS region " \
        "FROM reps GROUP BY owner_id) r ON d.owner_id = r.owner_id"
    if by is None:
        return "NULL::VARCHAR", ""
    if by == "rep":
        return f"COALESCE(NULLIF(d.owner_id, ''), '{UNASSIGNED}')", ""
    if by in ("team", "region"):
        return f"COALESCE(NULLIF(d.{by}, ''), NULLIF(r.{by}, ''), '{UNASSIGNED}')", reps
    if by == "product":
        return f"COALESCE(NULLIF(d.product, ''), '{UNKNOWN}')", ""
    accounts = (
        "LEFT JOIN (SELECT account_id, any_value(employees) AS employees FROM accounts "
        "GROUP BY account_id) a ON d.account_id = a.account_id"
    )
    return SEGMENT_SQL, accounts


def deal_bounds(cur: duckdb.DuckDBPyConnection) -> tuple[int, datetime | None]:
    """(number of deals, latest created_at/closed_at), or (0, None) without a deals table."""
    if "deals" not in _present_tables(cur):
        return 0, None
    row = cur.execute(
        "SELECT count(*), max(greatest(created_at, COALESCE(closed_at, created_at))) FROM deals"
    ).fetchone()
    assert row is not None
    return int(row[0]), row[1]


def load_deals(
    cur: duckdb.DuckDBPyConnection, by: GroupBy | None, unit: PeriodUnit, as_of: datetime
) -> tuple[int, int, date | None]:
    """Materialise the deals created up to as_of with their group and status at as_of.

    Returns (deals in scope, closed deals ignored for lacking closed_at, first period start).
    """
    group, joins = _group_sql(by)
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {DEALS_TABLE} AS
        SELECT deal_id, g, st, created_at, amount, account_id, product, lead_source, deal_type,
               currency, CASE WHEN st IN ('won', 'lost') THEN closed_at END AS closed_at
        FROM (
            SELECT d.deal_id, {group} AS g, d.created_at, d.closed_at, d.amount, d.account_id,
                   d.product, d.lead_source, d.deal_type, d.currency,
                   CASE WHEN d.status IN ('won', 'lost') AND d.closed_at <= $as_of
                            THEN d.status
                        WHEN d.status = 'open' OR d.closed_at > $as_of THEN 'open'
                   END AS st
            FROM deals d {joins}
            WHERE d.created_at <= $as_of
        )
        """,
        {"as_of": as_of},
    )
    row = cur.execute(
        f"SELECT count(*), count(*) FILTER (WHERE st IS NULL), "
        f"date_trunc('{unit}', min(created_at))::DATE FROM {DEALS_TABLE}"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), row[2]


def currencies(cur: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """Currencies of the deals in scope with their deal counts, most common first."""
    rows = cur.execute(
        f"SELECT currency, count(*) AS n FROM {DEALS_TABLE} WHERE currency IS NOT NULL "
        "GROUP BY currency ORDER BY n DESC, currency"
    ).fetchall()
    return [(str(c), int(n)) for c, n in rows]


def groups(cur: duckdb.DuckDBPyConnection, by: GroupBy) -> list[tuple[str, str | None]]:
    """The groups that have deals in scope, sorted, with a display label for reps."""
    if by == "rep":
        tables = _present_tables(cur)
        if "reps" in tables:
            rows = cur.execute(
                f"SELECT k.g, n.name FROM (SELECT DISTINCT g FROM {DEALS_TABLE}) k "
                "LEFT JOIN (SELECT owner_id, any_value(name) AS name FROM reps "
                "GROUP BY owner_id) n ON k.g = n.owner_id ORDER BY k.g"
            ).fetchall()
            return [(str(g), None if n is None else str(n)) for g, n in rows]
    rows = cur.execute(f"SELECT DISTINCT g FROM {DEALS_TABLE} ORDER BY g").fetchall()
    return [(str(r[0]), None) for r in rows]


def closed_figures(
    cur: duckdb.DuckDBPyConnection, by: GroupBy | None, unit: PeriodUnit
) -> dict[Key, ClosedAgg]:
    """Won/lost counts, revenue and cycle quantiles per (group, close period)."""
    sets = _sets(by, "(g, p), (g)", "(p), ()")
    rows = cur.execute(
        f"""
        SELECT g, p,
               count(*) FILTER (WHERE st = 'won'),
               count(*) FILTER (WHERE st = 'lost'),
               sum(amount) FILTER (WHERE st = 'won'),
               count(amount) FILTER (WHERE st = 'won'),
               quantile_cont(cycle, 0.5) FILTER (WHERE st = 'won'),
               quantile_cont(cycle, 0.75) FILTER (WHERE st = 'won')
        FROM (
            SELECT g, st, amount, date_trunc('{unit}', closed_at)::DATE AS p,
                   (closed_at::DATE - created_at::DATE)::DOUBLE AS cycle
            FROM {DEALS_TABLE} WHERE st IN ('won', 'lost')
        )
        GROUP BY {sets}
        """
    ).fetchall()
    return {
        (g, p): ClosedAgg(int(won), int(lost), rev, int(n_amt), med, p75)
        for g, p, won, lost, rev, n_amt, med, p75 in rows
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
    sets = _sets(by, "(g, p), (g)", "(p), (), (src)") if by else "GROUPING SETS ((g, p), (g), (g, src))"
    rows = cur.execute(
        f"""
        WITH first_wins AS (
            SELECT g, closed_at, lead_source FROM {DEALS_TABLE}
            WHERE st = 'won' AND account_id IS NOT NULL
            QUALIFY row_number() OVER (PARTITION BY account_id ORDER BY closed_at, deal_id) = 1
            UNION ALL
            SELECT g, closed_at, lead_source FROM {DEALS_TABLE}
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


def marketing_spend(
    cur: duckdb.DuckDBPyConnection, unit: PeriodUnit, as_of: datetime
) -> tuple[dict[date, float], dict[str, float]] | None:
    """Spend per period and per channel up to as_of; None when there is no spend data."""
    if "marketing_spend" not in _present_tables(cur):
        return None
    rows = cur.execute(
        f"SELECT date_trunc('{unit}', period)::DATE, channel, sum(amount) FROM marketing_spend "
        "WHERE period <= $as_of::DATE GROUP BY ALL",
        {"as_of": as_of},
    ).fetchall()
    if not rows:
        return None
    per: dict[date, float] = {}
    per_channel: dict[str, float] = {}
    for p, channel, amount in rows:
        per[p] = per.get(p, 0.0) + float(amount)
        per_channel[str(channel)] = per_channel.get(str(channel), 0.0) + float(amount)
    return per, per_channel


def nps(
    cur: duckdb.DuckDBPyConnection, by: GroupBy | None, unit: PeriodUnit, as_of: datetime
) -> dict[Key, NpsAgg]:
    """Promoters, detractors and responses per (group, period) up to as_of."""
    tables = _present_tables(cur)
    if "nps_responses" not in tables:
        return {}
    counts = (
        "count(*), count(*) FILTER (WHERE n.score >= 9), count(*) FILTER (WHERE n.score <= 6)"
    )
    period = f"date_trunc('{unit}', n.responded_at)::DATE"
    out: dict[Key, NpsAgg] = {}
    rows: list[Any] = cur.execute(
        f"SELECT NULL, {period} AS p, {counts} FROM nps_responses n "
        "WHERE n.responded_at <= $as_of GROUP BY GROUPING SETS ((p), ())",
        {"as_of": as_of},
    ).fetchall()
    if by == "segment":
        accounts = (
            "LEFT JOIN (SELECT account_id, any_value(employees) AS employees FROM accounts "
            "GROUP BY account_id) a ON n.account_id = a.account_id"
            if "accounts" in tables
            else "LEFT JOIN (SELECT NULL::VARCHAR AS account_id, NULL::BIGINT AS employees) a "
            "ON FALSE"
        )
        rows += cur.execute(
            f"SELECT {SEGMENT_SQL} AS g, {period} AS p, {counts} FROM nps_responses n "
            f"{accounts} WHERE n.responded_at <= $as_of GROUP BY GROUPING SETS ((g, p), (g))",
            {"as_of": as_of},
        ).fetchall()
    elif by is not None:
        rows += cur.execute(
            f"SELECT k.g, {period} AS p, {counts} FROM nps_responses n "
            f"JOIN (SELECT DISTINCT g, account_id FROM {DEALS_TABLE} "
            "WHERE account_id IS NOT NULL) k ON n.account_id = k.account_id "
            "WHERE n.responded_at <= $as_of GROUP BY GROUPING SETS ((k.g, p), (k.g))",
            {"as_of": as_of},
        ).fetchall()
    for g, p, n, prom, det in rows:
        out[(g, p)] = NpsAgg(int(n), int(prom), int(det))
    return out


def open_pipeline(
    cur: duckdb.DuckDBPyConnection, by: GroupBy | None
) -> dict[str | None, tuple[int, float, float]]:
    """Per group: open deals at as_of, their value, and the part estimated from list prices."""
    prices = (
        "(SELECT product, any_value(list_price) AS list_price FROM products GROUP BY product)"
        if "products" in _present_tables(cur)
        else "(SELECT NULL::VARCHAR AS product, NULL::DOUBLE AS list_price)"
    )
    rows = cur.execute(
        f"""
        SELECT k.g, count(*), COALESCE(sum(COALESCE(k.amount, pr.list_price)), 0),
               COALESCE(sum(pr.list_price) FILTER (WHERE k.amount IS NULL), 0)
        FROM {DEALS_TABLE} k LEFT JOIN {prices} pr ON k.product = pr.product
        WHERE k.st = 'open'
        GROUP BY {_sets(by, "(k.g)", "()")}
        """
    ).fetchall()
    return {g: (int(n), float(total), float(est)) for g, n, total, est in rows}


def lead_conversion(
    cur: duckdb.DuckDBPyConnection, by: GroupBy | None, as_of: datetime
) -> dict[str | None, list[LeadRow]]:
    """Lead-to-customer counts per lead source, overall and per group of the lead's owner.

    Groups are only attributable by the lead owner: rep (leads.owner_id) and team / region
    (the owner's team / region in reps); for product and segment only overall is returned.
    """
    tables = _present_tables(cur)
    if "leads" not in tables:
        return {}
    reps = (
        "LEFT JOIN (SELECT owner_id, any_value(team) AS team, any_value(region) AS region "
        "FROM reps GROUP BY owner_id) r ON l.owner_id = r.owner_id"
        if "reps" in tables
        else "LEFT JOIN (SELECT NULL::VARCHAR AS owner_id, NULL::VARCHAR AS team, "
        "NULL::VARCHAR AS region) r ON FALSE"
    )
    if by == "rep":
        group, sets = f"COALESCE(NULLIF(l.owner_id, ''), '{UNASSIGNED}')", "(g, src), (src)"
    elif by in ("team", "region"):
        group, sets = f"COALESCE(NULLIF(r.{by}, ''), '{UNASSIGNED}')", "(g, src), (src)"
    else:
        group, sets = "NULL::VARCHAR", "(g, src)"
    rows = cur.execute(
        f"""
        SELECT g, src, count(*), count(*) FILTER (WHERE conv),
               count(*) FILTER (WHERE conv AND won)
        FROM (
            SELECT {group} AS g, COALESCE(NULLIF(l.source, ''), '{UNKNOWN}') AS src,
                   COALESCE(l.converted_at <= $as_of,
                            l.deal_id IS NOT NULL AND COALESCE(d.created_at <= $as_of, TRUE))
                       AS conv,
                   COALESCE(d.status = 'won' AND d.closed_at <= $as_of, FALSE) AS won
            FROM leads l LEFT JOIN deals d ON l.deal_id = d.deal_id {reps}
            WHERE l.created_at <= $as_of
        )
        GROUP BY GROUPING SETS ({sets})
        ORDER BY src
        """,
        {"as_of": as_of},
    ).fetchall()
    out: dict[str | None, list[LeadRow]] = {}
    for g, src, n, conv, cust in rows:
        out.setdefault(g, []).append(LeadRow(str(src), int(n), int(conv), int(cust)))
    return out


def funnel(cur: duckdb.DuckDBPyConnection, by: GroupBy | None, as_of: datetime) -> Funnel:
    """Stage order and per-stage advancement from stage_history (see docs/kpis.md)."""
    if "stage_history" not in _present_tables(cur):
        return Funnel()
    names = [
        str(r[0])
        for r in cur.execute(
            "SELECT DISTINCT stage FROM stage_history WHERE changed_at <= $as_of",
            {"as_of": as_of},
        ).fetchall()
    ]
    kept = [s for s in names if not TERMINAL_STAGE.match(s.strip())]
    if not kept:
        return Funnel()
    cur.execute("CREATE OR REPLACE TEMP TABLE _kpi_stages (stage VARCHAR)")
    cur.executemany("INSERT INTO _kpi_stages VALUES (?)", [[s] for s in kept])
    # First entry of every (deal, stage), for deals in scope.
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {STAGES_TABLE} AS
        SELECT s.deal_id, s.stage, min(s.changed_at) AS t
        FROM stage_history s SEMI JOIN _kpi_stages USING (stage)
        SEMI JOIN {DEALS_TABLE} k ON s.deal_id = k.deal_id
        WHERE s.changed_at <= $as_of
        GROUP BY s.deal_id, s.stage
        """,
        {"as_of": as_of},
    )
    ranks = cur.execute(
        f"""
        SELECT stage, quantile_cont(rn, 0.5), avg(rn) FROM (
            SELECT stage, row_number() OVER (PARTITION BY deal_id ORDER BY t, stage) AS rn
            FROM {STAGES_TABLE})
        GROUP BY stage
        """
    ).fetchall()
    order = [str(s) for s, _, _ in sorted(ranks, key=lambda r: (r[1], r[2], r[0]))]
    if len(order) < 2:
        return Funnel(stages=order)
    cur.execute("CREATE OR REPLACE TEMP TABLE _kpi_stages (stage VARCHAR, pos INTEGER)")
    cur.executemany("INSERT INTO _kpi_stages VALUES (?, ?)", [[s, i] for i, s in enumerate(order)])
    # reach = furthest stage entered at or after this stage's first entry.
    rows = cur.execute(
        f"""
        SELECT k.g, e.stage, count(*), count(*) FILTER (WHERE e.reach > e.pos OR k.st = 'won')
        FROM (
            SELECT deal_id, stage, pos,
                   max(pos) OVER (PARTITION BY deal_id ORDER BY t DESC
                                  RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS reach
            FROM {STAGES_TABLE} JOIN _kpi_stages USING (stage)
        ) e JOIN {DEALS_TABLE} k ON e.deal_id = k.deal_id
        WHERE e.pos < {len(order) - 1}
        GROUP BY {_sets(by, "(k.g, e.stage)", "(e.stage)")}
        """
    ).fetchall()
    return Funnel(
        stages=order, counts={(g, str(s)): (int(n), int(adv)) for g, s, n, adv in rows}
    )


def first_activity_period(
    cur: duckdb.DuckDBPyConnection, unit: PeriodUnit, as_of: datetime
) -> date | None:
    """Earliest period with spend or an NPS answer up to as_of (the grid may start there)."""
    tables = _present_tables(cur)
    parts = []
    if "marketing_spend" in tables:
        parts.append("SELECT min(period)::TIMESTAMP AS t FROM marketing_spend "
                     "WHERE period <= $as_of::DATE")
    if "nps_responses" in tables:
        parts.append("SELECT min(responded_at) AS t FROM nps_responses "
                     "WHERE responded_at <= $as_of")
    if not parts:
        return None
    row = cur.execute(
        f"SELECT date_trunc('{unit}', min(t))::DATE FROM ({' UNION ALL '.join(parts)})",
        {"as_of": as_of},
    ).fetchone()
    return None if row is None else row[0]

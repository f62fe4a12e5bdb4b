"""Marketing and customer figures: spend, NPS answers and lead-to-customer conversion.

Each of these tables is optional: when missing or empty the figures come back empty.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import duckdb

from salesml.kpis._queries import (
    DEALS_VIEW,
    SEGMENT_SQL,
    UNASSIGNED,
    UNKNOWN,
    GroupBy,
    Key,
    LeadRow,
    NpsAgg,
    PeriodUnit,
)


def marketing_spend(
    cur: duckdb.DuckDBPyConnection, tables: set[str], unit: PeriodUnit, as_of: datetime
) -> tuple[dict[date, float], dict[str, float]] | None:
    """Spend per period and per channel up to as_of; None when there is no spend data."""
    if "marketing_spend" not in tables:
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


def web_traffic(
    cur: duckdb.DuckDBPyConnection, tables: set[str], as_of: datetime
) -> dict[str, tuple[int, float | None]] | None:
    """Sessions and key events per channel up to as_of (key events None where the export
    had none); None when there is no web analytics data.

    Key events may be fractional (GA4 attributes a conversion in parts): they are summed as
    decimals of ``KEY_EVENT_DECIMALS`` places, so 0.1 + 0.2 is 0.3 and not a binary float's
    0.30000000000000004, and a whole total comes back as a whole number."""
    if "web_sessions" not in tables:
        return None
    rows = cur.execute(
        "SELECT channel, sum(sessions), "
        f"sum(CAST(key_events AS DECIMAL(38, {KEY_EVENT_DECIMALS}))), count(key_events) "
        "FROM web_sessions WHERE period <= $as_of::DATE GROUP BY channel ORDER BY channel",
        {"as_of": as_of},
    ).fetchall()
    if not rows:
        return None
    return {str(c): (int(n), _exact(k) if int(filled) else None) for c, n, k, filled in rows}


KEY_EVENT_DECIMALS = 6


def _exact(total: Decimal) -> float:
    """A decimal total as a number: whole totals as whole numbers (39, not 39.0)."""
    return int(total) if total == total.to_integral_value() else float(total)


def nps(
    cur: duckdb.DuckDBPyConnection,
    tables: set[str],
    by: GroupBy | None,
    unit: PeriodUnit,
    as_of: datetime,
) -> dict[Key, NpsAgg]:
    """Promoters, detractors and responses per (group, period) up to as_of."""
    if "nps_responses" not in tables:
        return {}
    counts = "count(*), count(*) FILTER (WHERE n.score >= 9), count(*) FILTER (WHERE n.score <= 6)"
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
            f"JOIN (SELECT DISTINCT g, account_id FROM {DEALS_VIEW} "
            "WHERE account_id IS NOT NULL) k ON n.account_id = k.account_id "
            "WHERE n.responded_at <= $as_of GROUP BY GROUPING SETS ((k.g, p), (k.g))",
            {"as_of": as_of},
        ).fetchall()
    for g, p, n, prom, det in rows:
        out[(g, p)] = NpsAgg(int(n), int(prom), int(det))
    return out


def lead_conversion(
    cur: duckdb.DuckDBPyConnection, tables: set[str], by: GroupBy | None, as_of: datetime
) -> dict[str | None, list[LeadRow]]:
    """Lead-to-customer counts per lead source, overall and per group of the lead's owner.

    Groups are only attributable by the lead owner: rep (leads.owner_id) and team / region
    (the owner's team / region in reps); for product and segment only overall is returned.
    """
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


def first_activity_period(
    cur: duckdb.DuckDBPyConnection, tables: set[str], unit: PeriodUnit, as_of: datetime
) -> date | None:
    """Earliest period with spend or an NPS answer up to as_of (the grid may start there)."""
    parts = []
    if "marketing_spend" in tables:
        parts.append(
            "SELECT min(period)::TIMESTAMP AS t FROM marketing_spend WHERE period <= $as_of::DATE"
        )
    if "nps_responses" in tables:
        parts.append(
            "SELECT min(responded_at) AS t FROM nps_responses WHERE responded_at <= $as_of"
        )
    if not parts:
        return None
    row = cur.execute(
        f"SELECT date_trunc('{unit}', min(t))::DATE FROM ({' UNION ALL '.join(parts)})",
        {"as_of": as_of},
    ).fetchone()
    return None if row is None else row[0]

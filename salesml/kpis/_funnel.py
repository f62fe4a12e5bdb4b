"""The stage funnel from stage_history (definitions: docs/kpis.md, "Funnel")."""

from __future__ import annotations

import re
from datetime import datetime

import duckdb

from salesml.kpis._queries import DEALS_VIEW, Funnel, GroupBy, grouping_sets

STAGES_TABLE = "_kpi_stage_entries"
# Stage names that mean "closed" rather than a step of the pipeline; left out of the funnel.
TERMINAL_STAGE = re.compile(r"^(closed[\s_-]*(won|lost)?|won|lost)$", re.IGNORECASE)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def funnel(
    cur: duckdb.DuckDBPyConnection, tables: set[str], by: GroupBy | None, as_of: datetime
) -> Funnel:
    """Stage order and per-stage advancement from stage_history (see docs/kpis.md).

    The first entry of each stage is pivoted into one column per stage (one row per deal),
    so ranking and advancement are column comparisons instead of window sorts.
    """
    if "stage_history" not in tables:
        return Funnel()
    names = cur.execute(
        "SELECT DISTINCT stage FROM stage_history WHERE changed_at <= $as_of", {"as_of": as_of}
    ).fetchall()
    kept = sorted(str(r[0]) for r in names if not TERMINAL_STAGE.match(str(r[0]).strip()))
    if not kept:
        return Funnel()
    firsts = ", ".join(
        f"min(changed_at) FILTER (WHERE stage = {_lit(s)}) AS t{i}" for i, s in enumerate(kept)
    )
    cur.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {STAGES_TABLE} AS
        SELECT k.g, k.st = 'won' AS won, s.* EXCLUDE (deal_id)
        FROM (
            SELECT deal_id, {firsts} FROM stage_history
            WHERE changed_at <= $as_of AND stage IN ({", ".join(map(_lit, kept))})
            GROUP BY deal_id
        ) s JOIN {DEALS_VIEW} k ON s.deal_id = k.deal_id
        """,
        {"as_of": as_of},
    )

    # Rank of stage i within a deal = 1 + stages entered before it (ties: by name), which is
    # row_number() OVER (PARTITION BY deal ORDER BY first entry, stage).
    def rank(i: int) -> str:
        terms = [
            f"COALESCE(t{j} {'<=' if j < i else '<'} t{i}, FALSE)::INT"
            for j in range(len(kept))
            if j != i
        ]
        return " + ".join(["1", *terms])

    stats = cur.execute(
        "SELECT "
        + ", ".join(
            f"quantile_cont({rank(i)}, 0.5) FILTER (WHERE t{i} IS NOT NULL), "
            f"avg({rank(i)}) FILTER (WHERE t{i} IS NOT NULL)"
            for i in range(len(kept))
        )
        + f" FROM {STAGES_TABLE}"
    ).fetchone()
    assert stats is not None
    ranked = [
        (stats[2 * i], stats[2 * i + 1], name, i)
        for i, name in enumerate(kept)
        if stats[2 * i] is not None
    ]
    ranked.sort()
    order = [name for _, _, name, _ in ranked]
    if len(order) < 2:
        return Funnel(stages=order)
    col = [f"t{i}" for _, _, _, i in ranked]
    # Advanced from stage a = won, or entered a later stage at or after entering a.
    counts = []
    for a in range(len(col) - 1):
        later = " OR ".join(f"{c} >= {col[a]}" for c in col[a + 1 :])
        counts.append(
            f"count({col[a]}), count(*) FILTER (WHERE {col[a]} IS NOT NULL AND (won OR {later}))"
        )
    sets = grouping_sets(by, "(g)", "()")
    rows = cur.execute(
        f"SELECT g, {', '.join(counts)} FROM {STAGES_TABLE} GROUP BY {sets}"
    ).fetchall()
    out: dict[tuple[str | None, str], tuple[int, int]] = {}
    for row in rows:
        for a in range(len(col) - 1):
            out[(row[0], order[a])] = (int(row[1 + 2 * a]), int(row[2 + 2 * a]))
    return Funnel(stages=order, counts=out)

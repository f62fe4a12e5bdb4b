"""The star schema ``salesml export`` writes for BI tools (Power BI, Tableau), declared as data.

Column names and types are a contract: docs/bi.md lists them (a test reads that page and checks
every written file against it), and dashboards built on them keep working across versions.
New columns may be added at the end; existing ones keep their name, type and meaning.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

BiType = Literal["string", "int32", "int64", "float64", "bool", "date", "timestamp"]
ARROW: dict[BiType, pa.DataType] = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}


@dataclass(frozen=True)
class BiColumn:
    name: str
    type: BiType
    meaning: str


def _c(name: str, kind: BiType, meaning: str) -> BiColumn:
    return BiColumn(name, kind, meaning)


DATE_KEY = "a `dim_date.date_key` (YYYYMMDD)"
BI_TABLES: dict[str, tuple[BiColumn, ...]] = {
    "dim_date": (
        _c("date_key", "int32", "YYYYMMDD, the key every `*_date_key` column points at"),
        _c("date", "date", "the calendar day"),
        _c("year", "int32", "calendar year"),
        _c("quarter", "int32", "1–4"),
        _c("month", "int32", "1–12"),
        _c("month_name", "string", "January … December"),
        _c("iso_week", "int32", "ISO 8601 week number"),
        _c("day_of_week", "int32", "1 = Monday … 7 = Sunday"),
        _c("month_start", "date", "first day of the month (for monthly axes)"),
        _c("quarter_start", "date", "first day of the quarter"),
    ),
    "dim_rep": (
        _c("rep_key", "string", "the rep's CRM user id (`reps.owner_id`)"),
        _c("rep_name", "string", "name; empty for placeholder reps; `Unassigned` for its row"),
        _c("team_key", "string", "the rep's team (`dim_team.team_key`; `Unassigned` without one)"),
        _c("manager", "string", "manager's name"),
        _c("region", "string", "region"),
        _c("hired_date_key", "int32", f"start date, {DATE_KEY}"),
    ),
    "dim_team": (
        _c(
            "team_key",
            "string",
            "team name as in the CRM; `Unassigned` holds deals and reps without a team",
        ),
        _c("reps", "int64", "reps in the team"),
    ),
    "dim_deal": (
        _c("deal_key", "string", "the deal's CRM id (`deals.deal_id`)"),
        _c("deal_name", "string", "name in the CRM"),
        _c("status", "string", "open, won or lost"),
        _c("stage", "string", "current (last) stage"),
        _c("amount", "float64", "deal value in `currency`; empty when unknown"),
        _c("currency", "string", "ISO 4217"),
        _c("rep_key", "string", "owner (`dim_rep.rep_key`; `Unassigned` without one)"),
        _c(
            "team_key",
            "string",
            "the deal's team, else its owner's (`dim_team.team_key`; `Unassigned` without one)",
        ),
        _c("region", "string", "the deal's region, else its owner's"),
        _c("account_id", "string", "customer account id"),
        _c("account_name", "string", "customer account name"),
        _c("industry", "string", "the account's industry"),
        _c("product", "string", "product"),
        _c("lead_source", "string", "channel the deal came from"),
        _c("deal_type", "string", "new business, expansion, renewal, …"),
        _c("created_at", "timestamp", "when the deal was created (UTC)"),
        _c("created_date_key", "int32", f"creation day, {DATE_KEY}"),
        _c("closed_date_key", "int32", f"day won or lost, {DATE_KEY}; empty while open"),
        _c("expected_close_date_key", "int32", f"expected close date, {DATE_KEY}"),
    ),
    "fact_deal_scores": (
        _c("deal_key", "string", "`dim_deal.deal_key`"),
        _c("rep_key", "string", "`dim_rep.rep_key` (as `dim_deal.rep_key`)"),
        _c("team_key", "string", "`dim_team.team_key` (as `dim_deal.team_key`)"),
        _c("as_of_date_key", "int32", f"the score run's as-of, {DATE_KEY}"),
        _c("run_id", "string", "the score run the row comes from"),
        _c("model_version", "string", "win model version"),
        _c("win_probability", "float64", "calibrated probability of winning, 0–1"),
        _c("score", "int64", "1–99 score shown beside the deal"),
        _c(
            "p_close_90d",
            "float64",
            "probability of closing won within 90 days; empty without a timing model",
        ),
        _c(
            "expected_close_date_key",
            "int32",
            f"expected close day if won, {DATE_KEY}; empty when unknown",
        ),
        _c(
            "expected_revenue",
            "float64",
            "win probability × amount (else list price); empty when unknown",
        ),
        _c("top_driver", "string", "the strongest reason for the score, as text"),
        _c("top_action", "string", "the first recommended action"),
    ),
    "fact_kpis": (
        _c("as_of_date_key", "int32", f"the moment the KPIs are computed at, {DATE_KEY}"),
        _c("grouping", "string", "overall, team or rep"),
        _c("group_key", "string", "team_key or rep_key; empty for overall"),
        _c("period", "string", "month or quarter"),
        _c("period_start_date_key", "int32", f"first day of the period, {DATE_KEY}"),
        _c("complete", "bool", "false for the period holding the as-of"),
        _c("revenue", "float64", "won revenue in the period; empty before any recorded close"),
        _c("deals_won", "int64", "deals won in the period; empty before any recorded close"),
        _c("deals_lost", "int64", "deals lost in the period; empty before any recorded close"),
        _c("win_rate", "float64", "won / closed, 0–1; empty with no closed deals"),
        _c("average_order_value", "float64", "revenue / deals won; empty with none"),
        _c("median_cycle_days", "float64", "median days from creation to win"),
        _c("new_customers", "int64", "accounts' first won deals in the period"),
        _c("marketing_spend", "float64", "spend in the period (overall only)"),
        _c("cac", "float64", "spend / new customers (overall only); empty when undefined"),
        _c("nps", "float64", "net promoter score −100…100; empty with no answers"),
        _c(
            "closes_recorded",
            "bool",
            "false for periods before the first deal closed anywhere in the export (their "
            "closed-deal figures are empty: unknown, not 0)",
        ),
        _c(
            "rep_key",
            "string",
            "`dim_rep.rep_key` of a `rep` row (`Unassigned`: deals without an owner); "
            "empty otherwise",
        ),
        _c(
            "team_key",
            "string",
            "`dim_team.team_key` of a `team` row (`Unassigned`: deals without a team); "
            "empty otherwise",
        ),
    ),
    "fact_forecast": (
        _c("as_of_date_key", "int32", f"the forecast's as-of, {DATE_KEY}"),
        _c("freq", "string", "week, month or quarter"),
        _c("period_start_date_key", "int32", f"first day of the period, {DATE_KEY}"),
        _c("segment_by", "string", "total, team, region or product"),
        _c("segment", "string", "the segment (`total` for the company)"),
        _c("forecast", "float64", "won revenue expected in the period"),
        _c("lower_80", "float64", "80 % range, low end"),
        _c("upper_80", "float64", "80 % range, high end"),
        _c("lower_95", "float64", "95 % range, low end"),
        _c("upper_95", "float64", "95 % range, high end"),
        _c("forecast_version", "string", "revenue forecast model version"),
    ),
}
# What each target writes: its fact (if any) and the dimensions it refers to.
TARGETS: dict[str, tuple[str, ...]] = {
    "deals": ("dim_deal", "dim_rep", "dim_team", "dim_date"),
    "scores": ("fact_deal_scores", "dim_deal", "dim_rep", "dim_team", "dim_date"),
    "kpis": ("fact_kpis", "dim_rep", "dim_team", "dim_date"),
    "forecast": ("fact_forecast", "dim_date"),
}


def arrow_schema(table: str) -> pa.Schema:
    """The Arrow schema of ``table`` (column order as declared)."""
    return pa.schema([pa.field(c.name, ARROW[c.type]) for c in BI_TABLES[table]])


def render_markdown_tables() -> str:
    """The schema section of docs/bi.md, generated from the declarations above."""
    lines: list[str] = []
    for name, columns in BI_TABLES.items():
        lines += [f"### {name}", "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| `{c.name}` | {c.type} | {c.meaning} |" for c in columns]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(render_markdown_tables())

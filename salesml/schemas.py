"""The canonical CRM data model: every importer produces exactly these tables.

Each table is declared as data (``TableSchema``), so the validator, the warehouse DDL, the
documentation and the synthetic generator all read the same definition. Column kinds are the
few types a CRM export needs; constraints are checked row by row on import (see
``salesml.importers.validate``) and every failure becomes a reject with its reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

ColumnKind = Literal["str", "timestamp", "date", "float", "int", "bool"]

DEAL_STATUSES = ("open", "won", "lost")
ATTRIBUTE_PREFIX = "attr_"

DUCKDB_TYPES: dict[ColumnKind, str] = {
    "str": "VARCHAR",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
    "float": "DOUBLE",
    "int": "BIGINT",
    "bool": "BOOLEAN",
}


@dataclass(frozen=True)
class Column:
    """One canonical column.

    ``required`` means the column must be present in the source (and, with ``nullable=False``,
    filled on every row); optional columns may be missing from an export altogether.
    """

    name: str
    kind: ColumnKind
    description: str
    required: bool = False
    nullable: bool = True
    minimum: float | None = None
    choices: tuple[str, ...] | None = None
    example: object = None

    @property
    def duckdb_type(self) -> str:
        return DUCKDB_TYPES[self.kind]


@dataclass(frozen=True)
class TableSchema:
    """A canonical table: its key, its columns and the rules that tie its rows together."""

    name: str
    description: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    # Key columns that may be derived from the row's content when the source has no id
    # (activities and NPS responses often come without one).
    derived_key: bool = False
    # Extra source columns are kept as custom attributes (``attr_<name>``) on this table.
    allows_attributes: bool = False
    # Columns that must name a row of another table: (column, table, table_column).
    references: tuple[tuple[str, str, str], ...] = field(default_factory=tuple)

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


DEALS = TableSchema(
    name="deals",
    description="One row per opportunity, open or closed. Extra columns become custom "
    "attributes (attr_<name>) usable as model features.",
    key=("deal_id",),
    allows_attributes=True,
    columns=(
        Column(
            "deal_id",
            "str",
            "CRM id of the deal",
            required=True,
            nullable=False,
            example="D0000042",
        ),
        Column("name", "str", "Deal name as shown in the CRM", example="Acme – 40 seats"),
        Column(
            "created_at",
            "timestamp",
            "When the deal was created (engaged)",
            required=True,
            nullable=False,
            example="2025-03-04 09:30:00",
        ),
        Column(
            "status",
            "str",
            "open, won or lost",
            required=True,
            nullable=False,
            choices=DEAL_STATUSES,
            example="won",
        ),
        Column(
            "closed_at",
            "timestamp",
            "When the deal was won or lost; required when closed, empty while open",
            example="2025-05-20 16:00:00",
        ),
        Column(
            "amount",
            "float",
            "Deal value in `currency`; empty when unknown (open deals "
            "often, lost deals in some CRMs)",
            minimum=0.0,
            example=24000.0,
        ),
        Column("currency", "str", "ISO 4217 code", example="USD"),
        Column("owner_id", "str", "Rep who owns the deal (reps.owner_id)", example="R017"),
        Column(
            "stage",
            "str",
            "Current pipeline stage (for closed deals: the last stage)",
            example="Negotiation",
        ),
        Column(
            "expected_close_date",
            "date",
            "Close date the rep currently expects",
            example="2025-05-31",
        ),
        Column("account_id", "str", "Customer account (accounts.account_id)", example="A0312"),
        Column("product", "str", "Product sold (products.product)", example="Platform Pro"),
        Column("lead_source", "str", "Channel the deal came from", example="webinar"),
        Column("deal_type", "str", "new business, expansion, renewal, …", example="new_business"),
        Column("team", "str", "Sales team (defaults to the owner's team)", example="Enterprise"),
        Column("region", "str", "Sales region (defaults to the owner's region)", example="EMEA"),
    ),
)

STAGE_HISTORY = TableSchema(
    name="stage_history",
    description="Every stage change of a deal, with the amount and expected close date the "
    "deal had at that change (Salesforce OpportunityHistory, HubSpot 'Date entered <stage>').",
    key=("deal_id", "changed_at", "stage"),
    references=(("deal_id", "deals", "deal_id"),),
    columns=(
        Column(
            "deal_id", "str", "Deal that changed", required=True, nullable=False, example="D0000042"
        ),
        Column("stage", "str", "Stage entered", required=True, nullable=False, example="Proposal"),
        Column(
            "changed_at",
            "timestamp",
            "When the stage was entered",
            required=True,
            nullable=False,
            example="2025-04-02 11:00:00",
        ),
        Column("amount", "float", "Deal amount at that change", minimum=0.0, example=26000.0),
        Column(
            "expected_close_date",
            "date",
            "Expected close date at that change",
            example="2025-05-15",
        ),
    ),
)

ACTIVITIES = TableSchema(
    name="activities",
    description="Calls, emails, meetings and other touches logged against a deal.",
    key=("activity_id",),
    derived_key=True,
    references=(("deal_id", "deals", "deal_id"),),
    columns=(
        Column(
            "activity_id",
            "str",
            "CRM id; derived from the row's content when missing",
            example="T00000917",
        ),
        Column(
            "deal_id",
            "str",
            "Deal the activity belongs to",
            required=True,
            nullable=False,
            example="D0000042",
        ),
        Column(
            "occurred_at",
            "timestamp",
            "When it happened",
            required=True,
            nullable=False,
            example="2025-04-10 14:00:00",
        ),
        Column(
            "type",
            "str",
            "call, email, meeting, demo, …",
            required=True,
            nullable=False,
            example="meeting",
        ),
        Column("owner_id", "str", "Rep who logged it", example="R017"),
    ),
)

REPS = TableSchema(
    name="reps",
    description="Sales reps (deal owners). A deal whose owner is missing here gets a "
    "placeholder rep so it is never lost.",
    key=("owner_id",),
    columns=(
        Column("owner_id", "str", "CRM user id", required=True, nullable=False, example="R017"),
        Column("name", "str", "Full name", example="Dana Whitfield"),
        Column("team", "str", "Team", example="Enterprise"),
        Column("manager", "str", "Manager's name", example="Lee Park"),
        Column("region", "str", "Region", example="EMEA"),
        Column("hired_at", "date", "Start date (tenure)", example="2022-09-01"),
        Column(
            "is_placeholder", "bool", "Created by the importer for an unknown owner", example=False
        ),
    ),
)

ACCOUNTS = TableSchema(
    name="accounts",
    description="Customer accounts.",
    key=("account_id",),
    columns=(
        Column("account_id", "str", "CRM id", required=True, nullable=False, example="A0312"),
        Column("name", "str", "Company name", example="Northwind Traders"),
        Column("industry", "str", "Industry / sector", example="retail"),
        Column("employees", "int", "Head count", minimum=0, example=1250),
        Column("annual_revenue", "float", "Annual revenue", minimum=0.0, example=3.2e8),
        Column("country", "str", "Country", example="Germany"),
    ),
)

PRODUCTS = TableSchema(
    name="products",
    description="Product catalogue with list prices (the natural estimate of an open deal's "
    "value when it has no amount).",
    key=("product",),
    columns=(
        Column(
            "product",
            "str",
            "Product name as used on deals",
            required=True,
            nullable=False,
            example="Platform Pro",
        ),
        Column("family", "str", "Product family / series", example="Platform"),
        Column("list_price", "float", "List price per deal", minimum=0.0, example=24000.0),
    ),
)

LEADS = TableSchema(
    name="leads",
    description="Top of the funnel: leads by channel, converted into deals or disqualified.",
    key=("lead_id",),
    references=(("deal_id", "deals", "deal_id"),),
    columns=(
        Column("lead_id", "str", "CRM id", required=True, nullable=False, example="L0009911"),
        Column(
            "created_at",
            "timestamp",
            "When the lead arrived",
            required=True,
            nullable=False,
            example="2025-02-20 08:12:00",
        ),
        Column("source", "str", "Channel (web, referral, event, …)", example="webinar"),
        Column("owner_id", "str", "Rep or SDR who worked it", example="R017"),
        Column("converted_at", "timestamp", "When it became a deal", example="2025-03-04"),
        Column("deal_id", "str", "Deal it became", example="D0000042"),
        Column("disqualified_at", "timestamp", "When it was disqualified", example=None),
    ),
)

MARKETING_SPEND = TableSchema(
    name="marketing_spend",
    description="Marketing spend by period and channel (for customer acquisition cost).",
    key=("period", "channel"),
    columns=(
        Column(
            "period",
            "date",
            "First day of the period the spend belongs to",
            required=True,
            nullable=False,
            example="2025-03-01",
        ),
        Column(
            "channel",
            "str",
            "Channel, matching leads.source / deals.lead_source",
            required=True,
            nullable=False,
            example="webinar",
        ),
        Column(
            "amount",
            "float",
            "Spend in the period",
            required=True,
            nullable=False,
            minimum=0.0,
            example=12500.0,
        ),
    ),
)

WEB_SESSIONS = TableSchema(
    name="web_sessions",
    description="Web traffic by day and channel from web analytics (Google Analytics 4: "
    "sessions and key events by session source / medium), for conversion and CAC by channel.",
    key=("period", "channel"),
    columns=(
        Column(
            "period",
            "date",
            "Day (or first day of the range) the sessions belong to",
            required=True,
            nullable=False,
            example="2025-03-01",
        ),
        Column(
            "channel",
            "str",
            "Channel, matching deals.lead_source and marketing_spend.channel",
            required=True,
            nullable=False,
            example="google / cpc",
        ),
        Column(
            "sessions",
            "int",
            "Sessions in the period",
            required=True,
            nullable=False,
            minimum=0,
            example=1250,
        ),
        Column(
            "key_events",
            "float",
            "Key events (conversions) in the period, fractional when the analytics tool "
            "attributes them in parts (GA4: 0.5); empty when not exported",
            minimum=0,
            example=31,
        ),
    ),
)

NPS_RESPONSES = TableSchema(
    name="nps_responses",
    description="Net Promoter Score survey answers (0–10) by account.",
    key=("response_id",),
    derived_key=True,
    columns=(
        Column("response_id", "str", "Survey response id; derived when missing", example="N000311"),
        Column(
            "account_id",
            "str",
            "Account that answered",
            required=True,
            nullable=False,
            example="A0312",
        ),
        Column(
            "responded_at",
            "timestamp",
            "When",
            required=True,
            nullable=False,
            example="2025-06-01 10:00:00",
        ),
        Column("score", "int", "0–10", required=True, nullable=False, minimum=0, example=9),
    ),
)

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (
        DEALS,
        STAGE_HISTORY,
        ACTIVITIES,
        REPS,
        ACCOUNTS,
        PRODUCTS,
        LEADS,
        MARKETING_SPEND,
        WEB_SESSIONS,
        NPS_RESPONSES,
    )
}

# Import order: parents before the tables that reference them.
IMPORT_ORDER: tuple[str, ...] = (
    "reps",
    "accounts",
    "products",
    "deals",
    "stage_history",
    "activities",
    "leads",
    "marketing_spend",
    "web_sessions",
    "nps_responses",
)

NPS_MAX_SCORE = 10


def render_data_model_markdown() -> str:
    """``docs/data-model.md``, generated from the declarations above (a test keeps it current)."""
    lines = [
        "# The canonical data model",
        "",
        "Every importer produces exactly these tables (generated from `salesml/schemas.py`; "
        "do not edit by hand — run `python -m salesml.schemas > docs/data-model.md`).",
        "",
        "Conventions: timestamps are UTC without a zone; `date` columns are calendar dates; "
        "money is a plain number in the row's currency; ids are text. **Required** columns "
        "must be present in an export; columns marked *not null* must be filled on every row. "
        "Every input row is either imported or written to the rejects file with its file, "
        "line, field and reason. Only `deals` is required; every other table is optional.",
        "",
    ]
    for table in TABLES.values():
        lines += [f"## {table.name}", "", table.description, ""]
        key = ", ".join(table.key)
        lines.append(
            f"Key: `{key}`"
            + (" (derived from the row when missing)." if table.derived_key else ".")
        )
        if table.references:
            refs = "; ".join(f"`{c}` → `{t}.{tc}`" for c, t, tc in table.references)
            lines.append(f"References: {refs} (rows pointing nowhere are rejected).")
        if table.allows_attributes:
            lines.append(
                "Extra columns are kept as custom attributes `attr_<snake_case_name>`, numeric "
                "or categorical (inferred, or declared in a mapping)."
            )
        lines += ["", "| column | type | rules | meaning |", "|---|---|---|---|"]
        for c in table.columns:
            rules = []
            if c.required:
                rules.append("required")
            if not c.nullable:
                rules.append("not null")
            if c.minimum is not None:
                rules.append(f"≥ {c.minimum:g}")
            if c.choices:
                rules.append("one of " + ", ".join(c.choices))
            lines.append(f"| `{c.name}` | {c.kind} | {'; '.join(rules)} | {c.description} |")
        example = " | ".join("" if c.example is None else str(c.example) for c in table.columns)
        lines += [
            "",
            "Example row:",
            "",
            "| " + " | ".join(table.column_names) + " |",
            "|" + "---|" * len(table.columns),
            f"| {example} |",
            "",
        ]
    lines += [
        "## Rules across tables",
        "",
        "- A closed deal (won / lost) has `closed_at`, an open one does not; `closed_at` is "
        "never before `created_at`.",
        "- A deal whose `owner_id` is not in `reps` is kept; a placeholder rep "
        "(`is_placeholder = true`) is created and the import prints a warning.",
        "- Product names on deals are reconciled with `products` when they differ only in "
        'case, spaces or punctuation ("GTXPro" → "GTX Pro").',
        "- Two rows with the same key and different content are both rejected; exact "
        "duplicates count as unchanged.",
        "- Re-importing the same export changes nothing (upsert by key).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":  # pragma: no cover
    print(render_data_model_markdown(), end="")

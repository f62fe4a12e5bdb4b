"""The Maven Analytics "CRM Sales Opportunities" export (sales_pipeline, accounts, products,
sales_teams).

What the export means, and how it is read:

- ``deal_stage`` Won / Lost are closed deals; Engaging / Prospecting are open (and stay the
  deal's stage). Closed deals carry no stage of their own.
- ``close_value`` is the amount of a Won deal. Lost deals carry 0, which is not an amount, and
  open deals carry nothing: both are imported without an amount.
- ``engage_date`` is when the deal was created; Prospecting rows have none, so they are dated at
  the export date (the latest date in the file) and a warning says so.
- Product names are reconciled against products.csv by the pipeline ("GTXPro" → "GTX Pro");
  the misspelled sector "technolgy" is read as "technology".
- The rep's manager leads the team; ``regional_office`` is the region.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from salesml.errors import WrongFileError
from salesml.importers.base import (
    ImportBatch,
    SourceTable,
    find_table_file,
    read_tabular,
    require_columns,
    select_renamed,
    with_source_rows,
)

PIPELINE_COLUMNS = [
    "opportunity_id",
    "sales_agent",
    "product",
    "account",
    "deal_stage",
    "engage_date",
    "close_date",
    "close_value",
]
STATUS = {"won": "won", "lost": "lost", "engaging": "open", "prospecting": "open"}
SECTOR_FIXES = {"technolgy": "technology"}
HINT = "Maven's export has these columns; is this the right folder?"


def read_maven(path: Path) -> ImportBatch:
    """Read a Maven CRM export folder into canonical tables."""
    folder = path if path.is_dir() else path.parent
    pipeline_file = find_table_file(folder, "sales_pipeline") if folder.is_dir() else None
    if pipeline_file is None:
        raise WrongFileError(
            str(path),
            "a Maven CRM export",
            "expected a folder with sales_pipeline.csv (and optionally accounts.csv, "
            "products.csv, sales_teams.csv)",
        )
    pipeline = with_source_rows(read_tabular(pipeline_file))
    require_columns(str(pipeline_file), pipeline, PIPELINE_COLUMNS, HINT)
    warnings: list[str] = []
    deals = _deals(pipeline, warnings)
    sources: list[SourceTable] = []
    teams = _team_lookup(folder, sources, warnings)
    if teams is not None:
        idx = pc.index_in(deals.column("owner_id"), teams.column("owner_id"))
        for col in ("team", "region"):
            deals = deals.append_column(col, pc.take(teams.column(col), idx))
    sources.append(
        SourceTable(
            "deals",
            deals,
            str(pipeline_file),
            hints={"status": "Maven stages are Won, Lost, Engaging and Prospecting"},
        )
    )

    accounts_file = find_table_file(folder, "accounts")
    if accounts_file is not None:
        accounts = with_source_rows(read_tabular(accounts_file))
        require_columns(str(accounts_file), accounts, ["account"], HINT)
        acc = select_renamed(
            accounts,
            {
                "account": "account_id",
                "sector": "industry",
                "employees": "employees",
                "office_location": "country",
            },
        )
        acc = acc.append_column("name", accounts.column("account"))
        if "sector" in accounts.column_names:
            fixed = pc.utf8_lower(pc.utf8_trim_whitespace(accounts.column("sector")))
            for wrong, right in SECTOR_FIXES.items():
                fixed = pc.replace_substring_regex(fixed, f"^{wrong}$", right)
            acc = acc.set_column(acc.column_names.index("industry"), "industry", fixed)
        if "revenue" in accounts.column_names:
            # Maven states annual revenue in millions.
            millions = pc.cast(accounts.column("revenue"), pa.float64(), safe=False)
            acc = acc.append_column("annual_revenue", pc.multiply(millions, 1e6))
        ignored = [c for c in ("year_established", "subsidiary_of") if c in accounts.column_names]
        if ignored:
            warnings.append(
                f"accounts.csv: ignored column(s) {', '.join(ignored)} "
                "(accounts have no custom attributes)"
            )
        sources.append(SourceTable("accounts", acc, str(accounts_file)))

    products_file = find_table_file(folder, "products")
    if products_file is not None:
        products = with_source_rows(read_tabular(products_file))
        require_columns(str(products_file), products, ["product"], HINT)
        prod = select_renamed(
            products,
            {
                "product": "product",
                "series": "family",
                "sales_price": "list_price",
            },
        )
        sources.append(SourceTable("products", prod, str(products_file)))
    return ImportBatch("maven", str(folder), sources, warnings)


def _deals(pipeline: pa.Table, warnings: list[str]) -> pa.Table:
    stage_raw = pc.utf8_trim_whitespace(pipeline.column("deal_stage"))
    stage_key = pc.utf8_lower(stage_raw)
    status = pc.fill_null(
        pc.take(pa.array(list(STATUS.values())), pc.index_in(stage_key, pa.array(list(STATUS)))),
        stage_raw,  # unknown stages pass through and are rejected with their value
    )
    is_open = pc.equal(status, "open")
    is_won = pc.equal(status, "won")
    amount = pc.if_else(is_won, pipeline.column("close_value"), pa.scalar(None, pa.string()))
    created = pipeline.column("engage_date")
    missing_created = pc.and_(pc.is_null(created), is_open)
    n_missing = pc.sum(pc.cast(missing_created, pa.int64())).as_py() or 0
    if n_missing:
        dates = pa.concat_arrays(
            [
                pc.drop_null(pipeline.column("engage_date")).combine_chunks(),
                pc.drop_null(pipeline.column("close_date")).combine_chunks(),
            ]
        )
        export_date = pc.max(dates).as_py()
        created = pc.if_else(missing_created, pa.scalar(export_date), created)
        warnings.append(
            f"{n_missing} open opportunities have no engage_date; created_at set to the "
            f"export date {export_date} (the latest date in the file)"
        )
    deals = pa.table(
        {
            "deal_id": pipeline.column("opportunity_id"),
            "owner_id": pipeline.column("sales_agent"),
            "product": pipeline.column("product"),
            "account_id": pipeline.column("account"),
            "status": status,
            "stage": pc.if_else(is_open, stage_raw, pa.scalar(None, pa.string())),
            "created_at": created,
            "closed_at": pipeline.column("close_date"),
            "amount": amount,
            "currency": pa.array(["USD"] * pipeline.num_rows, pa.string()),
            "_source_row": pipeline.column("_source_row"),
        }
    )
    return deals


def _team_lookup(folder: Path, sources: list[SourceTable], warnings: list[str]) -> pa.Table | None:
    teams_file = find_table_file(folder, "sales_teams")
    if teams_file is None:
        warnings.append("no sales_teams.csv: reps are created as placeholders from deal owners")
        return None
    teams = with_source_rows(read_tabular(teams_file))
    require_columns(str(teams_file), teams, ["sales_agent"], HINT)
    reps = select_renamed(
        teams,
        {
            "sales_agent": "owner_id",
            "manager": "manager",
            "regional_office": "region",
        },
    )
    reps = reps.append_column("name", teams.column("sales_agent"))
    if "manager" in teams.column_names:
        reps = reps.append_column("team", teams.column("manager"))
    else:
        reps = reps.append_column("team", pa.nulls(teams.num_rows, pa.string()))
    if "region" not in reps.column_names:
        reps = reps.append_column("region", pa.nulls(teams.num_rows, pa.string()))
    sources.append(SourceTable("reps", reps, str(teams_file)))
    return reps

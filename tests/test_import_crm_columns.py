"""CRM exports' own columns read as the data model's fields: Monday's Sales CRM template
(``Accounts``, ``Region``) and Zoho's account id (``Account Name.id``)."""

from __future__ import annotations

from pathlib import Path

from salesml.importers import read_export

MONDAY = (
    "Deals\n"
    "Active Deals\n"
    "Name,Owner,Deal Stage,Deal Value,Accounts,Expected Close Date,Item ID,Creation log,Region\n"
    'Northwind expansion,Dana Kim,Negotiation,"$18,000",Northwind,2027-01-15,1834567001,'
    '"Dana Kim Oct 2, 2026 9:14 AM",EMEA\n'
)
ZOHO = (
    "Record Id,Deal Owner,Deal Name,Amount,Closing Date,Account Name,Account Name.id,Stage,"
    "Created Time\n"
    "z1,Ann,Pilot,100,2026-12-28,Acme (Sample),zcrm_77,Qualification,2026-09-14 14:22:00\n"
)


def test_mondays_accounts_and_region_columns_are_the_account_and_region(tmp_path: Path) -> None:
    file = tmp_path / "Deals.csv"
    file.write_text(MONDAY)
    deals = read_export(file, "monday").tables[0].data
    assert deals.column("account_id").to_pylist() == ["Northwind"]
    assert deals.column("region").to_pylist() == ["EMEA"]
    assert not [c for c in deals.column_names if c.startswith("attr_")]


def test_zohos_account_id_is_the_account_key(tmp_path: Path) -> None:
    file = tmp_path / "Deals_2026.csv"
    file.write_text(ZOHO)
    batch = read_export(file, "zoho")
    deals = batch.tables[0].data
    assert deals.column("account_id").to_pylist() == ["zcrm_77"]
    assert not any("Account Name.id" in w for w in batch.warnings)
    assert "attr_account_name" not in deals.column_names

"""An export may hold other tables than deals: leads, activities or spend add to the deals
imported before; into an empty warehouse they are refused with what to import first."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesml.errors import ImportFailedError
from salesml.importers import read_export, run_import
from salesml.warehouse import connect


def _write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_leads_alone_add_to_the_deals_already_imported(tmp_path: Path) -> None:
    home = tmp_path / "home"
    deals = _write(
        tmp_path / "deals",
        "deals.csv",
        "deal_id,created_at,status,closed_at,amount,owner_id\n"
        "D1,2025-01-05,won,2025-02-10,1000,R1\n",
    )
    run_import(read_export(deals, "canonical"), home / "w.duckdb", home / "rejects")
    leads = _write(
        tmp_path / "leads",
        "leads.csv",
        "lead_id,created_at,source,converted_at,deal_id\n"
        "L1,2025-01-01,web,2025-01-05,D1\n"
        "L2,2025-01-02,web,,\n"
        "L3,2025-01-02,web,2025-01-09,D9\n",  # no such deal: rejected with its reason
    )
    summary = run_import(read_export(leads, "canonical"), home / "w.duckdb", home / "rejects")
    assert summary.tables["leads"].imported == 2
    assert summary.tables["leads"].rejected == 1
    con = connect(home / "w.duckdb", read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM deals").fetchall() == [(1,)]
    finally:
        con.close()


def test_leads_into_an_empty_warehouse_say_what_to_import_first(tmp_path: Path) -> None:
    leads = _write(
        tmp_path / "leads", "leads.csv", "lead_id,created_at,source\nL1,2025-01-01,web\n"
    )
    with pytest.raises(ImportFailedError, match="import the deals first"):
        run_import(read_export(leads, "canonical"), tmp_path / "w.duckdb", tmp_path / "rejects")


def test_a_file_with_only_a_header_is_reported_not_silently_empty(tmp_path: Path) -> None:
    export = _write(
        tmp_path / "export",
        "deals.csv",
        "deal_id,created_at,status,closed_at,amount,owner_id\nD1,2025-01-05,open,,10,R1\n",
    )
    _write(export, "activities.csv", "deal_id,occurred_at,type,owner_id\n")
    summary = run_import(read_export(export, "canonical"), tmp_path / "w.duckdb", tmp_path / "r")
    assert any("activities.csv has no rows" in w for w in summary.warnings), summary.warnings

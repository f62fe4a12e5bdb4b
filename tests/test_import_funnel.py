"""A lead funnel exported as two files imports through one mapping that links them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app
from salesml.errors import MappingError
from salesml.importers import read_export, run_import
from salesml.importers.mapping import load_mapping
from salesml.warehouse import connect

FUNNEL = Path(__file__).parent / "fixtures" / "mapping" / "funnel"


def test_leads_are_linked_to_the_deals_that_name_them(tmp_path: Path) -> None:
    batch = read_export(FUNNEL, "mapping", FUNNEL / "funnel.yaml")
    summary = run_import(batch, tmp_path / "w.duckdb", tmp_path / "rejects")
    assert summary.tables["deals"].imported == 4
    assert summary.tables["leads"].imported == 10 and summary.tables["leads"].rejected == 0
    con = connect(tmp_path / "w.duckdb", read_only=True)
    try:
        linked = dict(
            con.execute("SELECT lead_id, deal_id FROM leads WHERE deal_id IS NOT NULL").fetchall()
        )
        converted = con.execute(
            "SELECT CAST(converted_at AS VARCHAR) FROM leads WHERE lead_id = 'a1b2c3'"
        ).fetchall()
    finally:
        con.close()
    assert linked == {"a1b2c3": "s-001", "c3d4e5": "s-002", "e5f6a7": "s-003", "b8c9d0": "s-004"}
    assert converted == [("2018-02-20 10:11:00",)]


def test_lead_to_customer_conversion_by_source_comes_out_of_the_kpis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    runner = CliRunner()
    imported = runner.invoke(
        app,
        ["import", str(FUNNEL), "--format", "mapping", "--mapping", str(FUNNEL / "funnel.yaml")],
    )
    assert imported.exit_code == 0, imported.output
    result = runner.invoke(app, ["kpis", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["source"]: r for r in json.loads(result.stdout)["overall"]["lead_conversion"]}
    assert rows["organic_search"]["leads"] == 3 and rows["organic_search"]["customers"] == 1
    assert rows["social"]["lead_to_customer_rate"] == 1.0
    assert rows["paid_search"]["customers"] == 0
    table = runner.invoke(app, ["kpis"], terminal_width=200)
    assert "lead-to-customer conversion by source" in table.stdout


def test_a_link_on_another_table_is_refused(tmp_path: Path) -> None:
    mapping = tmp_path / "bad.yaml"
    mapping.write_text(
        "version: 1\ntables:\n  deals:\n    columns: {deal_id: id, created_at: c, status: s}\n"
        "    link: {by: id}\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError, match="only leads are linked to deals"):
        load_mapping(mapping)

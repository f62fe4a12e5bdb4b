"""The Maven CRM export imports without loss and matches the facts in shared/data/README.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from salesml.importers import ImportSummary, read_export, run_import
from salesml.warehouse import connect


@pytest.fixture(scope="module")
def imported(
    tmp_path_factory: pytest.TempPathFactory, maven_dir: Path
) -> tuple[Path, ImportSummary]:
    home = tmp_path_factory.mktemp("maven")
    summary = run_import(read_export(maven_dir, "maven"), home / "w.duckdb", home / "rejects")
    return home / "w.duckdb", summary


def test_every_row_is_imported(imported: tuple[Path, ImportSummary]) -> None:
    _, summary = imported
    assert summary.tables["deals"].input == 8800
    assert summary.tables["deals"].imported == 8800
    assert summary.tables["accounts"].imported == 85
    assert summary.tables["products"].imported == 7
    assert summary.tables["reps"].imported == 35
    assert summary.rejects_file is None


def test_status_counts_and_amounts_match_the_facts(imported: tuple[Path, ImportSummary]) -> None:
    con = connect(imported[0])
    counts = dict(con.execute("SELECT status, count(*) FROM deals GROUP BY 1").fetchall())
    assert counts == {"won": 4238, "lost": 2473, "open": 2089}
    stages = dict(
        con.execute("SELECT stage, count(*) FROM deals WHERE status = 'open' GROUP BY 1").fetchall()
    )
    assert stages == {"Engaging": 1589, "Prospecting": 500}
    revenue, aov = con.execute(
        "SELECT sum(amount), avg(amount) FROM deals WHERE status = 'won'"
    ).fetchone() or (None, None)
    assert revenue == 10_005_534
    assert round(aov, 2) == 2360.91
    # Lost close_value 0 is not an amount; open deals have none.
    assert con.execute("SELECT count(amount) FROM deals WHERE status <> 'won'").fetchone() == (0,)


def test_median_won_cycle_is_57_days(imported: tuple[Path, ImportSummary]) -> None:
    con = connect(imported[0])
    median = con.execute(
        "SELECT median(date_diff('day', created_at::DATE, closed_at::DATE)) FROM deals "
        "WHERE status = 'won'"
    ).fetchone()
    assert median == (57,)


def test_dirt_is_cleaned(imported: tuple[Path, ImportSummary]) -> None:
    con = connect(imported[0])
    products = {r[0] for r in con.execute("SELECT DISTINCT product FROM deals").fetchall()}
    assert "GTXPro" not in products
    assert "GTX Pro" in products
    assert products <= {r[0] for r in con.execute("SELECT product FROM products").fetchall()}
    industries = {r[0] for r in con.execute("SELECT industry FROM accounts").fetchall()}
    assert "technology" in industries
    assert "technolgy" not in industries
    assert con.execute("SELECT count(*) FROM deals WHERE account_id IS NULL").fetchone() == (1425,)
    assert con.execute("SELECT count(*) FROM deals WHERE team IS NULL").fetchone() == (0,)


def test_prospecting_deals_without_engage_date_are_kept_and_flagged(
    imported: tuple[Path, ImportSummary],
) -> None:
    _, summary = imported
    assert any("500 open opportunities have no engage_date" in w for w in summary.warnings)
    assert any("'GTXPro'" in w for w in summary.warnings)


def test_reimport_is_a_no_op(imported: tuple[Path, ImportSummary], maven_dir: Path) -> None:
    path, _ = imported
    again = run_import(read_export(maven_dir, "maven"), path, path.parent / "rejects")
    for name, c in again.tables.items():
        assert c.unchanged == c.input, name


def test_kpi_engine_on_the_imported_export_matches_the_facts(
    imported: tuple[Path, ImportSummary],
) -> None:
    from salesml.kpis import compute_kpis

    con = connect(imported[0])
    overall = compute_kpis(con, by="team", period="quarter")["overall"]
    assert overall["deals_won"] == 4238
    assert overall["deals_lost"] == 2473
    assert overall["win_rate"] == 0.6315
    assert overall["revenue"] == 10_005_534
    assert overall["average_order_value"] == 2360.91
    assert overall["median_cycle_days"] == 57
    # Open deals carry no amount: the pipeline is valued at list price, and says so.
    assert overall["open_pipeline_deals"] == 2089
    assert overall["open_pipeline"] == overall["open_pipeline_estimated"] > 0

"""The HubSpot importer: a deals export with UI labels or internal property names."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from salesml.cli import app
from salesml.errors import ImportFailedError, MissingColumnsError, WrongFileError
from salesml.importers.hubspot import read_hubspot
from salesml.warehouse import connect
from tests.importing import Imported, import_twice

FIXTURES = Path(__file__).parent / "fixtures" / "hubspot"
UI_EXPORT = FIXTURES / "ui"
UI_FILE = UI_EXPORT / "hubspot-crm-exports-all-deals-2024-06-03.csv"
API_FILE = FIXTURES / "api_deals.csv"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from import_twice(lambda: read_hubspot(UI_EXPORT), tmp_path_factory.mktemp("hubspot"))


@dataclass
class CliImport:
    summary: dict[str, Any]
    con: duckdb.DuckDBPyConnection
    home: Path

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliImport]:
    """The API-style export, imported through the command line."""
    home = tmp_path_factory.mktemp("hubspot_api")
    result = CliRunner().invoke(
        app,
        ["import", str(API_FILE), "--format", "hubspot", "--json"],
        env={"SALESML_HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    con = connect(home / "warehouse.duckdb")
    yield CliImport(json.loads(result.stdout), con, home)
    con.close()


def test_every_row_is_counted_once(imported: Imported) -> None:
    for summary in (imported.first, imported.second):
        for name, c in summary.tables.items():
            assert c.input == c.imported + c.updated + c.unchanged + c.rejected, name
    deals = imported.first.tables["deals"]
    assert (deals.input, deals.imported, deals.unchanged, deals.rejected) == (33, 27, 1, 5)
    assert set(imported.first.tables) == {"deals", "stage_history", "reps"}


def test_reimporting_the_same_export_changes_nothing(imported: Imported) -> None:
    for name, c in imported.second.tables.items():
        assert (c.imported, c.updated) == (0, 0), name
        assert c.unchanged + c.rejected == c.input, name


def test_status_follows_the_deal_stage(imported: Imported) -> None:
    status = dict(imported.query("SELECT status, count(*) FROM deals GROUP BY 1"))
    assert status == {"won": 10, "lost": 5, "open": 12}


def test_close_date_is_closed_at_when_closed_and_expected_close_when_open(
    imported: Imported,
) -> None:
    won = imported.query(
        "SELECT status, created_at, closed_at, expected_close_date, stage, amount "
        "FROM deals WHERE deal_id = '14200000104'"
    )
    assert won == [
        (
            "won",
            datetime(2023, 10, 2, 13, 42),
            datetime(2023, 10, 5, 17, 42),
            None,
            "Closed Won",
            38000.0,
        )
    ]
    open_deal = imported.query(
        "SELECT status, closed_at, expected_close_date FROM deals WHERE deal_id = '14200000103'"
    )
    assert open_deal == [("open", None, date(2024, 8, 10))]


def test_labels_are_recoded(imported: Imported) -> None:
    rows = imported.query(
        "SELECT deal_type, lead_source, account_id, currency, owner_id FROM deals "
        "WHERE deal_id IN ('14200000103', '14200000106') ORDER BY deal_id"
    )
    assert rows == [
        ("new_business", "Paid Search", "8812004", "USD", "Tom Becker"),
        ("existing_business", "Offline Sources", "8812002", "USD", "Maria Gonzalez"),
    ]


def test_date_entered_columns_become_stage_history(imported: Imported) -> None:
    rows = imported.query(
        "SELECT stage, changed_at FROM stage_history WHERE deal_id = '14200000103' "
        "ORDER BY changed_at"
    )
    assert [r[0] for r in rows] == [
        "Appointment Scheduled",
        "Qualified To Buy",
        "Presentation Scheduled",
        "Contract Sent",
    ]
    assert rows[0][1] == datetime(2023, 9, 25, 12, 39)
    renewal = imported.query(
        "SELECT stage FROM stage_history WHERE deal_id = '14200000124' ORDER BY changed_at"
    )
    assert renewal == [("Renewal Due",), ("Closed Won",)]


def test_pipeline_and_unknown_columns_are_kept_as_attributes(imported: Imported) -> None:
    kinds = dict(imported.query("SELECT name, kind FROM _attributes WHERE table_name = 'deals'"))
    assert kinds == {
        "pipeline": "categorical",
        "priority": "categorical",
        "number_of_seats": "numeric",
        "competitor": "categorical",
    }
    rows = imported.query(
        "SELECT attr_pipeline, attr_number_of_seats FROM deals WHERE deal_id = '14200000106'"
    )
    assert rows == [("Renewals", 30.0)]


def test_columns_that_reveal_the_outcome_are_left_out(imported: Imported) -> None:
    warning = next(w for w in imported.first.warnings if "would leak" in w)
    for column in ("Closed Lost Reason", "Days to close", "Deal probability", "Date exited"):
        assert column in warning
    assert any("Associated Company" in w for w in imported.first.warnings)


def test_owners_with_names_become_reps(imported: Imported) -> None:
    reps = imported.query("SELECT owner_id, name, is_placeholder FROM reps ORDER BY owner_id")
    assert [r[0] for r in reps] == ["Dana Whitfield", "Lee Park", "Maria Gonzalez", "Tom Becker"]
    assert imported.first.placeholder_reps == 0


def test_bad_rows_are_rejected_with_the_hubspot_column_in_the_reason(
    imported: Imported,
) -> None:
    by_line = {(r["table"], r["row"], r["field"]): r for r in imported.rejects()}
    assert "'31/13/2024 09:00'" in by_line[("deals", "28", "created_at")]["reason"]
    assert "Create Date" in by_line[("deals", "28", "created_at")]["reason"]
    assert "HubSpot Amount" in by_line[("deals", "29", "amount")]["reason"]
    backdated = by_line[("deals", "30", "closed_at")]["reason"]
    assert "before created_at" in backdated and "Close Date" in backdated
    for line in ("31", "32"):
        assert "different data" in by_line[("deals", line, "deal_id")]["reason"]
    stage = next(r for r in imported.rejects() if r["field"] == "changed_at")
    assert stage["row"] == "33" and "'soon'" in stage["reason"]
    assert 'Date entered "Presentation Scheduled (Sales Pipeline)"' in stage["file"]


def test_internal_property_names_are_read(api: CliImport) -> None:
    deals = api.summary["deals"]
    assert (deals["input"], deals["imported"], deals["rejected"]) == (12, 12, 0)
    status = dict(api.query("SELECT status, count(*) FROM deals GROUP BY 1"))
    assert status == {"won": 5, "lost": 3, "open": 4}
    # A custom pipeline's won stage is a number; hs_is_closed_won says it is won.
    custom = api.query("SELECT status, stage, attr_pipeline FROM deals WHERE deal_id = '9104'")
    assert custom == [("won", "98765432", "12345")]
    stages = api.query("SELECT stage FROM stage_history WHERE deal_id = '9101' ORDER BY 1")
    assert stages == [("appointmentscheduled",), ("closedlost",), ("contractsent",)]
    assert api.summary["placeholder_reps"] == 3


def test_epoch_millisecond_dates_are_read(api: CliImport) -> None:
    rows = api.query("SELECT created_at FROM deals WHERE deal_id = '9105'")
    assert rows == [(datetime(2024, 2, 2, 14, 0),)]


def test_a_folder_without_a_deals_file_is_the_wrong_file(tmp_path: Path) -> None:
    (tmp_path / "contacts.csv").write_text("Record ID,Email\n1,a@b.c\n", encoding="utf-8")
    with pytest.raises(WrongFileError, match=r"deals export.*found: contacts\.csv"):
        read_hubspot(tmp_path)
    shutil.copy(UI_FILE, tmp_path / "deals-1.csv")
    shutil.copy(API_FILE, tmp_path / "deals-2.csv")
    with pytest.raises(ImportFailedError, match="several deals files"):
        read_hubspot(tmp_path)


def test_missing_required_columns_are_named(tmp_path: Path) -> None:
    table = pacsv.read_csv(UI_FILE).drop_columns(["Deal Stage"])
    pacsv.write_csv(table, tmp_path / "all-deals.csv")
    with pytest.raises(MissingColumnsError, match=r"Deal Stage \(or dealstage\)"):
        read_hubspot(tmp_path)


def test_cli_prints_the_import_summary_as_json(api: CliImport) -> None:
    summary = api.summary
    assert set(summary) == {
        "deals",
        "stage_history",
        "import_id",
        "format",
        "source",
        "rejects_file",
        "placeholder_reps",
        "unreadable_lines",
        "warnings",
    }
    assert summary["format"] == "hubspot"
    assert summary["source"] == str(API_FILE)
    assert summary["rejects_file"] is None
    for table in ("deals", "stage_history"):
        assert set(summary[table]) == {"input", "imported", "updated", "unchanged", "rejected"}
    assert any("hs_time_in_appointmentscheduled" in w for w in summary["warnings"])
    assert (api.home / "warehouse.duckdb").exists()


def test_closed_flags_never_guess_an_outcome(tmp_path: Path) -> None:
    """With "Is Deal Closed?" but no "Is Closed Won", a custom pipeline's closed stage is not
    read as lost, and a flag that is not true/false is not ignored: both are rejected."""
    file = tmp_path / "hubspot-deals.csv"
    file.write_text(
        "Record ID,Deal Stage,Create Date,Close Date,Is Deal Closed?\n"
        "201,Contract signed (Enterprise),2024-01-02 10:00,2024-02-01 10:00,true\n"
        "202,Closed Won (Sales Pipeline),2024-01-02 10:00,2024-02-01 10:00,true\n"
        "203,Closed Lost,2024-01-02 10:00,2024-02-01 10:00,true\n"
        "204,Appointment Scheduled,2024-01-02 10:00,2024-06-01 10:00,false\n"
        "205,Appointment Scheduled,2024-01-02 10:00,2024-06-01 10:00,Ja\n",
        encoding="utf-8",
    )
    done = next(import_twice(lambda: read_hubspot(file), tmp_path / "home"))
    statuses = dict(done.query("SELECT deal_id, status FROM deals"))
    assert statuses == {"202": "won", "203": "lost", "204": "open"}
    reasons = done.reasons()
    assert "add Is Closed Won" in reasons[("deals", "2", "status")]
    assert "'Ja'" in reasons[("deals", "6", "status")]


def test_a_rejected_deals_owner_does_not_become_a_rep(tmp_path: Path) -> None:
    """Reps come from accepted deals only: Bob owns only a rejected deal (bad date) and gets no
    rep; Cara owns a rejected and an accepted deal and keeps hers."""
    file = tmp_path / "hubspot-deals.csv"
    file.write_text(
        "Record ID,Deal Stage,Create Date,Close Date,Deal owner\n"
        "301,Appointment Scheduled,2024-01-02 10:00,2024-06-01 10:00,Ann Lee\n"
        "302,Appointment Scheduled,31/13/2024 09:00,2024-06-01 10:00,Bob Roy\n"
        "303,Appointment Scheduled,not a date,2024-06-01 10:00,Cara Diaz\n"
        "304,Appointment Scheduled,2024-01-03 10:00,2024-06-01 10:00,Cara Diaz\n",
        encoding="utf-8",
    )
    done = next(import_twice(lambda: read_hubspot(file), tmp_path / "home"))
    assert done.query("SELECT deal_id FROM deals ORDER BY deal_id") == [("301",), ("304",)]
    assert done.query("SELECT owner_id FROM reps ORDER BY owner_id") == [
        ("Ann Lee",),
        ("Cara Diaz",),
    ]
    reps = done.first.tables["reps"]
    assert reps.input == reps.imported + reps.updated + reps.unchanged + reps.rejected == 2
    assert done.first.tables["deals"].rejected == 2


def test_a_reps_name_never_comes_from_a_rejected_line(tmp_path: Path) -> None:
    """With owner ids and names, the rep is named after the first accepted line of its owner,
    not the first line (301 is rejected); a later export whose only line of an owner is
    rejected changes nothing of that rep."""
    header = "Record ID,Deal Stage,Create Date,Close Date,Deal owner,hubspot_owner_id\n"
    file = tmp_path / "hubspot-deals.csv"
    file.write_text(
        header + "301,Appointment Scheduled,not a date,2024-06-01 10:00,Mallory Wrong,77\n"
        "302,Appointment Scheduled,2024-01-03 10:00,2024-06-01 10:00,Alice Right,77\n"
        "303,Appointment Scheduled,2024-01-04 10:00,2024-06-01 10:00,Alice R.,77\n",
        encoding="utf-8",
    )
    done = next(import_twice(lambda: read_hubspot(file), tmp_path / "home", twice=False))
    assert done.query("SELECT owner_id, name FROM reps") == [("77", "Alice Right")]
    assert done.first.tables["reps"].input == 1
    done.con.close()
    later = tmp_path / "later" / "hubspot-deals.csv"
    later.parent.mkdir()
    later.write_text(
        header + "304,Appointment Scheduled,31/31/2024,2024-06-01 10:00,Mallory Wrong,77\n",
        encoding="utf-8",
    )
    again = next(import_twice(lambda: read_hubspot(later), tmp_path / "home", twice=False))
    assert again.query("SELECT owner_id, name FROM reps") == [("77", "Alice Right")]
    assert "reps" not in again.first.tables or again.first.tables["reps"].input == 0

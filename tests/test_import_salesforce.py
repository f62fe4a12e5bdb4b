"""The Salesforce importer: an object-per-file export with API field names, end to end."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from salesml.errors import MissingColumnsError, WrongFileError
from salesml.importers.salesforce import read_salesforce
from tests.importing import Imported, import_twice

EXPORT = Path(__file__).parent / "fixtures" / "salesforce"


def sfid(prefix: str, n: int) -> str:
    return f"{prefix}5g00000{n:05d}AAA"


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from import_twice(lambda: read_salesforce(EXPORT), tmp_path_factory.mktemp("salesforce"))


def test_every_row_is_counted_once(imported: Imported) -> None:
    for summary in (imported.first, imported.second):
        for name, c in summary.tables.items():
            assert c.input == c.imported + c.updated + c.unchanged + c.rejected, name
    deals = imported.first.tables["deals"]
    # 38 rows, one in the recycle bin; one exact duplicate; six bad rows.
    assert (deals.input, deals.imported, deals.unchanged, deals.rejected) == (37, 30, 1, 6)
    assert set(imported.first.tables) == {
        "reps",
        "accounts",
        "deals",
        "stage_history",
        "activities",
        "leads",
    }


def test_reimporting_the_same_export_changes_nothing(imported: Imported) -> None:
    for name, c in imported.second.tables.items():
        assert (c.imported, c.updated) == (0, 0), name
        assert c.unchanged + c.rejected == c.input, name


def test_status_comes_from_is_won_and_is_closed(imported: Imported) -> None:
    status = dict(imported.query("SELECT status, count(*) FROM deals GROUP BY 1"))
    assert status == {"won": 10, "lost": 10, "open": 10}


def test_close_date_is_closed_at_when_closed_and_expected_close_when_open(
    imported: Imported,
) -> None:
    lost = imported.query(
        "SELECT status, closed_at, expected_close_date, stage FROM deals WHERE deal_id = ?",
        [sfid("006", 1)],
    )
    assert lost == [("lost", datetime(2023, 7, 1), None, "Closed Lost")]
    open_deal = imported.query(
        "SELECT status, closed_at, expected_close_date, stage FROM deals WHERE deal_id = ?",
        [sfid("006", 2)],
    )
    assert open_deal == [("open", None, date(2024, 9, 3), "Needs Analysis")]


def test_close_date_on_the_day_of_creation_is_not_before_creation(imported: Imported) -> None:
    rows = imported.query(
        "SELECT created_at, closed_at FROM deals WHERE deal_id = ?", [sfid("006", 29)]
    )
    assert rows == [(datetime(2024, 3, 4, 16, 20), datetime(2024, 3, 4, 16, 20))]


def test_datetimes_with_an_offset_are_stored_in_utc(imported: Imported) -> None:
    rows = imported.query("SELECT created_at FROM deals WHERE deal_id = ?", [sfid("006", 30)])
    assert rows == [(datetime(2024, 5, 21, 0, 30),)]


def test_canonical_fields_are_renamed(imported: Imported) -> None:
    rows = imported.query(
        "SELECT name, amount, currency, owner_id, account_id, lead_source, deal_type "
        "FROM deals WHERE deal_id = ?",
        [sfid("006", 5)],
    )
    assert rows == [
        (
            "Umbrella – 25 seats",
            12500.0,
            "EUR",
            sfid("005", 2),
            sfid("001", 6),
            "Partner Referral",
            "Existing Customer - Upgrade",
        )
    ]


def test_bad_rows_are_rejected_with_the_salesforce_field_in_the_reason(
    imported: Imported,
) -> None:
    by_line = {(r["table"], r["row"], r["field"]): r for r in imported.rejects()}
    unparseable = by_line[("deals", "32", "created_at")]
    assert "'last Tuesday'" in unparseable["reason"]
    assert "Opportunity.CreatedDate" in unparseable["reason"]
    negative = by_line[("deals", "33", "amount")]
    assert "negative" in negative["reason"] and "Opportunity.Amount" in negative["reason"]
    backdated = by_line[("deals", "34", "closed_at")]
    assert "before created_at" in backdated["reason"]
    assert "CloseDate" in backdated["reason"]
    unknown = by_line[("deals", "35", "status")]
    assert "'maybe'" in unknown["reason"] and "IsWon" in unknown["reason"]
    for line in ("36", "37"):
        conflict = by_line[("deals", line, "deal_id")]
        assert "different data (lines 36, 37)" in conflict["reason"]
    assert "NumberOfEmployees" in by_line[("accounts", "5", "employees")]["reason"]
    assert (
        "OpportunityHistory.CreatedDate"
        in by_line[("stage_history", "127", "changed_at")]["reason"]
    )
    assert "is not in deals" in by_line[("stage_history", "126", "deal_id")]["reason"]


def test_recycle_bin_rows_are_skipped_with_a_warning(imported: Imported) -> None:
    assert imported.query("SELECT count(*) FROM deals WHERE deal_id = ?", [sfid("006", 36)]) == [
        (0,)
    ]
    assert any("skipped 1 deleted row" in w for w in imported.first.warnings)


def test_custom_fields_are_kept_as_attributes_without_the_suffix(imported: Imported) -> None:
    kinds = dict(imported.query("SELECT name, kind FROM _attributes WHERE table_name = 'deals'"))
    assert kinds == {
        "region": "categorical",
        "competitor": "categorical",
        "seats": "numeric",
        "loss_reason": "categorical",
    }
    rows = imported.query(
        "SELECT attr_region, attr_seats FROM deals WHERE deal_id = ?", [sfid("006", 30)]
    )
    assert rows == [("NA", 25.0)]


def test_outcome_revealing_fields_are_left_out_and_reported(imported: Imported) -> None:
    warnings = " ".join(imported.first.warnings)
    assert "Probability, ForecastCategoryName" in warnings
    assert "loss_reason are filled on closed deals only" in warnings


def test_opportunity_history_becomes_stage_history(imported: Imported) -> None:
    rows = imported.query(
        "SELECT stage, changed_at, amount, expected_close_date FROM stage_history "
        "WHERE deal_id = ? ORDER BY changed_at",
        [sfid("006", 3)],
    )
    assert [r[0] for r in rows] == [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Proposal/Price Quote",
        "Closed Won",
    ]
    assert rows[0][1] == datetime(2023, 6, 28, 12, 0)
    assert {r[2] for r in rows} == {8000.0}
    assert {r[3] for r in rows} == {date(2023, 7, 31)}


def test_users_become_reps_with_manager_names_and_roles(imported: Imported) -> None:
    rows = imported.query(
        "SELECT name, team, manager, region, hired_at, is_placeholder FROM reps WHERE owner_id = ?",
        [sfid("005", 1)],
    )
    assert rows == [
        ("Dana Whitfield", "Enterprise AE", "Priya Raman", "EMEA", date(2021, 9, 1), None)
    ]
    placeholder = imported.query(
        "SELECT is_placeholder FROM reps WHERE owner_id = ?", [sfid("005", 9)]
    )
    assert placeholder == [(True,)]
    assert imported.first.placeholder_reps == 1


def test_tasks_and_events_become_activities(imported: Imported) -> None:
    types = dict(imported.query("SELECT type, count(*) FROM activities GROUP BY 1"))
    assert set(types) == {"call", "email", "task", "meeting"}
    assert sum(types.values()) == 22
    # Data Loader's upper-case headers are read; ActivityDate is preferred to CreatedDate.
    task = imported.query(
        "SELECT deal_id, occurred_at, type FROM activities WHERE activity_id = ?",
        [sfid("00T", 1)],
    )
    assert task == [(sfid("006", 6), datetime(2023, 7, 26), "email")]
    event = imported.query(
        "SELECT occurred_at, type FROM activities WHERE activity_id = ?", [sfid("00U", 1)]
    )
    assert event[0][1] == "meeting"
    reasons = {r["row"]: r["reason"] for r in imported.rejects() if r["table"] == "activities"}
    assert "is not in deals" in reasons["18"]  # logged against an account
    assert "Task.WhatId" in reasons["19"]  # logged against nothing


def test_leads_convert_and_disqualify(imported: Imported) -> None:
    converted = imported.query(
        "SELECT created_at, converted_at, deal_id, disqualified_at FROM leads WHERE lead_id = ?",
        [sfid("00Q", 4)],
    )
    created = converted[0][0]
    assert converted == [(created, created, sfid("006", 4), None)]
    disqualified = imported.query(
        "SELECT lead_id FROM leads WHERE disqualified_at IS NOT NULL ORDER BY lead_id"
    )
    assert [r[0] for r in disqualified] == [sfid("00Q", k) for k in (1, 5, 9, 13)]
    reasons = [r["reason"] for r in imported.rejects() if r["table"] == "leads"]
    assert len(reasons) == 1 and "Lead.ConvertedDate" in reasons[0]


def test_a_folder_without_opportunities_is_the_wrong_file(tmp_path: Path) -> None:
    shutil.copy(EXPORT / "Account.csv", tmp_path / "Account.csv")
    with pytest.raises(WrongFileError, match=r"Opportunity\.csv.*Found: Account\.csv"):
        read_salesforce(tmp_path)
    with pytest.raises(WrongFileError, match="Salesforce Opportunity export"):
        read_salesforce(tmp_path / "Account.csv")


def test_missing_required_fields_are_named_with_a_fix(tmp_path: Path) -> None:
    table = pacsv.read_csv(EXPORT / "Opportunity.csv").drop_columns(["StageName"])
    pacsv.write_csv(table, tmp_path / "Opportunity.csv")
    with pytest.raises(MissingColumnsError, match=r"StageName.*API field names"):
        read_salesforce(tmp_path)


def test_plural_file_names_parquet_and_a_single_file_are_accepted(tmp_path: Path) -> None:
    table = pacsv.read_csv(
        EXPORT / "Opportunity.csv",
        convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
    )
    pq.write_table(table, tmp_path / "opportunities.parquet")
    batch = read_salesforce(tmp_path)
    assert [s.table for s in batch.tables] == ["deals"]
    assert batch.tables[0].data.num_rows == 37
    single = read_salesforce(EXPORT / "Opportunity.csv")
    assert [s.table for s in single.tables] == ["deals"]


def test_without_is_won_and_is_closed_the_stage_name_decides(tmp_path: Path) -> None:
    (tmp_path / "Opportunity.csv").write_text(
        "Id,StageName,CreatedDate,CloseDate\n"
        "006A,Closed Won,2024-01-01,2024-02-01\n"
        "006B,Closed Lost,2024-01-01,2024-02-01\n"
        "006C,Negotiation,2024-01-01,2024-06-01\n",
        encoding="utf-8",
    )
    batch = read_salesforce(tmp_path)
    status = batch.tables[0].data.column("status")
    assert status.to_pylist() == ["won", "lost", "open"]
    assert pc.all(pc.is_null(batch.tables[0].data.column("closed_at")).slice(2)).as_py()
    assert any("status read from StageName" in w for w in batch.warnings)


def test_a_closed_opportunity_without_is_won_is_rejected_not_called_lost(tmp_path: Path) -> None:
    """IsClosed without IsWon: 'Signed' (a custom won stage) is not a loss; only the default
    closed stage names tell the outcome, the rest is rejected with how to fix the export."""
    (tmp_path / "Opportunity.csv").write_text(
        "Id,StageName,CreatedDate,CloseDate,IsClosed\n"
        "006A,Signed,2024-01-01,2024-02-01,true\n"
        "006B,Closed Won,2024-01-01,2024-02-01,true\n"
        "006C,Closed Lost,2024-01-01,2024-02-01,true\n"
        "006D,Negotiation,2024-01-01,2024-06-01,false\n",
        encoding="utf-8",
    )
    done = next(import_twice(lambda: read_salesforce(tmp_path), tmp_path / "home"))
    assert dict(done.query("SELECT deal_id, status FROM deals")) == {
        "006B": "won",
        "006C": "lost",
        "006D": "open",
    }
    reason = done.reasons()[("deals", "2", "status")]
    assert "add IsWon to the export" in reason
    assert any("is rejected, as whether it was won is unknown" in w for w in done.first.warnings)

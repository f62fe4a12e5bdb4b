"""The Zoho CRM, Pipedrive and Monday.com importers: deals exports written with their labels,
date formats and status values; every line of each fixture is accounted for."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app
from salesml.errors import MissingColumnsError
from salesml.importers import ImportBatch, read_export
from tests.importing import Imported, import_twice

FIXTURES = Path(__file__).parent / "fixtures"
ZOHO = FIXTURES / "zoho"
PIPEDRIVE = FIXTURES / "pipedrive"
MONDAY = FIXTURES / "monday"
MONDAY_FILE = MONDAY / "Deals_Pipeline_1717400000.csv"


def reader(path: Path, fmt: str) -> Callable[[], ImportBatch]:
    return lambda: read_export(path, fmt)


@pytest.fixture(scope="module")
def zoho(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from import_twice(reader(ZOHO, "zoho"), tmp_path_factory.mktemp("zoho"))


@pytest.fixture(scope="module")
def pipedrive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from import_twice(reader(PIPEDRIVE, "pipedrive"), tmp_path_factory.mktemp("pipedrive"))


@pytest.fixture(scope="module")
def monday(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    yield from import_twice(reader(MONDAY, "monday"), tmp_path_factory.mktemp("monday"))


def data_lines(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1


def test_every_zoho_row_is_imported_or_rejected(zoho: Imported) -> None:
    deals = zoho.first.tables["deals"]
    assert deals.input == data_lines(ZOHO / "Deals_2024_06_03.csv") == 16
    assert (deals.imported, deals.unchanged, deals.rejected) == (9, 1, 6)
    reasons = zoho.reasons()
    assert "Stage" in reasons[("deals", "11", "status")]
    assert "31/02/2024" in reasons[("deals", "12", "created_at")]
    assert "negative" in reasons[("deals", "14", "amount")]
    assert "different data" in reasons[("deals", "7", "deal_id")]
    assert "before created_at" in reasons[("deals", "17", "closed_at")]


def test_zoho_stage_decides_status_and_closing_date_its_meaning(zoho: Imported) -> None:
    status = dict(zoho.query("SELECT status, count(*) FROM deals GROUP BY 1"))
    assert status == {"won": 3, "lost": 2, "open": 4}
    won = zoho.query(
        "SELECT closed_at, expected_close_date, amount, owner_id, account_id, lead_source "
        "FROM deals WHERE deal_id = 'zcrm_5725767000000427057'"
    )
    assert str(won[0][0]) == "2024-05-20 00:00:00" and won[0][1] is None
    assert won[0][2:] == (12500.0, "Leah Okafor", "Commercial Press", "Employee Referral")
    open_deal = zoho.query(
        "SELECT closed_at, expected_close_date, stage, amount FROM deals "
        "WHERE deal_id = 'zcrm_5725767000000427043'"
    )
    assert open_deal[0][0] is None and str(open_deal[0][1]) == "2024-08-15"
    assert open_deal[0][2:] == ("Qualification", None)  # a blank amount is unknown, not 0
    custom = zoho.query(
        "SELECT stage, status FROM deals WHERE deal_id = 'zcrm_5725767000000427113'"
    )
    assert custom == [("Security Review", "open")]
    assert any("'Security Review'" in w for w in zoho.first.warnings)


def test_zoho_custom_fields_are_attributes_and_derived_fields_are_left_out(
    zoho: Imported,
) -> None:
    names = {r[0] for r in zoho.query("SELECT name FROM _attributes WHERE table_name = 'deals'")}
    assert names == {"pipeline", "deal_size_band", "competitor"}
    left_out = " ".join(zoho.first.warnings)
    for label in ("Probability (%)", "Expected Revenue", "Reason For Loss", "Modified Time"):
        assert label in left_out
    reps = zoho.query("SELECT owner_id, name FROM reps ORDER BY 1")
    assert [r[0] for r in reps] == ["Leah Okafor", "Marcus Webb", "Priya Nair"]


def test_every_pipedrive_row_is_imported_or_rejected(pipedrive: Imported) -> None:
    deals = pipedrive.first.tables["deals"]
    assert deals.input == data_lines(PIPEDRIVE / "deals-8712345-17.csv") == 13
    assert (deals.imported, deals.unchanged, deals.rejected) == (7, 1, 5)
    reasons = pipedrive.reasons()
    assert "'deleted'" in reasons[("deals", "7", "status")]
    assert "'pending'" in reasons[("deals", "8", "status")]
    assert "2024-13-40" in reasons[("deals", "9", "created_at")]
    assert "control characters" in reasons[("deals", "12", "name")]
    assert "finite" in reasons[("deals", "13", "amount")]


def test_pipedrive_won_and_lost_times_are_closed_at(pipedrive: Imported) -> None:
    rows = dict(
        (r[0], r[1:])
        for r in pipedrive.query(
            "SELECT deal_id, status, closed_at, expected_close_date, currency FROM deals"
        )
    )
    assert str(rows["101"][1]) == "2024-03-15 11:42:09" and rows["101"][0] == "won"
    assert str(rows["102"][1]) == "2024-04-02 08:55:00" and rows["102"][0] == "lost"
    # No won time: "Deal closed on" stands in.
    assert str(rows["105"][1]) == "2024-02-28 00:00:00" and rows["105"][3] == "USD"
    assert rows["103"][1] is None and str(rows["103"][2]) == "2024-07-31"
    assert rows["112"][0] == "won"  # "Won" in any case


def test_pipedrive_deal_fields_become_attributes_without_the_prefix(pipedrive: Imported) -> None:
    names = {
        r[0] for r in pipedrive.query("SELECT name FROM _attributes WHERE table_name = 'deals'")
    }
    assert names == {"pipeline", "industry_vertical", "seats"}
    seats = pipedrive.query("SELECT attr_seats FROM deals WHERE deal_id = '103'")
    assert seats == [(80.0,)]
    warnings = " ".join(pipedrive.first.warnings)
    assert "Deal - Lost reason" in warnings and "Organization - Address" in warnings


def test_every_monday_line_is_a_deal_a_reject_or_layout(monday: Imported) -> None:
    deals = monday.first.tables["deals"]
    assert (deals.input, deals.imported, deals.unchanged, deals.rejected) == (11, 7, 1, 3)
    assert monday.first.unreadable_lines == 1
    # board title + first group, two more groups, three header lines and a subitems header
    layout = 2 + 2 + 3 + 1
    blank = 3
    rejects = monday.rejects()
    subitems = [r for r in rejects if r["table"] == "(subitem)"]
    assert (
        deals.input + monday.first.unreadable_lines + len(subitems) + layout + blank
        == data_lines(MONDAY_FILE) + 1
    )
    # Subitems (lines 24-25, under item 1523456752) are not deals: each is a reject naming
    # its parent item, and a warning says why they are not imported.
    assert [r["row"] for r in subitems] == ["24", "25"]
    assert "'Bundle licences' of item '1523456752' (line 22)" in subitems[0]["reason"]
    assert "Onboarding workshop" in subitems[1]["reason"]
    assert any("subitems are not imported" in w for w in monday.first.warnings)
    reasons = monday.reasons()
    assert "TBD" in reasons[("deals", "7", "expected_close_date")]
    assert "empty" in reasons[("deals", "10", "created_at")]
    assert "before created_at" in reasons[("deals", "22", "closed_at")]
    assert any(r["table"] == "(unreadable line)" and r["row"] == "17" for r in monday.rejects())


def test_monday_status_labels_people_and_creation_log(monday: Imported) -> None:
    rows = dict(
        (r[0], r[1:])
        for r in monday.query("SELECT deal_id, status, stage, owner_id, created_at FROM deals")
    )
    assert rows["1523456781"][:3] == ("open", "Negotiation", "Dana Lee")
    assert str(rows["1523456781"][3]) == "2024-03-05 14:22:10"
    assert rows["1523456782"][2] == "Omar Haddad"  # the first of two people
    assert rows["1523456785"][:2] == ("open", None)  # no label: open, no stage
    assert rows["1523456702"][0] == "won" and rows["1523456751"][0] == "lost"
    names = {r[0] for r in monday.query("SELECT name FROM _attributes WHERE table_name = 'deals'")}
    # the board's Region column is the data model's region, not a custom attribute
    assert names == {"seats"}
    regions = monday.query("SELECT count(region) FROM deals")
    assert regions[0][0] > 0


@pytest.mark.parametrize("fixture", ["zoho", "pipedrive", "monday"])
def test_reimporting_changes_nothing(fixture: str, request: pytest.FixtureRequest) -> None:
    imported: Imported = request.getfixturevalue(fixture)
    for name, c in imported.second.tables.items():
        assert (c.imported, c.updated) == (0, 0), name
        assert c.input == c.unchanged + c.rejected, name


def test_monday_workbook_reads_like_its_csv(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    with MONDAY_FILE.open(encoding="utf-8", newline="") as fh:
        for cells in csv.reader(fh):
            sheet.append(cells or [None])
    book.save(tmp_path / "Deals_board.xlsx")
    home = tmp_path / "home"
    result = CliRunner().invoke(
        app,
        ["import", str(tmp_path / "Deals_board.xlsx"), "--format", "monday", "--json"],
        env={"SALESML_HOME": str(home)},
    )
    assert result.exit_code == 0, result.output
    deals = json.loads(result.stdout)["deals"]
    assert (deals["input"], deals["imported"], deals["rejected"]) == (11, 7, 3)


def test_monday_board_without_item_ids_gets_name_and_date_ids(tmp_path: Path) -> None:
    with MONDAY_FILE.open(encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    drop = lines[3].index("Item ID")
    file = tmp_path / "deals.csv"
    with file.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows([c for i, c in enumerate(cells) if i != drop] for cells in lines)
    batch = read_export(file, "monday")
    deals = batch.tables[0].data
    assert deals.column("deal_id")[0].as_py() == "Acme - 20 seats @ 2024-03-05 14:22:10"
    assert any("no Item ID" in w for w in batch.warnings)


def test_a_file_without_the_required_columns_names_them(tmp_path: Path) -> None:
    file = tmp_path / "deals.csv"
    file.write_text("Deal Name,Amount\nAcme,100\n", encoding="utf-8")
    with pytest.raises(MissingColumnsError) as err:
        read_export(file, "zoho")
    assert "Record Id" in str(err.value) and "Deals module" in str(err.value)


def test_a_monday_cell_over_csvs_field_limit_is_one_rejected_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 300 KB name (over the csv module's 128 KiB default) rejects its own line, as in the
    Zoho and Pipedrive readers, instead of refusing the whole board."""
    with MONDAY_FILE.open(encoding="utf-8", newline="") as fh:
        lines = list(csv.reader(fh))
    lines[4][0] = "x" * 300_000
    file = tmp_path / "board.csv"
    with file.open("w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(lines)
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    result = CliRunner().invoke(app, ["import", str(file), "--format", "monday", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rejects = Path(summary["rejects_file"]).read_text(encoding="utf-8")
    assert "characters long" in rejects and ",name," in rejects
    assert summary["deals"]["imported"] >= 5


def test_a_zoho_owner_with_a_control_character_is_one_reject_line(tmp_path: Path) -> None:
    """The owner makes the deal's owner_id and a rep: a bad owner rejects the line once (on
    the deal), not again for the rep's id and name; a line with two bad fields is one reject
    line naming both."""
    source = (ZOHO / "Deals_2024_06_03.csv").read_text(encoding="utf-8").splitlines()
    header, first = source[0], source[1]
    bad = first.replace("zcrm_5725767000000427001", "zcrm_1").replace("Priya Nair,B", "Pri\aya,B")
    worse = bad.replace("zcrm_1,", "zcrm_2,").replace("24000.00", "-24000.00", 1)
    lines = [header, first, bad, worse]
    (tmp_path / "Deals.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    imported = next(import_twice(reader(tmp_path / "Deals.csv", "zoho"), tmp_path, twice=False))
    rejects = imported.rejects()
    assert [(r["table"], r["row"], r["field"]) for r in rejects] == [
        ("deals", "3", "owner_id"),
        ("deals", "4", "amount; owner_id"),
    ]
    assert "control characters" in rejects[0]["reason"]
    negative, control = rejects[1]["reason"].split(" | ")
    assert "negative" in negative and "control characters" in control
    assert imported.first.tables["deals"].rejected == 2
    assert imported.query("SELECT owner_id FROM reps") == [("Priya Nair",)]


def test_a_rejected_pipedrive_deals_owner_does_not_become_a_rep(tmp_path: Path) -> None:
    """Reps come from accepted deals only (as for HubSpot, Zoho and Monday, which share the
    rule): Bob owns only a rejected deal and gets no rep; Cara keeps hers."""
    folder = tmp_path / "pd"
    folder.mkdir()
    (folder / "deals-1-1.csv").write_text(
        "Deal - ID,Deal - Owner,Deal - Status,Deal - Deal created,Deal - Value\n"
        "1,Ann Lee,open,2024-02-01 09:15:00,100\n"
        "2,Bob Roy,open,2024-13-45 09:15:00,100\n"
        "3,Cara Diaz,open,2024-02-02 09:15:00,lots\n"
        "4,Cara Diaz,open,2024-02-03 09:15:00,100\n",
        encoding="utf-8",
    )
    done = next(import_twice(reader(folder, "pipedrive"), tmp_path / "home"))
    assert done.query("SELECT deal_id FROM deals ORDER BY deal_id") == [("1",), ("4",)]
    assert done.query("SELECT owner_id FROM reps ORDER BY owner_id") == [
        ("Ann Lee",),
        ("Cara Diaz",),
    ]
    reps = done.first.tables["reps"]
    assert reps.input == reps.imported + reps.updated + reps.unchanged + reps.rejected == 2


def test_the_monday_layout_warning_counts_the_title_and_each_group(tmp_path: Path) -> None:
    """A board of one title and two groups: the first group's name sits above the first
    header line, and is a group line, not a second title."""
    file = tmp_path / "board.csv"
    header = "Name,Item ID,Person,Deal Stage,Deal Value,Creation log"
    file.write_text(
        "\n".join(
            [
                "Sales Pipeline",
                "",
                "Active Deals",
                header,
                "Acme,1,Dana Lee,Negotiation,100,Dana Lee 2024-03-05 14:22:10",
                "",
                "Closed",
                header,
                "Globex,2,Dana Lee,Won,200,Dana Lee 2024-03-06 14:22:10",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    batch = read_export(file, "monday")
    layout = [w for w in batch.warnings if "title line" in w]
    assert layout == [
        "board.csv: left out 1 title line(s), 2 group line(s) and 2 header line(s) of the "
        "board layout (not deals)"
    ]
    assert batch.tables[0].data.num_rows == 2
    # a board whose title sits right above the header has a title and no group
    file.write_text("Sales Pipeline\n" + header + "\nAcme,1,Dana Lee,New,1,2024-03-05\n")
    layout = [w for w in read_export(file, "monday").warnings if "title line" in w]
    assert "1 title line(s), 0 group line(s)" in layout[0]


def test_a_zoho_reps_name_comes_from_an_accepted_line(tmp_path: Path) -> None:
    """With Deal Owner.id, the rep of owner z77 is named after its first accepted deal, not the
    rejected line above it (a name the CRM spelled otherwise there, or a wrong one)."""
    (tmp_path / "Deals.csv").write_text(
        "Record Id,Deal Name,Deal Owner,Deal Owner.id,Stage,Amount,Created Time,Closing Date\n"
        "1,A,Mallory Wrong,z77,Qualification,lots,2024-01-02 10:00:00,2024-06-01\n"
        "2,B,Priya Nair,z77,Qualification,100,2024-01-02 10:00:00,2024-06-01\n"
        "3,C,Ann Lee,z78,Qualification,100,2024-01-03 10:00:00,2024-06-01\n",
        encoding="utf-8",
    )
    done = next(import_twice(reader(tmp_path / "Deals.csv", "zoho"), tmp_path / "home"))
    assert done.query("SELECT owner_id, name FROM reps ORDER BY owner_id") == [
        ("z77", "Priya Nair"),
        ("z78", "Ann Lee"),
    ]
    assert done.first.tables["deals"].rejected == 1
    assert done.second.tables["reps"].unchanged == 2

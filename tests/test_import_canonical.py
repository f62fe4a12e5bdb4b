"""The canonical importer and the shared pipeline: nothing is lost, re-imports change nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from salesml.errors import ImportFailedError, MissingColumnsError, WrongFileError
from salesml.importers import ImportSummary, read_export, run_import
from salesml.warehouse import connect

DEALS_HEADER = (
    "deal_id,created_at,status,closed_at,amount,currency,owner_id,stage,product,Competitor,Seats"
)
GOOD_DEALS = [
    "D1,2025-01-05,won,2025-02-10,1000,USD,R1,Negotiation,Pro,BigCo,10",
    "D2,2025-01-07T09:30:00Z,lost,2025-03-01,,USD,R1,Proposal,Basic,none,3",
    'D3,2025-02-01,open,,"2,500.00",USD,R2,Discovery,Pro,,7',
    "D4,2025-02-03,open,,,USD,R9,Qualification,Basic,Upstart,",
]


def write(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def make_export(folder: Path, deals: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write(folder / "deals.csv", DEALS_HEADER, deals if deals is not None else GOOD_DEALS)
    write(
        folder / "reps.csv",
        "owner_id,name,team,region,hired_at",
        ["R1,Ann Lee,East,NA,2022-01-01", "R2,Bo Chen,West,NA,2023-06-15"],
    )
    write(
        folder / "activities.csv",
        "deal_id,occurred_at,type,owner_id",
        ["D1,2025-01-10,call,R1", "D1,2025-01-20,meeting,R1", "D3,2025-02-05,email,R2"],
    )
    write(
        folder / "stage_history.csv",
        "deal_id,stage,changed_at,amount",
        ["D1,Qualification,2025-01-05,900", "D1,Negotiation,2025-02-01,1000"],
    )
    return folder


def do_import(src: Path, home: Path, fmt: str = "canonical") -> ImportSummary:
    return run_import(read_export(src, fmt), home / "w.duckdb", home / "rejects")


def rejects(summary: ImportSummary) -> list[dict[str, str]]:
    assert summary.rejects_file is not None
    with Path(summary.rejects_file).open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def assert_counts_add_up(summary: ImportSummary) -> None:
    for name, c in summary.tables.items():
        assert c.imported + c.updated + c.unchanged + c.rejected == c.input, name


def test_clean_export_imports_every_row(tmp_path: Path) -> None:
    summary = do_import(make_export(tmp_path / "x"), tmp_path)
    assert summary.tables["deals"].imported == 4
    assert summary.tables["activities"].imported == 3
    assert summary.tables["stage_history"].imported == 2
    assert summary.rejects_file is None
    assert_counts_add_up(summary)
    con = connect(tmp_path / "w.duckdb")
    row = con.execute(
        "SELECT amount, attr_competitor, attr_seats FROM deals WHERE deal_id = 'D3'"
    ).fetchone()
    assert row == (2500.0, None, 7.0)
    kinds = dict(con.execute("SELECT name, kind FROM _attributes").fetchall())
    assert kinds == {"competitor": "categorical", "seats": "numeric"}
    created = con.execute("SELECT created_at FROM deals WHERE deal_id = 'D2'").fetchone()
    assert str(created[0]) == "2025-01-07 09:30:00" if created else False


def test_reimporting_the_same_export_changes_nothing(tmp_path: Path) -> None:
    src = make_export(tmp_path / "x")
    do_import(src, tmp_path)
    again = do_import(src, tmp_path)
    for name, c in again.tables.items():
        assert (c.imported, c.updated, c.rejected) == (0, 0, 0), name
        assert c.unchanged == c.input
    con = connect(tmp_path / "w.duckdb")
    assert con.execute("SELECT count(*) FROM deals").fetchone() == (4,)
    assert con.execute("SELECT count(*) FROM activities").fetchone() == (3,)


def test_changed_rows_are_updated_and_new_rows_imported(tmp_path: Path) -> None:
    do_import(make_export(tmp_path / "x"), tmp_path)
    changed = [
        *GOOD_DEALS[:3],
        GOOD_DEALS[3].replace("open,,", "won,2025-03-01,500"),
        "D5,2025-03-01,open,,100,USD,R2,Discovery,Pro,none,1",
    ]
    summary = do_import(make_export(tmp_path / "y", changed), tmp_path)
    deals = summary.tables["deals"]
    assert (deals.imported, deals.updated, deals.unchanged) == (1, 1, 3)


def test_owner_missing_from_reps_gets_a_placeholder_and_a_warning(tmp_path: Path) -> None:
    summary = do_import(make_export(tmp_path / "x"), tmp_path)
    assert summary.placeholder_reps == 1
    assert any("R9" in w and "placeholder" in w for w in summary.warnings)
    con = connect(tmp_path / "w.duckdb")
    assert con.execute("SELECT is_placeholder FROM reps WHERE owner_id = 'R9'").fetchone() == (
        True,
    )


@pytest.mark.parametrize(
    ("bad_row", "field", "words"),
    [
        ("D9,2025-13-45,open,,10,USD,R1,Discovery,Pro,,1", "created_at", "could not read"),
        ("D9,2025-01-01,open,,-5,USD,R1,Discovery,Pro,,1", "amount", "negative"),
        ("D9,2025-03-01,won,2025-01-01,10,USD,R1,Discovery,Pro,,1", "closed_at", "before"),
        ("D9,2025-03-01,won,,10,USD,R1,Discovery,Pro,,1", "closed_at", "no closed_at"),
        ("D9,2025-03-01,pending,,10,USD,R1,Discovery,Pro,,1", "status", "not one of"),
        ("D9,2025-03-01,open,,10,dollars,R1,Discovery,Pro,,1", "currency", "ISO 4217"),
        ("D9,2025-03-01,open,,ten,USD,R1,Discovery,Pro,,1", "amount", "could not read"),
        (",2025-03-01,open,,10,USD,R1,Discovery,Pro,,1", "deal_id", "empty"),
    ],
)
def test_each_bad_row_is_rejected_with_file_line_field_and_reason(
    tmp_path: Path, bad_row: str, field: str, words: str
) -> None:
    summary = do_import(make_export(tmp_path / "x", [*GOOD_DEALS, bad_row]), tmp_path)
    deals = summary.tables["deals"]
    assert (deals.imported, deals.rejected) == (4, 1)
    assert_counts_add_up(summary)
    [reject] = rejects(summary)
    assert reject["table"] == "deals"
    assert reject["file"].endswith("deals.csv")
    assert reject["row"] == "6"  # header is line 1, the bad row is the 5th data row
    assert reject["field"] == field
    assert words in reject["reason"]
    assert '"deal_id"' in reject["record"]


def test_text_in_a_numeric_attribute_is_rejected_once_its_kind_is_known(tmp_path: Path) -> None:
    do_import(make_export(tmp_path / "x"), tmp_path)
    bad = "D9,2025-03-01,open,,10,USD,R1,Discovery,Pro,,many"
    summary = do_import(make_export(tmp_path / "y", [*GOOD_DEALS, bad]), tmp_path)
    [reject] = rejects(summary)
    assert (reject["field"], reject["value"]) == ("seats", "many")
    assert "custom attribute seats is numeric" in reject["reason"]


def test_duplicate_ids_with_conflicting_data_are_all_rejected(tmp_path: Path) -> None:
    rows = [*GOOD_DEALS, GOOD_DEALS[0].replace("1000", "1200")]
    summary = do_import(make_export(tmp_path / "x", rows), tmp_path)
    assert summary.tables["deals"].rejected == 2
    reasons = [r["reason"] for r in rejects(summary) if r["table"] == "deals"]
    assert all("'D1' appears on 2 rows with different data" in r for r in reasons)
    # Activities of the rejected deal are rejected too: nothing points at a missing deal.
    assert summary.tables["activities"].rejected == 2
    assert_counts_add_up(summary)


def test_exact_duplicate_rows_count_as_unchanged(tmp_path: Path) -> None:
    summary = do_import(make_export(tmp_path / "x", [*GOOD_DEALS, GOOD_DEALS[0]]), tmp_path)
    deals = summary.tables["deals"]
    assert (deals.input, deals.imported, deals.unchanged, deals.rejected) == (5, 4, 1, 0)


def test_activity_for_unknown_deal_is_rejected(tmp_path: Path) -> None:
    src = make_export(tmp_path / "x")
    write(
        src / "activities.csv",
        "deal_id,occurred_at,type",
        ["D1,2025-01-10,call", "NOPE,2025-01-10,call"],
    )
    summary = do_import(src, tmp_path)
    assert summary.tables["activities"].rejected == 1
    [reject] = rejects(summary)
    assert "'NOPE' is not in deals" in reject["reason"]


def test_missing_required_column_refuses_the_import_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.mkdir()
    write(src / "deals.csv", "deal_id,status", ["D1,open"])
    with pytest.raises(MissingColumnsError, match="created_at") as info:
        do_import(src, tmp_path)
    assert "deals.csv" in str(info.value)
    con = connect(tmp_path / "w.duckdb")
    assert con.execute("SELECT count(*) FROM deals").fetchone() == (0,)


def test_missing_column_error_names_the_files_own_headers(tmp_path: Path) -> None:
    src = tmp_path / "x"
    src.mkdir()
    write(src / "deals.csv", "Deal ID,status,Created Date,Seats", ["D1,open,2025-01-05,3"])
    with pytest.raises(MissingColumnsError, match="created_at") as info:
        do_import(src, tmp_path)
    message = str(info.value)
    assert "it has: Deal ID, status, Created Date, Seats" in message
    assert "attr_" not in message
    assert "rename the column" in message and "--format mapping" in message


def test_a_failed_import_leaves_the_warehouse_as_it_was(tmp_path: Path) -> None:
    do_import(make_export(tmp_path / "x"), tmp_path)
    src = make_export(tmp_path / "y", [GOOD_DEALS[0].replace("1000", "7")])
    write(src / "activities.csv", "deal_id,type", ["D1,call"])  # no occurred_at
    with pytest.raises(MissingColumnsError):
        do_import(src, tmp_path)
    con = connect(tmp_path / "w.duckdb")
    assert con.execute("SELECT amount FROM deals WHERE deal_id = 'D1'").fetchone() == (1000.0,)


def test_wrong_files_get_clear_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImportFailedError, match="no table files"):
        do_import(empty, tmp_path)
    garbage = tmp_path / "g"
    garbage.mkdir()
    (garbage / "deals.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(WrongFileError, match="Parquet"):
        do_import(garbage, tmp_path)
    with pytest.raises(WrongFileError, match="Maven"):
        do_import(make_export(tmp_path / "x"), tmp_path, fmt="maven")


def test_unknown_files_are_reported_and_underscore_folders_skipped(tmp_path: Path) -> None:
    src = make_export(tmp_path / "x")
    (src / "notes.txt").write_text("hello", encoding="utf-8")
    (src / "_truth").mkdir()
    summary = do_import(src, tmp_path)
    assert any("notes.txt" in w for w in summary.warnings)
    assert not any("_truth" in w for w in summary.warnings)


def test_parquet_and_csv_give_the_same_warehouse(tmp_path: Path) -> None:
    import pandas as pd

    src = make_export(tmp_path / "csv")
    pq_dir = tmp_path / "pq"
    pq_dir.mkdir()
    for f in src.glob("*.csv"):
        pd.read_csv(f, dtype=str).to_parquet(pq_dir / f"{f.stem}.parquet")
    do_import(src, tmp_path / "a")
    do_import(pq_dir, tmp_path / "b")
    q = "SELECT * EXCLUDE (_row_hash) FROM deals ORDER BY deal_id"
    a = connect(tmp_path / "a" / "w.duckdb").execute(q).df()
    b = connect(tmp_path / "b" / "w.duckdb").execute(q).df()
    pd.testing.assert_frame_equal(a, b)


def test_an_error_while_writing_rolls_everything_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from salesml.importers import pipeline

    do_import(make_export(tmp_path / "x"), tmp_path)
    changed = [GOOD_DEALS[0].replace("1000", "7"), *GOOD_DEALS[1:]]

    def explode(*_args: object) -> int:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pipeline, "_placeholder_reps", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        do_import(make_export(tmp_path / "y", changed), tmp_path)
    con = connect(tmp_path / "w.duckdb")
    assert con.execute("SELECT amount FROM deals WHERE deal_id = 'D1'").fetchone() == (1000.0,)
    assert con.execute("SELECT count(*) FROM _imports").fetchone() == (1,)


def test_settings_refuse_a_home_that_is_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pydantic import ValidationError

    from salesml.settings import Settings

    home = tmp_path / "file"
    home.write_text("x", encoding="utf-8")
    monkeypatch.setenv("SALESML_HOME", str(home))
    with pytest.raises(ValidationError, match="point it at a folder"):
        Settings()


def test_column_names_differing_only_in_case_or_spaces_are_read_as_canonical(
    tmp_path: Path,
) -> None:
    """'Deal_ID ', 'STATUS', 'Created At' are deal_id, status, created_at (said in a
    warning), not custom attributes beside a 'missing' required column."""
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "deals.csv").write_text(
        "Deal_ID ,Created At,STATUS, closed_at ,Amount,amount\n"
        "H1,2024-01-01,won,2024-02-01,100,100\n",
        encoding="utf-8",
    )
    summary = run_import(read_export(folder, "canonical"), tmp_path / "w.duckdb", tmp_path / "r")
    assert summary.tables["deals"].imported == 1
    assert any("'Deal_ID ' as deal_id" in w for w in summary.warnings)
    assert any("'amount' is used" in w for w in summary.warnings)
    con = connect(tmp_path / "w.duckdb")
    row = con.execute("SELECT deal_id, status, CAST(closed_at AS DATE), amount FROM deals")
    assert [tuple(map(str, r)) for r in row.fetchall()] == [("H1", "won", "2024-02-01", "100.0")]
    con.close()

"""Absurd values never enter the warehouse: each is rejected with its field, value and fix."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from salesml.importers import read_export, run_import
from salesml.importers.validate import Limits
from salesml.warehouse import connect

NOW = datetime(2026, 12, 7, tzinfo=UTC)
HEADER = "deal_id,created_at,status,closed_at,amount,currency,owner_id,stage,product,Segment,Seats"


def _import(folder: Path, home: Path, limits: Limits | None = None) -> tuple[dict[str, str], int]:
    summary = run_import(
        read_export(folder, "canonical"),
        home / "w.duckdb",
        home / "rejects",
        limits=limits or Limits(now=NOW),
    )
    reasons: dict[str, str] = {}
    if summary.rejects_file is not None:
        with Path(summary.rejects_file).open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                line = f"{row['field']}: {row['reason']}"
                reasons[row["row"]] = reasons.get(row["row"], "") + line + " | "
    con = connect(home / "w.duckdb", read_only=True)
    try:
        row = con.execute("SELECT count(*) FROM deals").fetchone()
        assert row is not None
        return reasons, int(row[0])
    finally:
        con.close()


def _write_csv(folder: Path, rows: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "deals.csv").write_text("\n".join([HEADER, *rows]) + "\n", encoding="utf-8")
    return folder


def test_dates_centuries_away_and_infinite_amounts_are_rejected_with_a_reason(
    tmp_path: Path,
) -> None:
    folder = _write_csv(
        tmp_path / "export",
        [
            "D1,2025-01-05,won,2025-02-10,1000,USD,R1,Won,Pro,A,10",  # fine
            "D2,9999-12-31,open,,1000,USD,R1,Prospecting,Pro,A,10",  # far future
            "D3,2100-01-01,open,,1000,USD,R1,Prospecting,Pro,A,10",  # next century
            "D4,1850-03-01,won,1850-04-01,1000,USD,R1,Won,Pro,A,10",  # before 1900
            "D5,2025-01-05,open,,1e400,USD,R1,Prospecting,Pro,A,10",  # infinite
            "D6,2025-01-05,open,,5e15,USD,R1,Prospecting,Pro,A,10",  # above the ceiling
            "D7,2025-01-05,open,,nan,USD,R1,Prospecting,Pro,A,10",  # not a number
            "D8,2025-01-05,open,,100,USD,R1,Prospecting,Pro,A,inf",  # numeric attribute
            "D9,2026-12-01,open,,100,USD,R1,Prospecting,Pro,A,3",  # recent: fine
        ],
    )
    reasons, kept = _import(folder, tmp_path / "home")
    assert kept == 2  # D1 and D9
    assert "created_at" in reasons["3"] and "not a plausible date" in reasons["3"]
    assert "SALESML_IMPORT_MAX_FUTURE_DAYS" in reasons["3"]
    assert "created_at" in reasons["4"]
    assert "created_at" in reasons["5"] or "closed_at" in reasons["5"]
    assert "amount" in reasons["6"] and "finite" in reasons["6"]
    assert "amount" in reasons["7"] and "ceiling" in reasons["7"]
    assert "amount" in reasons["8"] and "finite" in reasons["8"]
    assert "ceiling" not in reasons["8"]  # one reason per broken rule: NaN is not "too large"
    assert "seats" in reasons["9"] and "finite" in reasons["9"]


def test_the_bounds_are_configurable(tmp_path: Path) -> None:
    folder = _write_csv(
        tmp_path / "export",
        [
            "D1,2025-01-05,open,,5e15,USD,R1,Prospecting,Pro,A,10",
            "D2,1850-03-01,open,,10,USD,R1,Prospecting,Pro,A,10",
        ],
    )
    reasons, kept = _import(
        folder, tmp_path / "home", Limits(now=NOW, max_amount=1e16, min_year=1800)
    )
    assert kept == 2, reasons


def test_control_characters_in_ids_and_oversized_text_are_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    table = pa.table(
        {
            "deal_id": ["D1", "D\x002", "D3", "D4", "D5", "D\u202e6", "D\x857"],
            "created_at": ["2025-01-05"] * 7,
            "status": ["open"] * 7,
            "amount": ["10"] * 7,
            "owner_id": ["R1", "R1", "R1", "R\x07", "R1", "R1", "R1"],
            "product": ["Pro", "Pro", "x" * 20_000, "Pro", "Line one\nline two\twith tab"]
            + ["Pro"] * 2,
        }
    )
    pq.write_table(table, folder / "deals.parquet")
    reasons, kept = _import(folder, tmp_path / "home")
    assert kept == 2  # D1, and D5 whose text has only a line break and a tab
    by_field = {reason.split(":")[0] for reason in reasons.values()}
    # D6 holds a right-to-left override (it displays as another id), D7 a C1 control
    assert set(reasons) == {"2", "3", "4", "6", "7"}, reasons
    assert by_field == {"deal_id", "product", "owner_id"}, reasons
    long_reason = next(r for r in reasons.values() if r.startswith("product"))
    assert "20,000 characters" not in long_reason or "at most 10,000" in long_reason
    assert "at most 10,000" in long_reason


def test_a_rejected_value_is_shown_cut_short_but_the_whole_row_is_kept(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    pq.write_table(
        pa.table(
            {
                "deal_id": ["D1"],
                "created_at": ["2025-01-05"],
                "status": ["open"],
                "product": ["y" * 50_000],
            }
        ),
        folder / "deals.parquet",
    )
    summary = run_import(
        read_export(folder, "canonical"),
        tmp_path / "w.duckdb",
        tmp_path / "rej",
        limits=Limits(now=NOW),
    )
    assert summary.rejects_file is not None
    with Path(summary.rejects_file).open(encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert len(row["value"]) < 300
    assert "y" * 50_000 in row["record"]


def test_lines_with_the_wrong_number_of_fields_are_rejected_and_the_rest_imported(
    tmp_path: Path,
) -> None:
    """A ragged line is not a row: it goes to the rejects file with its line number (and the
    line as it is), every other row is imported, and later rows keep their own line numbers."""
    folder = _write_csv(
        tmp_path / "export",
        [
            "D1,2025-01-05,won,2025-02-10,1000,USD,R1,Won,Pro,A,10",
            "D2,2025-01-05,open,,1000,USD,R1,Prospecting,Pro,A,10,extra,fields",  # line 3
            "D3,2025-01-05,open,,1000,USD,R1,Prospecting",  # line 4: too few
            "D4,2025-01-05,open,,1000,USD,R1,Prospecting,Pro,A,10",
            "D5,2099-01-05,open,,1000,USD,R1,Prospecting,Pro,A,10",  # line 6: far future
        ],
    )
    summary = run_import(
        read_export(folder, "canonical"),
        tmp_path / "w.duckdb",
        tmp_path / "rej",
        limits=Limits(now=NOW),
    )
    assert summary.rejects_file is not None and summary.unreadable_lines == 2
    with Path(summary.rejects_file).open(encoding="utf-8") as fh:
        rows = {row["row"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {"3", "4", "6"}, rows
    assert "13 fields, the header has 11" in rows["3"]["reason"]
    assert rows["3"]["record"].startswith("D2,2025-01-05")
    assert rows["6"]["field"] == "created_at"  # the line count continues past skipped lines
    assert summary.tables["deals"].imported == 2
    assert any("2 line(s)" in w and "not rows" in w for w in summary.warnings)

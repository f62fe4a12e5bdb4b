"""Rejects name the SOURCE line of a row, also after a quoted value spanning lines or a blank
line (Arrow counts records, an editor counts lines): every CSV importer reads through
``read_tabular`` + ``with_source_rows``, so one fix serves them all."""

from __future__ import annotations

import csv
from pathlib import Path

from typer.testing import CliRunner

from salesml.cli import app
from salesml.importers.base import (
    SOURCE_ROW,
    collecting_unparsed,
    read_tabular,
    with_source_rows,
)

SPANNING = (
    "deal_id,created_at,status,amount,note\n"  # line 1
    'D1,2026-01-02,open,100,"one\n'  # line 2
    'two, with comma"\n'  # line 3
    "D2,2026-01-03,open,abc,\n"  # line 4
    "D3,2026-01-04,open,5,x,extra\n"  # line 5: too many fields
    "\n"  # line 6: blank
    'D4,2026-01-05,open,7,"a\n\nb"\n'  # lines 7-9
    "D5,2026-01-06,open,9,\n"  # line 10
)


def test_rows_keep_their_source_lines_after_values_spanning_lines(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text(SPANNING)
    with collecting_unparsed() as unparsed:
        data = with_source_rows(read_tabular(path))
    lines = dict(
        zip(data.column("deal_id").to_pylist(), data.column(SOURCE_ROW).to_pylist(), strict=True)
    )
    assert lines == {"D1": 2, "D2": 4, "D4": 7, "D5": 10}
    assert [u.line for u in unparsed] == [5]


def test_one_line_records_are_numbered_as_before(tmp_path: Path) -> None:
    path = tmp_path / "deals.csv"
    path.write_text("deal_id,amount\nD1,1\nD2,2,3\nD3,3\n")
    with collecting_unparsed() as unparsed:
        data = with_source_rows(read_tabular(path))
    assert data.column(SOURCE_ROW).to_pylist() == [2, 4]
    assert [u.line for u in unparsed] == [3]


ZOHO = (
    "Record Id,Deal Owner,Deal Owner.id,Deal Name,Amount,Closing Date,Account Name,Stage,"
    "Created Time,Description,Currency\n"
    'z1,Ann,u1,Pilot,100,2026-12-28,Acme,Qualification,2026-09-14 14:22:00,"Multi-line\n'
    'description, with comma",USD\n'
    "z2,Ann,u1,Bad amount,abc,2027-01-10,Acme,Qualification,2026-09-09 09:09:09,,USD\n"
    "z1,Ann,u1,Pilot DUP,100,2026-12-28,Acme,Negotiation/Review,2026-09-14 14:22:00,,USD\n"
)


def test_zoho_rejects_name_the_source_lines(tmp_path: Path) -> None:
    folder = tmp_path / "zoho"
    folder.mkdir()
    (folder / "Deals_2026.csv").write_text(ZOHO)
    env = {"SALESML_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(app, ["import", str(folder), "--format", "zoho"], env=env)
    assert result.exit_code in (0, 1), result.output
    (rejects,) = (tmp_path / "home" / "rejects").glob("*.csv")
    with rejects.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_field = {(r["field"], r["row"]) for r in rows}
    assert ("amount", "4") in by_field  # 'abc' is on line 4, the 3rd record
    duplicate = next(r for r in rows if r["field"] == "deal_id")
    assert "lines 2, 5" in duplicate["reason"]

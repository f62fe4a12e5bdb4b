"""A custom column of numbers with a stray text cell is read as categories, and said."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from salesml.importers import read_export
from salesml.importers.pipeline import run_import
from salesml.importers.validate import Limits


def import_deals(tmp_path: Path, seats: list[str]) -> list[str]:
    folder = tmp_path / "crm"
    folder.mkdir()
    lines = ["deal_id,created_at,status,amount,seats"]
    lines += [f"D{i},2026-01-0{i + 1},open,100,{s}" for i, s in enumerate(seats)]
    (folder / "deals.csv").write_text("\n".join(lines) + "\n")
    summary = run_import(
        read_export(folder, "canonical"),
        tmp_path / "warehouse.duckdb",
        tmp_path / "rejects",
        limits=Limits(datetime(2026, 6, 1)),
    )
    return summary.warnings


def test_a_text_cell_in_a_numeric_column_is_warned_about(tmp_path: Path) -> None:
    warnings = import_deals(tmp_path, ["10", "5", "many", "12", "8"])
    (warning,) = [w for w in warnings if "custom attribute seats" in w]
    assert "4 of 5 values are numbers" in warning and "'many'" in warning
    assert "categories" in warning and "mapping" in warning


def test_a_text_column_is_not_warned_about(tmp_path: Path) -> None:
    warnings = import_deals(tmp_path, ["gold", "silver", "10", "bronze", "gold"])
    assert not [w for w in warnings if "custom attribute seats" in w]

"""Rejects give the advice that fits the value: an Excel serial date is named as one (with the
date it would be), a decimal comma names the separator and ``--decimal ,``; no format but
``mapping`` is told to write a mapping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app
from salesml.errors import ConfigError
from salesml.importers import read_export
from tests.importing import import_twice

DEALS = (
    "deal_id,created_at,status,closed_at,amount,owner_id\n"
    "D1,2023-10-02,won,2023-11-20,1000,R1\n"
    "D2,45231,open,,500,R1\n"  # an Excel serial date (2023-11-01)
    "D3,2023-10-05,open,,12.345,67,R1\n".replace("12.345,67", '"12.345,67"')
    + 'D4,2023-10-06,open,,"1234,5",R1\nD5,2023-10-07,open,,€ 2.000,50,R1\n'.replace(
        "€ 2.000,50", '"€ 2.000,50"'
    )
    + "D6,2023-10-08,open,,abc,R1\n"
    "D7,03/10/2023,open,,10,R1\n"
)


def _export(tmp_path: Path) -> Path:
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "deals.csv").write_text(DEALS, encoding="utf-8")
    return folder


def test_serial_dates_and_decimal_commas_get_their_own_advice(tmp_path: Path) -> None:
    folder = _export(tmp_path)
    imported = next(import_twice(lambda: read_export(folder, "canonical"), tmp_path))
    reasons = imported.reasons()
    serial = reasons[("deals", "3", "created_at")]
    assert "Excel serial date" in serial and "2023-11-01" in serial
    for row in ("4", "5", "6"):
        comma = reasons[("deals", row, "amount")]
        assert "',' as the decimal separator" in comma and "--decimal ," in comma, comma
    assert "--decimal" not in reasons[("deals", "7", "amount")]
    assert "1234.50" in reasons[("deals", "7", "amount")]
    assert "Excel" not in reasons[("deals", "8", "created_at")]
    for (_, row, _), reason in reasons.items():
        assert "mapping" not in reason or "--format mapping" in reason, (row, reason)


def test_decimal_comma_option_reads_the_amounts(tmp_path: Path) -> None:
    folder = _export(tmp_path)
    env = {"SALESML_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(app, ["import", str(folder), "--decimal", ",", "--json"], env=env)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # D1 (1000), D3, D4, D5 are read; the serial date, 'abc' and 03/10/2023 stay rejected
    assert (summary["deals"]["imported"], summary["deals"]["rejected"]) == (4, 3)
    imported = next(
        import_twice(lambda: read_export(folder, "canonical", decimal=","), tmp_path / "again")
    )
    amounts = dict(imported.query("SELECT deal_id, amount FROM deals"))
    assert amounts == {"D1": 1000.0, "D3": 12345.67, "D4": 1234.5, "D5": 2000.5}


def test_decimal_option_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'\.' or ','"):
        read_export(_export(tmp_path), "canonical", decimal=";")
    with pytest.raises(ConfigError, match="in the mapping file"):
        read_export(tmp_path, "mapping", tmp_path / "m.yaml", decimal=",")


POINT_AMOUNTS = (
    "deal_id,created_at,status,closed_at,amount,owner_id\n"
    'P1,2023-10-02,won,2023-11-20,"1.234,50",R1\n'
    "P2,2023-10-03,won,2023-11-20,1.234,R1\n"  # thousands: 1234
    "P3,2023-10-04,won,2023-11-20,1234.5,R1\n"  # a decimal point, not a thousands group
    "P4,2023-10-05,won,2023-11-20,12.34,R1\n"
    'P5,2023-10-06,won,2023-11-20,"$12,500.00",R1\n'
    "P6,2023-10-07,won,2023-11-20,1 234 567,R1\n"
)


@pytest.mark.parametrize("fmt", ["canonical", "mapping"])
def test_decimal_comma_rejects_a_number_it_would_misread(tmp_path: Path, fmt: str) -> None:
    """Read with a decimal comma, '1234.5' would be 12345 and '$12,500.00' 12.5: such values
    are rejected with the reason, never stored ten or a thousand times off."""
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "deals.csv").write_text(POINT_AMOUNTS, encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        'decimal: ","\ntables:\n  deals:\n    file: deals.csv\n    columns:\n'
        + "".join(
            f"      {c}: {c}\n"
            for c in ("deal_id", "created_at", "status", "closed_at", "amount", "owner_id")
        ),
        encoding="utf-8",
    )
    imported = next(
        import_twice(
            lambda: (
                read_export(folder, "mapping", mapping)
                if fmt == "mapping"
                else read_export(folder, "canonical", decimal=",")
            ),
            tmp_path,
        )
    )
    amounts = dict(imported.query("SELECT deal_id, amount FROM deals"))
    assert amounts == {"P1": 1234.5, "P2": 1234.0, "P6": 1234567.0}
    reasons = imported.reasons()
    for row, value in (("4", "1234.5"), ("5", "12.34"), ("6", "$12,500.00")):
        reason = reasons[("deals", row, "amount")]
        assert value in reason and "would be misread" in reason, reason
    assert {r["value"] for r in imported.rejects()} == {"1234.5", "12.34", "$12,500.00"}


@pytest.mark.parametrize("doc", ["importers.md", "mapping.md"])
def test_docs_say_a_decimal_comma_rejects_what_it_would_misread(doc: str) -> None:
    """The values the test above sees rejected are the ones the docs name as rejected."""
    text = (Path(__file__).parents[1] / "docs" / doc).read_text(encoding="utf-8")
    flat = " ".join(text.split())
    said = re.search(r"rejected, not re-read: `1234\.5`, `12\.34` or `\$12,500\.00`", flat)
    assert said, f"docs/{doc} does not say which values a decimal comma rejects"
    assert 'decimal: ","' in flat and "--decimal ," in flat

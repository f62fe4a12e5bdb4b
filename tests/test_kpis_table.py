"""The human KPI table shows what the JSON holds: lead-to-customer conversion by source too."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app


def test_lead_conversion_by_source_is_in_the_human_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    export = tmp_path / "export"
    export.mkdir()
    (export / "deals.csv").write_text(
        "deal_id,created_at,status,closed_at,amount,owner_id\n"
        "D1,2025-01-05,won,2025-02-10,1000,R1\n"
        "D2,2025-01-06,lost,2025-02-11,500,R1\n",
        encoding="utf-8",
    )
    (export / "leads.csv").write_text(
        "lead_id,created_at,source,owner_id,converted_at,deal_id\n"
        "L1,2025-01-01,webinar,R1,2025-01-05,D1\n"
        "L2,2025-01-02,webinar,R1,2025-01-06,D2\n"
        "L3,2025-01-03,referral,R1,,\n"
        "L4,2025-01-03,webinar,R1,,\n",
        encoding="utf-8",
    )
    runner = CliRunner()
    assert runner.invoke(app, ["import", str(export)]).exit_code == 0
    result = runner.invoke(app, ["kpis"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "lead-to-customer conversion by source" in result.stdout
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "33.3%" in lines["webinar"]  # 1 customer of 3 webinar leads
    assert "25.0%" in lines["all sources"]  # 1 of 4 leads

"""One definition of the data's as-of: its latest event in any table, never after now."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from features.history import load_history
from salesml.cli import app
from salesml.importers import read_export, run_import
from salesml.warehouse import connect, data_span


def _workspace(tmp_path: Path) -> Path:
    export = tmp_path / "export"
    export.mkdir()
    (export / "deals.csv").write_text(
        "deal_id,created_at,status,closed_at,amount,owner_id\n"
        "D1,2025-01-05,won,2025-02-10,1000,R1\n"
        "D2,2025-03-06,open,,500,R1\n",
        encoding="utf-8",
    )
    (export / "activities.csv").write_text(
        "deal_id,occurred_at,type,owner_id\nD2,2025-04-20T10:00:00,call,R1\n", encoding="utf-8"
    )
    home = tmp_path / "home"
    run_import(read_export(export, "canonical"), home / "warehouse.duckdb", home / "rejects")
    return home


def test_the_latest_event_in_any_table_is_the_data_as_of(tmp_path: Path) -> None:
    con = connect(_workspace(tmp_path) / "warehouse.duckdb", read_only=True)
    try:
        span = data_span(con)
        assert span.start == datetime(2025, 1, 5)
        assert span.end == datetime(2025, 4, 20, 10)  # the activity, later than any deal date
        assert load_history(con).exported_at == span.end
        capped = data_span(con, now=datetime(2025, 4, 1, tzinfo=UTC))
        assert capped.end == datetime(2025, 4, 1)  # never after now
    finally:
        con.close()


def test_as_of_outside_the_data_is_flagged() -> None:
    from salesml.warehouse import DataSpan

    span = DataSpan(datetime(2025, 1, 5), datetime(2025, 4, 20))
    assert span.warnings(datetime(2025, 4, 20, 18)) == []
    (late,) = span.warnings(datetime(2026, 1, 1))
    assert "after the data's latest event (2025-04-20)" in late
    (early,) = span.warnings(datetime(2024, 1, 1))
    assert "before the data's first event (2025-01-05)" in early


def test_kpis_default_to_the_data_as_of_and_warn_past_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = _workspace(tmp_path)
    monkeypatch.setenv("SALESML_HOME", str(home))
    runner = CliRunner()
    result = runner.invoke(app, ["kpis", "--json"])
    assert result.exit_code == 0, result.output
    assert '"as_of": "2025-04-20T10:00:00"' in result.stdout
    late = runner.invoke(app, ["kpis", "--as-of", "2030-01-01"])
    assert late.exit_code == 0, late.output
    assert "after the data's latest event" in late.stderr


def test_a_read_only_connection_waits_for_a_writer_in_the_same_process(tmp_path: Path) -> None:
    """The server's event fold holds a read-write connection for a short transaction while
    its loader opens the warehouse read-only: the loader waits instead of failing (DuckDB
    refuses the two configurations at once within a process)."""
    import threading

    path = tmp_path / "w.duckdb"
    writer = connect(path)
    threading.Timer(0.3, writer.close).start()
    reader = connect(path, read_only=True, wait_seconds=10)
    assert reader.execute("SELECT count(*) FROM deals").fetchone() == (0,)
    reader.close()

"""The CLI: --help everywhere, --json output, one-line reasons and non-zero exits on failure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("SALESML_HOME", str(tmp_path / "home"))
    return CliRunner()


@pytest.mark.parametrize("command", [[], ["import"], ["synth"], ["kpis"]])
def test_every_command_has_help(runner: CliRunner, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_import_json_summary_counts_add_up(runner: CliRunner, maven_dir: Path) -> None:
    result = runner.invoke(app, ["import", str(maven_dir), "--format", "maven", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    for table in ("deals", "reps", "accounts", "products"):
        counts = summary[table]
        assert set(counts) >= {"imported", "updated", "unchanged", "rejected"}
        assert (
            sum(counts[k] for k in ("imported", "updated", "unchanged", "rejected"))
            == (counts["input"])
        )
    assert summary["deals"]["imported"] == 8800


def test_missing_path_fails_with_one_line_reason(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", str(tmp_path / "nope"), "--format", "canonical"])
    assert result.exit_code == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "does not exist" in lines[0]
    assert "Traceback" not in result.output


def test_wrong_format_for_the_files_says_what_was_expected(
    runner: CliRunner, maven_dir: Path
) -> None:
    result = runner.invoke(app, ["import", str(maven_dir), "--format", "salesforce"])
    assert result.exit_code == 1
    assert "Opportunity" in result.stderr


def test_mapping_format_without_mapping_file_is_refused(runner: CliRunner, maven_dir: Path) -> None:
    result = runner.invoke(app, ["import", str(maven_dir), "--format", "mapping"])
    assert result.exit_code == 1
    assert "--mapping" in result.stderr


def test_kpis_without_a_warehouse_says_to_import_first(runner: CliRunner) -> None:
    result = runner.invoke(app, ["kpis", "--json"])
    assert result.exit_code == 1
    assert "salesml import" in result.stderr


def test_synth_import_kpis_end_to_end(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(
        app,
        [
            "synth",
            "--deals",
            "400",
            "--seed",
            "3",
            "--out",
            str(out),
            "--end-date",
            "2026-06-30",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"]["deals"] == 400
    result = runner.invoke(app, ["import", str(out), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["deals"]["imported"] == 400
    result = runner.invoke(app, ["kpis", "--by", "team", "--period", "quarter", "--json"])
    assert result.exit_code == 0, result.output
    kpis = json.loads(result.stdout)
    for name in (
        "revenue",
        "revenue_growth",
        "win_rate",
        "average_order_value",
        "median_cycle_days",
        "cac",
        "nps",
        "open_pipeline",
        "pipeline_coverage",
    ):
        assert name in kpis["overall"]
    assert kpis["groups"]
    result = runner.invoke(app, ["kpis", "--by", "team"])
    assert result.exit_code == 0, result.output
    assert "win rate" in result.stdout


def test_bad_settings_fail_with_a_one_line_reason(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "a-file"
    home.write_text("x", encoding="utf-8")
    monkeypatch.setenv("SALESML_HOME", str(home))
    result = runner.invoke(app, ["kpis"])
    assert result.exit_code == 1
    assert "invalid setting" in result.stderr
    assert "point it at a folder" in result.stderr


def test_train_flags_a_timing_model_that_loses_to_the_stage_median(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Maven's timing model missed by 117 days against the stage median's 27, and train said
    nothing of it: it warns now, as the report's model health does."""
    from training.cli import _flag_timing

    _flag_timing({"mae_days": 116.6}, {"mae_days": 27.2})
    assert "misses by 117 days" in capsys.readouterr().err.replace("\n", " ")
    _flag_timing({"mae_days": 20.0}, {"mae_days": 27.2})
    assert "warning" not in capsys.readouterr().err


def test_kpis_table_prints_the_warnings_its_json_carries(runner: CliRunner, tmp_path: Path) -> None:
    """Deals in two currencies: the JSON warns that they were summed unconverted, and so must
    the human table (on stderr), not only the JSON."""
    csv = tmp_path / "deals.csv"
    csv.write_text(
        "deal_id,created_at,status,closed_at,amount,currency\n"
        "D1,2024-01-02,won,2024-02-01,1000,USD\n"
        "D2,2024-01-03,won,2024-02-02,900,EUR\n"
        "D3,2024-01-04,won,2024-02-03,800,USD\n"
    )
    result = runner.invoke(app, ["import", str(csv), "--json"])
    assert result.exit_code == 0, result.output
    warnings = json.loads(runner.invoke(app, ["kpis", "--json"]).stdout)["warnings"]
    assert any("2 currencies" in w for w in warnings)
    result = runner.invoke(app, ["kpis"])
    assert result.exit_code == 0, result.output
    assert "2 currencies" in result.stderr

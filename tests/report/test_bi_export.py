"""``salesml export``: the star schema written for Power BI / Tableau matches docs/bi.md, column
by column and type by type, in Parquet and in CSV, and its keys join."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from salesml.cli import app
from serving.bi_schema import render_markdown_tables
from tests.conftest import REPO_ROOT
from tests.report.conftest import ReportWorkspace

DOC = REPO_ROOT / "docs" / "bi.md"
# The documented type names, read independently of the code that writes the files.
DOC_TYPES = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us"),
}
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([a-z0-9]+)\s*\|")


def documented() -> dict[str, list[tuple[str, pa.DataType]]]:
    """Table → [(column, type)] from docs/bi.md's schema section."""
    tables: dict[str, list[tuple[str, pa.DataType]]] = {}
    current: str | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
            tables[current] = []
            continue
        match = ROW.match(line)
        if current is not None and match:
            tables[current].append((match.group(1), DOC_TYPES[match.group(2)]))
    return tables


def export(ws: ReportWorkspace, out: Path, fmt: str) -> dict[str, Any]:
    env = {
        "SALESML_HOME": str(ws.home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{ws.root / 'mlflow.db'}",
    }
    targets = ["deals", "scores", "kpis", "forecast"]
    result = CliRunner().invoke(
        app, ["export", *targets, "--out", str(out), "--format", fmt, "--json"], env=env
    )
    assert result.exit_code == 0, result.output
    summary: dict[str, Any] = json.loads(result.stdout)
    return summary


@pytest.fixture(scope="module")
def exports(
    report_workspace: ReportWorkspace, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[Path, dict[str, Any]]]:
    out: dict[str, tuple[Path, dict[str, Any]]] = {}
    for fmt in ("parquet", "csv"):
        folder = tmp_path_factory.mktemp(f"bi_{fmt}")
        out[fmt] = (folder, export(report_workspace, folder, fmt))
    return out


def test_docs_schema_section_is_the_declared_schema() -> None:
    assert render_markdown_tables() in DOC.read_text(encoding="utf-8")


def test_parquet_files_have_the_documented_columns_and_types(
    exports: dict[str, tuple[Path, dict[str, Any]]],
) -> None:
    folder, summary = exports["parquet"]
    tables = documented()
    assert set(summary["rows"]) == set(tables) == {p.stem for p in folder.glob("*.parquet")}
    for table, columns in tables.items():
        schema = pq.read_schema(folder / f"{table}.parquet")
        assert [(f.name, f.type) for f in schema] == columns, table


def test_csv_files_have_the_documented_columns_and_read_as_the_documented_types(
    exports: dict[str, tuple[Path, dict[str, Any]]],
) -> None:
    folder, summary = exports["csv"]
    parquet_folder, _ = exports["parquet"]
    for table, columns in documented().items():
        path = folder / f"{table}.csv"
        header = path.read_text(encoding="utf-8").splitlines()[0]
        assert header == ",".join(f'"{name}"' for name, _ in columns), table
        types = dict(columns)
        data = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=True),
        )
        assert data.num_rows == summary["rows"][table]
        # Same values as the Parquet file (empty CSV text reads back as null).
        same = pq.read_table(parquet_folder / f"{table}.parquet")
        for name, kind in columns:
            if kind == pa.string():
                continue
            assert data.column(name).to_pylist() == same.column(name).to_pylist(), (table, name)


def test_the_star_joins(exports: dict[str, tuple[Path, dict[str, Any]]]) -> None:
    folder, summary = exports["parquet"]

    def read(name: str) -> pa.Table:
        return pq.read_table(folder / f"{name}.parquet")

    dates = set(read("dim_date").column("date_key").to_pylist())
    deals = read("dim_deal")
    scores = read("fact_deal_scores")
    kpis = read("fact_kpis")
    forecast = read("fact_forecast")
    assert len(set(deals.column("deal_key").to_pylist())) == deals.num_rows > 0
    assert set(scores.column("deal_key").to_pylist()) <= set(deals.column("deal_key").to_pylist())
    assert set(read("dim_rep").column("rep_key").to_pylist()) >= {
        r for r in scores.column("rep_key").to_pylist() if r is not None
    }
    for table, columns in (
        (deals, ("created_date_key", "closed_date_key", "expected_close_date_key")),
        (scores, ("as_of_date_key", "expected_close_date_key")),
        (kpis, ("as_of_date_key", "period_start_date_key")),
        (forecast, ("as_of_date_key", "period_start_date_key")),
        (read("dim_rep"), ("hired_date_key",)),  # reps hired before the first deal too
    ):
        for column in columns:
            keys = {k for k in table.column(column).to_pylist() if k is not None}
            assert keys <= dates, column
    assert set(kpis.column("grouping").to_pylist()) == {"overall", "team", "rep"}
    assert "total" in forecast.column("segment").to_pylist()
    assert set(forecast.column("segment_by").to_pylist()) == {"total", "team"}
    probabilities = scores.column("win_probability").to_pylist()
    assert all(0.0 <= p <= 1.0 for p in probabilities)
    assert any(scores.column("top_driver").to_pylist())  # the win model explains its scores
    assert summary["rows"]["fact_deal_scores"] == scores.num_rows > 0


def test_an_export_that_cannot_build_a_target_writes_nothing(tmp_path: Path) -> None:
    """No score run yet: ``export deals scores`` names what to run first and leaves the folder
    as it was — not the dimensions written and the facts missing."""
    csv = tmp_path / "deals.csv"
    csv.write_text(
        "deal_id,created_at,status,closed_at,amount\n"
        "D1,2024-01-02,won,2024-02-01,1000\n"
        "D2,2024-01-03,open,,900\n"
    )
    env = {"SALESML_HOME": str(tmp_path / "home")}
    assert CliRunner().invoke(app, ["import", str(csv)], env=env).exit_code == 0
    out = tmp_path / "bi"
    result = CliRunner().invoke(app, ["export", "deals", "scores", "--out", str(out)], env=env)
    assert result.exit_code == 1
    assert "salesml score --all" in result.stderr
    assert not out.exists() or not any(out.iterdir())
    result = CliRunner().invoke(app, ["export", "deals", "--out", str(out)], env=env)
    assert result.exit_code == 0, result.output
    assert (out / "dim_deal.parquet").exists()

"""``salesml export`` on a small import: every key of fact_kpis, dim_deal and dim_rep finds its
dimension row (``Unassigned`` included), and CSV text cannot run as a spreadsheet formula."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from salesml.cli import app
from serving.bi_export import defuse_formulas

DEALS = (
    "deal_id,name,created_at,status,closed_at,amount,owner_id,team\n"
    "D1,Acme,2024-01-02,won,2024-02-01,1000,R1,East\n"
    'D2,"=HYPERLINK(""http://evil"";""x"")",2024-01-03,won,2024-02-11,900,R2,\n'
    "D3,@SUM(A1),2024-01-05,lost,2024-02-20,500,,\n"
    "D4,-5% deal,2024-02-05,open,,700,R1,\n"
)
REPS = "owner_id,name,team\nR1,Ann,East\nR2,Bob,\n"


@pytest.fixture(scope="module")
def star(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bi_keys")
    crm = root / "crm"
    crm.mkdir()
    (crm / "deals.csv").write_text(DEALS)
    (crm / "reps.csv").write_text(REPS)
    env = {"SALESML_HOME": str(root / "home")}
    runner = CliRunner()
    imported = runner.invoke(app, ["import", str(crm)], env=env)
    assert imported.exit_code == 0, imported.output
    out = {}
    for fmt in ("parquet", "csv"):
        folder = root / fmt
        args = ["export", "deals", "kpis", "--out", str(folder), "--format", fmt]
        result = runner.invoke(app, [*args, "--as-of", "2024-03-01"], env=env)
        assert result.exit_code == 0, result.output
        out[fmt] = folder
    return out


def test_every_kpi_and_deal_key_has_its_dimension_row(star: dict[str, Path]) -> None:
    def read(name: str) -> pa.Table:
        return pq.read_table(star["parquet"] / f"{name}.parquet")

    reps = set(read("dim_rep").column("rep_key").to_pylist())
    teams = set(read("dim_team").column("team_key").to_pylist())
    kpis = read("fact_kpis").to_pylist()
    deals = read("dim_deal").to_pylist()
    by_rep = {r["group_key"] for r in kpis if r["grouping"] == "rep"}
    by_team = {r["group_key"] for r in kpis if r["grouping"] == "team"}
    assert "Unassigned" in by_rep and "Unassigned" in by_team  # D3: no owner; D2: no team
    assert by_rep <= reps and by_team <= teams
    # fact_kpis relates to each dimension through its own column (one column, one table)
    assert {r["rep_key"] for r in kpis if r["grouping"] == "rep"} == by_rep
    assert {r["team_key"] for r in kpis if r["grouping"] == "team"} == by_team
    assert all(r["rep_key"] is None for r in kpis if r["grouping"] != "rep")
    assert all(r["team_key"] is None for r in kpis if r["grouping"] != "team")
    # the same deals carry the same keys in dim_deal as in fact_kpis's grouping
    keys = {d["deal_key"]: (d["rep_key"], d["team_key"]) for d in deals}
    assert keys == {
        "D1": ("R1", "East"),
        "D2": ("R2", "Unassigned"),
        "D3": ("Unassigned", "Unassigned"),
        "D4": ("R1", "East"),
    }
    assert {d["team_key"] for d in read("dim_rep").to_pylist()} <= teams


def test_csv_text_cells_cannot_run_as_formulas(star: dict[str, Path]) -> None:
    data = pacsv.read_csv(star["csv"] / "dim_deal.csv")
    keys, texts = data.column("deal_key").to_pylist(), data.column("deal_name").to_pylist()
    names = dict(zip(keys, texts, strict=True))
    assert names["D1"] == "Acme"
    assert names["D2"] == '\'=HYPERLINK("http://evil";"x")'
    assert names["D3"] == "'@SUM(A1)" and names["D4"] == "'-5% deal"
    # Parquet keeps the CRM's text as it is (typed columns are not run by a spreadsheet)
    parquet = pq.read_table(star["parquet"] / "dim_deal.parquet").column("deal_name").to_pylist()
    assert '=HYPERLINK("http://evil";"x")' in parquet


def test_every_formula_start_is_defused_and_nothing_else() -> None:
    cells = ["=1+1", "+1", "-1", "@x", "\tx", "\rx", "a=b", "", None, "1-2"]
    table = pa.table({"t": pa.array(cells, pa.string()), "n": pa.array(range(10))})
    out = defuse_formulas(table)
    assert out.column("t").to_pylist() == [
        "'=1+1",
        "'+1",
        "'-1",
        "'@x",
        "'\tx",
        "'\rx",
        "a=b",
        "",
        None,
        "1-2",
    ]
    assert out.column("n").to_pylist() == list(range(10))


def test_a_score_row_without_rep_or_team_takes_the_deals_keys() -> None:
    """fact_deal_scores agrees with dim_deal: a score run without the team (a deal whose team
    is its owner's) takes dim_deal's; with none anywhere, ``Unassigned``."""
    import pandas as pd

    from serving.bi_export import fact_deal_scores

    scores = pd.DataFrame(
        {
            "deal_id": ["a", "b", "c"],
            "owner_id": ["R1", None, ""],
            "team": [None, "T", None],
            "as_of": pd.Timestamp("2024-01-01"),
            "model_version": "1",
            "win_probability": [0.1, 0.2, 0.3],
            "score": [10, 20, 30],
        }
    )
    keys = pd.DataFrame(
        {"rep_key": ["R1", "R9", "Unassigned"], "team_key": ["East", "T", "Unassigned"]},
        index=pd.Index(["a", "b", "c"], name="deal_key"),
    )
    fact = fact_deal_scores(scores, "r1", keys)
    assert fact["rep_key"].tolist() == ["R1", "R9", "Unassigned"]
    assert fact["team_key"].tolist() == ["East", "T", "Unassigned"]

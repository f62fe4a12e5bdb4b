"""End to end on the Maven export (shared/data/maven-crm): the report's open pipeline, stage
breakdown and headline agree with ``salesml kpis`` and with what is already won.

Maven's open deals have no amount (the KPI engine counts their product's list price) and no
stage history (the deals table has Engaging / Prospecting). The report is built without a win
model and with a forecast bundle that forecasts nothing beyond what is won (no series, no
pipeline weight): the headline then shows exactly the won revenue, and never less."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from features.history import History, load_history
from salesml.importers import read_export, run_import
from salesml.kpis import compute_kpis
from salesml.models.registry import LoadedForecast
from salesml.models.revenue.bundle import ForecastBundle, FreqModel
from salesml.warehouse import connect
from serving.report import Report, render_report
from serving.report import format as fmt

REPO_ROOT = Path(__file__).resolve().parents[2]
MAVEN = REPO_ROOT.parent / "shared" / "data" / "maven-crm"
pytestmark = pytest.mark.skipif(not MAVEN.exists(), reason="shared/data/maven-crm not present")
FLAT = {"lower_95": -0.5, "lower_80": -0.3, "upper_80": 0.3, "upper_95": 0.5}


@pytest.fixture(scope="module")
def maven(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[History, Any]]:
    home = tmp_path_factory.mktemp("maven-story")
    run_import(read_export(MAVEN, "maven"), home / "w.duckdb", home / "rejects")
    con = connect(home / "w.duckdb", read_only=True)
    yield load_history(con), con
    con.close()


def nothing_more(freq: str) -> FreqModel:
    """A model that adds nothing to what is won (weights: pipeline 0, series 0)."""
    return FreqModel(freq, {}, [[0.0, 0.0]], {"total": [FLAT], "segment": [FLAT]}, {})


@pytest.fixture(scope="module")
def report(maven: tuple[History, duckdb.DuckDBPyConnection]) -> Report:
    history, con = maven
    bundle = ForecastBundle({f: nothing_more(f) for f in ("month", "quarter")})
    return render_report(history, con, None, LoadedForecast(bundle, "0", "test"))


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', html, re.S)
    assert match, section_id
    return match.group(0)


def test_open_pipeline_is_the_kpis_open_pipeline(
    maven: tuple[History, duckdb.DuckDBPyConnection], report: Report
) -> None:
    kpis = compute_kpis(maven[1], by="team", period="quarter")["overall"]
    assert kpis["open_pipeline_deals"] == 2089
    assert kpis["open_pipeline"] == kpis["open_pipeline_estimated"] > 4_900_000  # all estimated
    coverage = section(report.html, "coverage")
    total = fmt.money_short(kpis["open_pipeline"])
    assert (
        f'<div class="card-label">Open pipeline</div><div class="card-value">{total}<' in coverage
    )
    assert f"{total} open, of which {total} estimated from list prices" in coverage
    assert "2,089 open deals" in coverage
    assert fmt.ratio(kpis["pipeline_coverage"]) in coverage


def test_stages_are_the_deals_table_stages(
    maven: tuple[History, duckdb.DuckDBPyConnection], report: Report
) -> None:
    con = maven[1]
    rows = con.execute(
        "SELECT d.stage, count(*), sum(p.list_price) FROM deals d "
        "LEFT JOIN products p ON d.product = p.product WHERE d.status = 'open' GROUP BY 1"
    ).fetchall()
    assert {r[0] for r in rows} == {"Engaging", "Prospecting"}
    stages = section(report.html, "stages")
    assert "(no stage)" not in stages
    for stage, n, amount in rows:
        assert (
            f'<td>{stage}</td><td class="num">{n:,}</td><td class="num">{fmt.money(amount)}<'
            in (stages)
        )
    kpis = compute_kpis(con, period="quarter")["overall"]
    assert f'<td class="num">{fmt.money(kpis["open_pipeline"])}</td>' in stages


def test_the_headline_is_never_below_what_is_won(
    maven: tuple[History, duckdb.DuckDBPyConnection], report: Report
) -> None:
    """December's and Q4's won revenue include the deals closed on 31 Dec (the as-of moment),
    which the forecast used to leave out: $1.10M forecast against $1.13M won."""
    history, con = maven
    deals = history.deals
    won = deals[(deals["status"] == "won") & (deals["closed_at"] <= history.exported_at)]
    quarter = compute_kpis(con, period="quarter")["overall"]["periods"][-1]
    for freq, start in (("month", "2017-12-01"), ("quarter", "2017-10-01")):
        in_period = float(won.loc[won["closed_at"] >= pd.Timestamp(start), "amount"].sum())
        entry = report.headline[freq]
        assert entry["won_so_far"] == pytest.approx(in_period)
        for bound in ("forecast", "lower_80", "lower_95"):
            assert entry[bound] >= in_period - 0.005, (freq, bound)
    assert report.headline["quarter"]["won_so_far"] == pytest.approx(quarter["revenue"])
    head = section(report.html, "headline")
    assert f"won so far {fmt.money_short(1_131_573)}" in head  # December, the 19 of 31 Dec too

"""The report's sections on a small trained workspace: contents, team filter, empty states,
what changed between two score runs, targets and the CLI."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from features.build import build_features
from salesml.cli import app
from salesml.kpis.pipeline import pipeline_values
from salesml.models.revenue.periods import period_start
from salesml.warehouse import connect
from serving.forecast import forecast_rows
from serving.report import Report, ScoreSet, parse_targets, render_report
from serving.report import format as fmt
from serving.report.data import decode_rows
from serving.report.sections import SECTIONS
from tests.report.conftest import ReportWorkspace

CHARTS = (
    "chart-forecast",
    "chart-coverage",
    "chart-stages",
    "chart-risk",
    "chart-changes",
    "chart-kpis",
    "chart-calibration",
)


@pytest.fixture(scope="module")
def con(report_workspace: ReportWorkspace) -> Iterator[duckdb.DuckDBPyConnection]:
    connection = connect(report_workspace.warehouse, read_only=True)
    yield connection
    connection.close()


@pytest.fixture(scope="module")
def full(report_workspace: ReportWorkspace, con: duckdb.DuckDBPyConnection) -> Report:
    ws = report_workspace
    month = period_start(ws.history.exported_at, "month").strftime("%Y-%m")
    targets = parse_targets(f"period,team,target\n{month},,1000000\n")
    return render_report(ws.history, con, ws.win, ws.forecast, targets=targets, store=ws.store)


def section_html(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', html, re.S)
    assert match, f"section {section_id} missing"
    return match.group(0)


def test_every_section_and_chart_is_there(full: Report) -> None:
    for section_id, title in SECTIONS:
        assert title in section_html(full.html, section_id)
    for chart in CHARTS:
        assert f'id="{chart}"' in full.html
    assert full.html.count("Plotly.newPlot(") == len(CHARTS)
    assert 'class="empty-state"' not in full.html


def test_the_page_is_self_contained(full: Report) -> None:
    from plotly.offline import get_plotlyjs

    bundle = get_plotlyjs()
    assert full.html.count(bundle[:200]) == 1  # plotly.js inlined once
    outside = full.html.replace(bundle, "")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", outside, re.I)
    assert not re.search(r"url\(\s*['\"]?https?:", outside, re.I)
    assert "@media print" in full.html


def test_headline_shows_the_forecast_against_the_target(
    full: Report, report_workspace: ReportWorkspace
) -> None:
    ws = report_workspace
    rows = forecast_rows(ws.history, ws.win, ws.forecast.bundle, "month", 3, ws.history.exported_at)
    month = rows[rows["period_start"] == period_start(ws.history.exported_at, "month")].iloc[0]
    head = section_html(full.html, "headline")
    assert fmt.money_short(month["forecast"]) in head
    assert (
        f"80% range {fmt.money_short(month['lower_80'])} – {fmt.money_short(month['upper_80'])}"
        in head
    )
    assert f"forecast {fmt.pct(month['forecast'] / 1_000_000)} of it" in head
    assert "target $1.00M" in head
    assert "no quarterly series" in head  # the test bundle forecasts months only
    assert "first report" in head
    assert full.headline["month"]["forecast"] == pytest.approx(month["forecast"])
    assert full.headline["month"]["target"] == 1_000_000
    assert "quarter" not in full.headline


def test_change_since_the_last_report(
    report_workspace: ReportWorkspace, con: duckdb.DuckDBPyConnection, full: Report
) -> None:
    ws = report_workspace
    previous = {
        "as_of": "2026-03-23T00:00:00",
        "month": {**full.headline["month"], "forecast": full.headline["month"]["forecast"] - 5000},
    }
    again = render_report(ws.history, con, ws.win, ws.forecast, previous=previous, store=ws.store)
    head = section_html(again.html, "headline")
    assert "<b>+$5.00k</b> since the last report (23 Mar 2026)" in head


def test_deals_at_risk_are_the_largest_expected_losses(
    full: Report, report_workspace: ReportWorkspace
) -> None:
    ws = report_workspace
    scores = decode_rows(ws.store.read(ws.store.info("r1")))  # type: ignore[arg-type]
    features = build_features(ws.history, ws.history.exported_at)
    deals = ws.history.deals[ws.history.deals["deal_id"].isin(features.index)]
    amount = pipeline_values(deals, ws.history.products, features)["amount"]  # list price fills
    scores["amount"] = scores["deal_id"].map(amount)
    scores["loss"] = scores["amount"] * (1 - scores["win_probability"])
    expected = scores.nlargest(10, "loss")["deal_id"].tolist()
    risk = section_html(full.html, "risk")
    shown = re.findall(r"<td><b>(D\d+)</b>", risk)
    assert shown == expected
    top = scores.set_index("deal_id").loc[expected[0]]
    first_action = next(a for a in top["actions"])["action"]
    assert fmt.esc(first_action) in risk


def test_what_changed_between_the_two_score_runs(
    full: Report, report_workspace: ReportWorkspace
) -> None:
    ws = report_workspace
    before = ws.store.read(ws.store.info("r0"))  # type: ignore[arg-type]
    after = ws.store.read(ws.store.info("r1"))  # type: ignore[arg-type]
    new = set(after["deal_id"]) - set(before["deal_id"])
    gone = ws.history.deals[
        ws.history.deals["deal_id"].isin(set(before["deal_id"]) - set(after["deal_id"]))
    ]
    changes = section_html(full.html, "changes")
    assert "score run r0" in changes and "score run r1" in changes
    assert re.search(rf'New deals</div><div class="card-value">{len(new):,}<', changes)
    won = int((gone["status"] == "won").sum())
    assert re.search(rf'Won</div><div class="card-value">{won:,}<', changes)
    assert won > 0 and len(new) > 0


def test_a_single_run_has_nothing_to_compare(
    report_workspace: ReportWorkspace, con: duckdb.DuckDBPyConnection
) -> None:
    ws = report_workspace
    current = decode_rows(ws.store.read(ws.store.info("r1")))  # type: ignore[arg-type]
    only = ScoreSet(current, "score run r1")
    report = render_report(ws.history, con, ws.win, None, scores=only)
    changes = section_html(report.html, "changes")
    assert "No previous run to compare with" in changes
    head = section_html(report.html, "headline")
    assert "no revenue-forecast model registered" in head
    assert 'id="chart-forecast"' in report.html  # actuals are still drawn


def test_team_filter(report_workspace: ReportWorkspace, con: duckdb.DuckDBPyConnection) -> None:
    ws = report_workspace
    team = ws.teams[0]
    report = render_report(ws.history, con, ws.win, ws.forecast, team=team, store=ws.store)
    assert f"Sales forecast — {team}" in report.html
    deals = ws.history.deals.set_index("deal_id")
    shown = re.findall(r"<td><b>(D\d+)</b>", section_html(report.html, "risk"))
    assert shown and all(deals.loc[d, "team"] == team for d in shown)
    others = [t for t in ws.teams if t != team]
    kpis = section_html(report.html, "kpis")
    assert f"<td>{team}</td>" in kpis
    assert all(f"<td>{t}</td>" not in kpis for t in others)
    assert report.headline["team"] == team
    rows = forecast_rows(
        ws.history, ws.win, ws.forecast.bundle, "month", 3, ws.history.exported_at, "team"
    )
    mine = rows[(rows["segment"] == team) & (rows["period_start"] == rows["period_start"].min())]
    assert report.headline["month"]["forecast"] == pytest.approx(mine["forecast"].iloc[0])


def test_an_unknown_team_gets_empty_states(
    report_workspace: ReportWorkspace, con: duckdb.DuckDBPyConnection
) -> None:
    ws = report_workspace
    report = render_report(ws.history, con, ws.win, ws.forecast, team="Nowhere", store=ws.store)
    for section_id, _ in SECTIONS:
        body = section_html(report.html, section_id)
        assert "empty-state" in body
        assert "No deals for team <b>Nowhere</b>" in body
    assert "Plotly.newPlot(" not in report.html
    assert all(t in report.html for t in ws.teams)


def test_cli_writes_the_report_and_remembers_the_headline(
    report_workspace: ReportWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESML_HOME", str(report_workspace.home))
    monkeypatch.chdir(report_workspace.root)
    out = tmp_path / "weekly" / "report.html"
    runner = CliRunner()
    first = runner.invoke(app, ["report", "--out", str(out), "--json"])
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["scores"].startswith("score run r1")
    assert summary["previous_scores"].startswith("score run r0")
    assert out.is_file() and (tmp_path / "weekly" / "report.headline.json").is_file()
    assert "first report" in out.read_text(encoding="utf-8")
    second = runner.invoke(app, ["report", "--out", str(out)])
    assert second.exit_code == 0, second.output
    assert "since the last report" in out.read_text(encoding="utf-8")


def test_cli_bad_inputs_never_crash(
    report_workspace: ReportWorkspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SALESML_HOME", str(report_workspace.home))
    monkeypatch.chdir(report_workspace.root)
    bad = tmp_path / "targets.csv"
    bad.write_text("period,team,goal\n2026-03,,5\n", encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        app, ["report", "--targets", str(bad), "--out", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "missing column 'target'" in lines[0]
    assert not (tmp_path / "r.html").exists()
    unknown = runner.invoke(
        app,
        ["report", "--team", "Nowhere", "--as-of", "2026-03-30", "--out", str(tmp_path / "n.html")],
    )
    assert unknown.exit_code == 0, unknown.output
    assert "no deals for team 'Nowhere'" in unknown.output
    assert 'class="empty-state"' in (tmp_path / "n.html").read_text(encoding="utf-8")

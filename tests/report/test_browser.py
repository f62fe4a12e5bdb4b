"""The report in a real browser: headless Chromium renders every section and chart, logs no
console error, and leaves a screenshot in test-artifacts/ (Debian package ``chromium``)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest

from salesml.warehouse import connect
from serving.report import render_report
from serving.report.sections import SECTIONS
from tests.report.conftest import ReportWorkspace
from tests.report.test_report import CHARTS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="headless Chromium is not installed (apt-get install -y chromium; the Makefile "
    "installs it for CI)",
)
FLAGS = [
    "--headless=new",
    "--disable-gpu",
    "--no-sandbox",
    "--no-first-run",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,2400",
    "--virtual-time-budget=15000",
    "--enable-logging=stderr",
    "--v=0",
]
CONSOLE = re.compile(r"CONSOLE\(\d+\)\]?\s*\"?(.*)", re.I)


def chromium(page: Path, *args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def console_errors(stderr: str) -> list[str]:
    """Lines Chromium logs for console messages and uncaught errors of the page."""
    out = []
    for line in stderr.splitlines():
        page_error = ":ERROR:" in line and ("file://" in line or "net::" in line)
        if "CONSOLE" in line or "Uncaught" in line or page_error:
            out.append(line)
    return out


@pytest.fixture(scope="module")
def report_file(
    report_workspace: ReportWorkspace, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    ws = report_workspace
    con: duckdb.DuckDBPyConnection = connect(ws.warehouse, read_only=True)
    try:
        html = render_report(ws.history, con, ws.win, ws.forecast, store=ws.store).html
    finally:
        con.close()
    path = tmp_path_factory.mktemp("browser") / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_report_renders_in_chromium(report_file: Path, artifacts: Path, tmp_path: Path) -> None:
    dumped = chromium(report_file, "--dump-dom", profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    dom = dumped.stdout
    assert console_errors(dumped.stderr) == []
    for section_id, title in SECTIONS:
        assert re.search(rf'<section id="{section_id}"[^>]*>\s*<h2>{re.escape(title)}', dom), (
            section_id
        )
    for chart in CHARTS:
        match = re.search(rf'<div id="{chart}"[^>]*>(.*?)</figure>', dom, re.S)
        assert match, f"{chart} missing from the rendered page"
        # Plotly draws into .main-svg elements; a chart that failed leaves an empty div.
        assert 'class="main-svg"' in match.group(1), f"{chart} was not drawn"
        assert re.search(r'class="(trace|bars|scatterlayer)', match.group(1)), chart
    shot = artifacts / "report.png"
    shot.unlink(missing_ok=True)
    taken = chromium(report_file, f"--screenshot={shot}", profile=tmp_path / "profile-shot")
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert console_errors(taken.stderr) == []
    assert shot.is_file() and shot.stat().st_size > 10_000
    (artifacts / "report.html").write_text(
        report_file.read_text(encoding="utf-8"), encoding="utf-8"
    )


def test_console_errors_are_caught(tmp_path: Path) -> None:
    """The check above can fail: a page that throws is reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><script>undefinedFunction();</script></body></html>",
        encoding="utf-8",
    )
    result = chromium(page, "--dump-dom", profile=tmp_path / "profile")
    assert result.returncode == 0
    assert any("undefinedFunction" in line for line in console_errors(result.stderr))

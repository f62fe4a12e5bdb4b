"""Google Analytics 4: sessions and key events by source / medium into web_sessions and
marketing_spend, so conversion and CAC by channel include web traffic."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from salesml.cli import app
from salesml.errors import MissingColumnsError, WrongFileError
from salesml.importers import read_export
from salesml.kpis import compute_kpis
from salesml.warehouse import connect
from tests.importing import Imported, import_twice

GA4 = Path(__file__).parent / "fixtures" / "ga4" / "ga4_traffic_acquisition_2024q2.csv"
DEALS = [
    # deal_id, created_at, status, closed_at, amount, account_id, lead_source
    ("D1", "2024-03-20", "won", "2024-04-20", "12000", "A1", "google / cpc"),
    ("D2", "2024-03-25", "won", "2024-05-02", "8000", "A2", "google / cpc"),
    ("D3", "2024-04-02", "won", "2024-05-20", "5000", "A3", "linkedin / paid_social"),
    ("D4", "2024-04-03", "lost", "2024-05-01", "", "A4", "google / organic"),
    ("D5", "2024-04-10", "won", "2024-05-25", "7000", "A5", "google / organic"),
    ("D6", "2024-05-01", "open", "", "9000", "A6", "google / cpc"),
    ("D7", "2024-06-20", "won", "2024-06-30", "3000", "A7", "partner"),
]


def write_deals(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "deals.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["deal_id", "created_at", "status", "closed_at", "amount", "account_id", "lead_source"]
        )
        writer.writerows(DEALS)
    return folder


@pytest.fixture(scope="module")
def ga4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    home = tmp_path_factory.mktemp("ga4")
    deals = write_deals(home / "crm")
    from salesml.importers import run_import

    run_import(read_export(deals, "canonical"), home / "w.duckdb", home / "rejects")
    yield from import_twice(lambda: read_export(GA4, "ga4"), home)


def test_every_ga4_line_is_a_row_or_a_reject(ga4: Imported) -> None:
    sessions = ga4.first.tables["web_sessions"]
    # 23 lines: 9 comment lines, the header, 12 channel-days and the grand total.
    # A line is imported whole or not at all: 18 (negative sessions), 20 (no such date) and
    # 21 (cost "n/a") are rejected in both tables.
    assert (sessions.input, sessions.imported, sessions.rejected) == (12, 9, 3)
    spend = ga4.first.tables["marketing_spend"]
    assert (spend.input, spend.imported, spend.rejected) == (6, 3, 3)
    reasons = ga4.reasons()
    assert "negative" in reasons[("web_sessions", "18", "sessions")]
    assert "2024-05-32" in reasons[("web_sessions", "20", "period")]
    assert "n/a" in reasons[("marketing_spend", "21", "amount")]
    assert any("total line(s) 23" in w for w in ga4.first.warnings)
    for name, c in ga4.second.tables.items():
        assert (c.imported, c.updated) == (0, 0), name


def test_ga4_dates_channels_and_costs(ga4: Imported) -> None:
    rows = ga4.query(
        "SELECT period, sessions, key_events FROM web_sessions WHERE channel = 'google / cpc' "
        "ORDER BY period"
    )
    assert [(str(p), s, k) for p, s, k in rows] == [
        ("2024-04-01", 1240, 18),
        ("2024-05-01", 1310, 21),
    ]  # 2024-06-01's line is rejected: its cost "n/a"
    spend = dict(ga4.query("SELECT channel, sum(amount) FROM marketing_spend GROUP BY 1"))
    # Organic and direct traffic cost nothing in ads: no spend rows rather than a spend of 0.
    # linkedin's 380.00 of 2024-05-01 came on a line whose sessions were rejected: not counted.
    assert spend == {"google / cpc": 940.5 + 1012.75, "linkedin / paid_social": 420.0}


def test_kpis_show_conversion_and_cac_by_web_channel(ga4: Imported) -> None:
    from datetime import datetime

    overall = compute_kpis(ga4.con, as_of=datetime(2024, 6, 30))["overall"]
    web = {row["channel"]: row for row in overall["web_traffic"]}
    cpc = web["google / cpc"]
    assert (cpc["sessions"], cpc["key_events"], cpc["new_customers"]) == (2550, 39, 2)
    assert cpc["cac"] == round((940.5 + 1012.75) / 2, 2)
    assert cpc["session_to_customer_rate"] == round(2 / 2550, 4)
    assert web["linkedin / paid_social"]["cac"] == 420.0
    organic = web["google / organic"]
    assert organic["new_customers"] == 1 and organic["marketing_spend"] is None
    assert organic["cac"] is None  # no ad spend is not a CAC of 0
    assert overall["cac_by_channel"]["google / cpc"] == cpc["cac"]


def test_unmatched_channel_names_make_web_customers_unknown(tmp_path: Path) -> None:
    folder = tmp_path / "crm"
    write_deals(folder)
    text = (folder / "deals.csv").read_text(encoding="utf-8")
    (folder / "deals.csv").write_text(text.replace(" / ", " via "), encoding="utf-8")
    env = {"SALESML_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    for path, fmt in ((folder, "canonical"), (GA4, "ga4")):
        result = runner.invoke(app, ["import", str(path), "--format", fmt, "--json"], env=env)
        assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["kpis", "--json", "--as-of", "2024-06-30"], env=env)
    assert result.exit_code == 0, result.output
    kpis = json.loads(result.stdout)
    rows = kpis["overall"]["web_traffic"]
    assert rows and all(r["new_customers"] is None for r in rows)
    assert all(r["session_to_customer_rate"] is None for r in rows)
    assert any("web-analytics channel" in w for w in kpis["warnings"])
    shown = runner.invoke(app, ["kpis", "--as-of", "2024-06-30"], env=env)
    assert "web traffic by channel" in shown.output


def test_a_download_without_sessions_names_what_is_missing(tmp_path: Path) -> None:
    file = tmp_path / "ga4.csv"
    file.write_text("# Start date: 20240101\nSession source / medium,Users\ng / cpc,3\n")
    with pytest.raises(MissingColumnsError) as err:
        read_export(file, "ga4")
    assert "Sessions" in str(err.value) and "Key events" in str(err.value)


def test_without_a_date_column_lines_take_the_report_start_date(tmp_path: Path) -> None:
    file = tmp_path / "ga4.csv"
    file.write_text(
        "# Start date: 20240101\n# End date: 20240131\nSession source / medium,Sessions\n"
        "google / cpc,120\n"
    )
    batch = read_export(file, "ga4")
    assert batch.tables[0].data.column("period").to_pylist() == ["20240101"]
    assert any("start date 20240101" in w for w in batch.warnings)


def test_web_sessions_after_the_last_deal_event_move_the_default_as_of(tmp_path: Path) -> None:
    """GA4 days are events: a plain ``salesml kpis`` (the data's as-of) shows web traffic
    recorded after the last deal event, not an as-of that leaves it out."""
    folder = tmp_path / "crm"
    folder.mkdir()
    (folder / "deals.csv").write_text(
        "deal_id,created_at,status,closed_at,amount,lead_source\n"
        "D1,2024-01-05,won,2024-02-20,1000,google / cpc\n"
        "D2,2024-01-09,open,,500,google / cpc\n",
        encoding="utf-8",
    )
    env = {"SALESML_HOME": str(tmp_path / "home")}
    runner = CliRunner()
    for path, fmt in ((folder, "canonical"), (GA4, "ga4")):
        result = runner.invoke(app, ["import", str(path), "--format", fmt, "--json"], env=env)
        assert result.exit_code == 0, result.output
    kpis = json.loads(runner.invoke(app, ["kpis", "--json"], env=env).stdout)
    assert kpis["as_of"] > "2024-06-01"  # the latest GA4 day, not the deals' 2024-02-20
    assert kpis["overall"]["web_traffic"]


def test_a_rejected_line_rejects_everything_it_carries(ga4: Imported) -> None:
    """A line whose sessions are rejected brings in no spend (and one whose cost is rejected
    no sessions); the rejects file names the field that rejected the line."""
    rejects = {(r["table"], r["row"], r["field"]): r for r in ga4.rejects()}
    spend = rejects[("marketing_spend", "18", "line")]
    assert "web_sessions.sessions" in spend["reason"] and "380.00" in spend["record"]
    sessions = rejects[("web_sessions", "21", "line")]
    assert "marketing_spend.amount" in sessions["reason"] and "1280" in sessions["record"]
    # line 20 was rejected in both tables on its own (the date): no extra 'line' reject
    assert ("marketing_spend", "20", "line") not in rejects
    assert ("marketing_spend", "20", "period") in rejects
    lines = {(str(p), c) for p, c in ga4.query("SELECT period, channel FROM web_sessions")}
    spent = set(ga4.query("SELECT CAST(period AS VARCHAR), channel FROM marketing_spend"))
    assert spent <= lines  # no spend without its accepted traffic row


TWINS = """\
# Traffic acquisition: Session source / medium
# Start date: 20241101
# End date: 20241130
Session source / medium,Date,Sessions,Key events,Ads cost
linkedin / paid,20241115,50,2,120.00
newsletter / email,20241116,30,1,10.00
x / display,20241117,5,0,7.00
bing / cpc,20241118,40,3,60.00
bing / cpc,20241118,41,3,60.00
duck / cpc,20241119,9,1,4.00
duck / cpc,20241119,9,1,4.00
linkedin / paid,20241115,-4,0,99.00
newsletter / email,20241116,abc,0,20.00
x / display,20241117,6,0,n/a
"""


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    """Valid lines with a twin (same day and channel) rejected for one field each: a
    negative count (line 12), text in a number (13), an unreadable cost (14); plus two
    valid lines that truly conflict (8, 9) and an exact duplicate (10, 11)."""
    home = tmp_path_factory.mktemp("ga4twins")
    write_deals(home / "crm")
    from salesml.importers import run_import

    run_import(read_export(home / "crm", "canonical"), home / "w.duckdb", home / "rejects")
    file = home / "twins.csv"
    file.write_text(TWINS, encoding="utf-8")
    yield from import_twice(lambda: read_export(file, "ga4"), home)


@pytest.mark.parametrize(
    ("line", "table", "field", "channel"),
    [
        ("12", "web_sessions", "sessions", "linkedin / paid"),  # out of range
        ("13", "web_sessions", "sessions", "newsletter / email"),  # not a number
        ("14", "marketing_spend", "amount", "x / display"),  # the cost, not the sessions
    ],
)
def test_a_rejected_line_never_takes_its_valid_twin_down(
    twins: Imported, line: str, table: str, field: str, channel: str
) -> None:
    """Whatever field rejected a line, it takes no part in duplicate detection: its valid
    twin (same day and channel) is imported whole, sessions and spend."""
    reasons = twins.reasons()
    assert (table, line, field) in reasons
    other = "marketing_spend" if table == "web_sessions" else "web_sessions"
    assert (other, line, "line") in reasons  # the bad line is still rejected whole
    assert not any("appears on" in why for why in reasons.values() if channel in why)
    sessions = twins.query("SELECT count(*) FROM web_sessions WHERE channel = ?", [channel])
    spend = twins.query("SELECT count(*) FROM marketing_spend WHERE channel = ?", [channel])
    assert (sessions[0][0], spend[0][0]) == (1, 1)


def test_valid_lines_that_disagree_are_rejected_whole_and_exact_copies_counted(
    twins: Imported,
) -> None:
    reasons = twins.reasons()
    for line in ("8", "9"):
        assert "(lines 8, 9)" in reasons[("web_sessions", line, "period/channel")]
        # their spend is identical, but is not imported without its traffic
        assert "web_sessions.period/channel" in reasons[("marketing_spend", line, "line")]
    assert twins.query("SELECT count(*) FROM marketing_spend WHERE channel = 'bing / cpc'") == [
        (0,)
    ]
    sessions = twins.first.tables["web_sessions"]
    spend = twins.first.tables["marketing_spend"]
    # 10 lines: 4 imported (3 twins + one of the exact copies), 1 unchanged, 5 rejected
    assert (sessions.input, sessions.imported, sessions.unchanged, sessions.rejected) == (
        10,
        4,
        1,
        5,
    )
    assert (spend.input, spend.imported, spend.unchanged, spend.rejected) == (10, 4, 1, 5)


def test_a_zero_cost_in_any_locale_is_no_spend_row(tmp_path: Path) -> None:
    """'0,00' (a decimal-comma download) or '$0.00' cost nothing: no spend row — neither a
    rejected one that takes the line's sessions down, nor a known cost of zero."""
    file = tmp_path / "ga4.csv"
    file.write_text(
        "# Start date: 20241101\nSession source / medium,Date,Sessions,Ads cost\n"
        'google / organic,20241101,120,"0,00"\n(direct) / (none),20241101,80,$0.00\n'
        "google / cpc,20241101,40,12.50\n",
        encoding="utf-8",
    )
    sessions, spend = read_export(file, "ga4").tables
    assert sessions.data.num_rows == 3
    assert spend.data.column("amount").to_pylist() == ["12.50"]


def test_fractional_key_events_are_kept_and_summed_exactly(tmp_path: Path) -> None:
    """GA4 attributes a conversion in parts (0.5, 0.1): such key events are imported as they
    are and summed exactly (0.1 + 0.2 + 0.25 is 0.55, not 0.5499999…; whole totals stay whole),
    while negative, non-numeric and infinite ones reject their line, each with its reason (as
    infinite or huge sessions do, rather than failing the import). A
    warehouse made when key_events was a whole-number column takes fractions too, not rounded."""
    from datetime import datetime

    import duckdb

    home = tmp_path / "home"
    deals = write_deals(tmp_path / "crm")
    from salesml.importers import run_import

    home.mkdir()
    old = duckdb.connect(str(home / "w.duckdb"))  # the column as an earlier salesml made it
    old.execute(
        "CREATE TABLE web_sessions (period DATE, channel VARCHAR, sessions BIGINT, "
        "key_events BIGINT, _row_hash UBIGINT)"
    )
    old.close()
    run_import(read_export(deals, "canonical"), home / "w.duckdb", home / "rejects")
    file = tmp_path / "ga4.csv"
    file.write_text(
        "Session source / medium,Date,Sessions,Key events\n"
        "google / cpc,20240401,100,0.1\n"
        "google / cpc,20240402,100,0.2\n"
        "google / cpc,20240403,100,0.25\n"
        "google / organic,20240401,50,3\n"
        "google / organic,20240402,50,4\n"
        "bing / cpc,20240401,10,-0.5\n"
        "bing / cpc,20240402,10,lots\n"
        "bing / cpc,20240403,10,inf\n"
        "bing / cpc,20240404,10,1e309\n"
        "bing / cpc,20240405,inf,1\n"
        "bing / cpc,20240406,1e20,1\n"
        "bing / cpc,20240407,10,-inf\n",
        encoding="utf-8",
    )
    done = next(import_twice(lambda: read_export(file, "ga4"), home))
    assert done.query("SELECT key_events FROM web_sessions ORDER BY channel, period")[:3] == [
        (0.1,),
        (0.2,),
        (0.25,),
    ]
    reasons = done.reasons()
    assert "negative" in reasons[("web_sessions", "7", "key_events")]
    assert "lots" in reasons[("web_sessions", "8", "key_events")]
    for line in ("9", "10"):
        assert "not a finite number" in reasons[("web_sessions", line, "key_events")]
    minus_inf = reasons[("web_sessions", "13", "key_events")]  # one reason, not two
    assert "not a finite number" in minus_inf and "negative" not in minus_inf
    for line, value in (("11", "inf"), ("12", "1e20")):  # no whole number: unreadable
        assert f"could not read '{value}'" in reasons[("web_sessions", line, "sessions")]
    assert done.second.tables["web_sessions"].unchanged == 5
    overall = compute_kpis(done.con, as_of=datetime(2024, 6, 30))["overall"]
    web = {row["channel"]: row for row in overall["web_traffic"]}
    assert web["google / cpc"]["key_events"] == 0.55
    assert web["google / cpc"]["key_event_rate"] == round(0.55 / 300, 4)
    organic = web["google / organic"]["key_events"]
    assert organic == 7 and isinstance(organic, int)
    assert "bing / cpc" not in web


def test_a_repeated_column_is_refused_and_a_semicolon_download_is_read(tmp_path: Path) -> None:
    """Two "Sessions" columns would be read as one (the last, 999 sessions) without a word:
    the download is refused naming the column, as the other importers refuse it. A download
    re-saved by a European spreadsheet (``;``-separated, decimal commas) is read with its
    separator, and ``--decimal ,`` reads its numbers."""
    home = tmp_path / "home"
    deals = write_deals(tmp_path / "crm")
    from salesml.importers import run_import

    run_import(read_export(deals, "canonical"), home / "w.duckdb", home / "rejects")
    twice = tmp_path / "twice.csv"
    twice.write_text(
        "# Start date: 20240401\nSession source / medium,Date,Sessions,Key events,Sessions\n"
        "google / cpc,20240401,100,2,999\n",
        encoding="utf-8",
    )
    with pytest.raises(WrongFileError, match="Sessions appear twice"):
        read_export(twice, "ga4")
    semi = tmp_path / "semi.csv"
    semi.write_text(
        "# Start date: 20240401\nSession source / medium;Date;Sessions;Key events;Ads cost\n"
        "google / cpc;20240401;1.240;2,5;940,50\n",
        encoding="utf-8",
    )
    summary = run_import(read_export(semi, "ga4", decimal=","), home / "w.duckdb", home / "rej")
    assert summary.tables["web_sessions"].imported == 1
    con = connect(home / "w.duckdb", read_only=True)
    try:
        row = con.execute("SELECT channel, sessions, key_events FROM web_sessions").fetchone()
        spend = con.execute("SELECT amount FROM marketing_spend").fetchone()
    finally:
        con.close()
    assert row == ("google / cpc", 1240, 2.5) and spend == (940.5,)

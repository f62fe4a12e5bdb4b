"""Numbers for people, targets parsing and the stored headline (no models needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.report import format as fmt
from serving.report.headline import headline_path, read_last_headline, write_last_headline
from serving.report.targets import TargetsError, load_targets, parse_targets, target_for


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1234567.891, "$1,234,568"),
        (-2500, "−$2,500"),
        (12.5, "$12.50"),
        (0, "$0"),
        (None, "—"),
        (np.nan, "—"),
    ],
)
def test_money(value: object, expected: str) -> None:
    assert fmt.money(value) == expected


def test_money_other_currencies() -> None:
    assert fmt.money(1500, "EUR") == "€1,500"
    assert fmt.money(1500, "CHF") == "1,500 CHF"
    assert fmt.money_short(1_234_000, "GBP") == "£1.23M"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (950, "$950"),
        (45_600, "$45.6k"),
        (1_234_000, "$1.23M"),
        (987_000_000, "$987M"),
        (2.5e9, "$2.50B"),
        (-12_300, "−$12.3k"),
    ],
)
def test_money_short(value: float, expected: str) -> None:
    assert fmt.money_short(value) == expected


def test_percentages_points_and_changes() -> None:
    assert fmt.pct(0.634) == "63%"
    assert fmt.pct(0.634, 1) == "63.4%"
    assert fmt.signed_pct(0.123) == "+12.3%"
    assert fmt.signed_pct(-0.05) == "−5.0%"
    assert fmt.signed_pct(0) == "±0.0%"
    assert fmt.points(12.4) == "+12 pts"
    assert fmt.points(-3) == "−3 pts"
    assert fmt.signed_money(1200) == "+$1.20k"
    assert fmt.signed_money(-300) == "−$300"
    assert fmt.signed_money(pd.NA) == "—"


def test_days_dates_and_escaping() -> None:
    assert fmt.days(1) == "1 day"
    assert fmt.days(56.6) == "57 days"
    assert fmt.ratio(2.449) == "2.4×"
    assert fmt.date(pd.Timestamp("2026-03-31 17:00")) == "31 Mar 2026"
    assert fmt.period_label(pd.Timestamp("2026-04-01"), "quarter") == "Q2 2026"
    assert fmt.period_label(pd.Timestamp("2026-04-01"), "month") == "Apr 2026"
    assert fmt.date(pd.NaT) == "—"
    assert fmt.esc("<b>&") == "&lt;b&gt;&amp;"


def test_targets_parse_months_quarters_and_company_rows() -> None:
    text = (
        "period,team,target\n2026-03,West,100000\n2026-Q2,,250000.5\nQ3 2026,all,1e6\n"
        "2026-04-15,West,90\n\n"
    )
    rows = parse_targets(text)
    assert rows["freq"].tolist() == ["month", "quarter", "quarter", "month"]
    assert rows["period_start"].tolist() == [
        pd.Timestamp("2026-03-01"),
        pd.Timestamp("2026-04-01"),
        pd.Timestamp("2026-07-01"),
        pd.Timestamp("2026-04-01"),
    ]
    assert rows["team"].tolist() == ["West", "", "", "West"]
    assert target_for(rows, "month", pd.Timestamp("2026-03-01"), "West") == 100000
    assert target_for(rows, "quarter", pd.Timestamp("2026-04-01"), None) == 250000.5
    assert target_for(rows, "month", pd.Timestamp("2026-03-01"), None) is None
    assert target_for(None, "month", pd.Timestamp("2026-03-01"), None) is None


def test_a_quarter_without_its_row_adds_up_its_three_months() -> None:
    rows = parse_targets("period,team,target\n2026-01,,10\n2026-02,,20\n2026-03,,30\n")
    assert target_for(rows, "quarter", pd.Timestamp("2026-01-01"), None) == 60
    partial = parse_targets("period,team,target\n2026-01,,10\n2026-02,,20\n")
    assert target_for(partial, "quarter", pd.Timestamp("2026-01-01"), None) is None


@pytest.mark.parametrize(
    ("text", "column", "fragment"),
    [
        ("period,team\n2026-03,West\n", "target", "missing column 'target'"),
        ("month,team,target\n2026-03,West,1\n", "period", "missing column 'period'"),
        ("period,team,target\nMarch,West,1\n", "period", "line 2"),
        ("period,team,target\n2026-13,West,1\n", "period", "'2026-13'"),
        ("period,team,target\n2026-03,West,1\n2026-03,West,abc\n", "target", "line 3"),
        ("period,team,target\n2026-03,West,-5\n", "target", "≥ 0"),
        ("period,team,target\n2026-03,West,1\n2026-03,West,2\n", "period", "first on line 2"),
        ("", "period", "empty"),
    ],
)
def test_bad_targets_name_the_column(text: str, column: str, fragment: str) -> None:
    with pytest.raises(TargetsError) as info:
        parse_targets(text, "goals.csv")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("goals.csv")
    assert fragment in message
    if text:
        assert f"'{column}'" in message


def test_targets_without_a_team_column_are_company_targets(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("Period,Target\n2026-03,5\n", encoding="utf-8")
    rows = load_targets(path)
    assert target_for(rows, "month", pd.Timestamp("2026-03-01"), None) == 5
    with pytest.raises(TargetsError, match="not found"):
        load_targets(tmp_path / "missing.csv")


def test_headline_is_kept_per_team_next_to_the_report(tmp_path: Path) -> None:
    out = tmp_path / "weekly" / "report.html"
    assert read_last_headline(out, None) is None
    write_last_headline(out, None, {"as_of": "2026-03-30", "month": {"forecast": 1.0}})
    write_last_headline(out, "West", {"as_of": "2026-03-30", "month": {"forecast": 2.0}})
    assert headline_path(out) == tmp_path / "weekly" / "report.headline.json"
    assert read_last_headline(out, None) == {"as_of": "2026-03-30", "month": {"forecast": 1.0}}
    assert read_last_headline(out, "West")["month"]["forecast"] == 2.0  # type: ignore[index]
    assert read_last_headline(out, "East") is None
    headline_path(out).write_text("{not json", encoding="utf-8")
    assert read_last_headline(out, None) is None  # a broken file never breaks a report

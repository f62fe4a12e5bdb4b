"""Hostile CRM text cannot change the report's markup: every section renders team, rep, deal,
stage, product, account and custom-attribute names as escaped text, and the only scripts on the
page are plotly's. The report's ``Context`` is built by hand, so this runs in seconds."""

from __future__ import annotations

import csv
import dataclasses
import importlib
import io
from datetime import UTC, datetime
from html.parser import HTMLParser
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
from markupsafe import escape

from features.history import History
from serving.report import parse_targets
from serving.report.data import Context, ScoreSet
from serving.report.page import page
from serving.report.sections import SECTIONS, gather_sections
from tests.report.test_report import CHARTS

HOSTILE = "<script>alert(1)</script> \"quotes\" 'single' &amp; ampersands </td><td>"
TEAM = f"Team {HOSTILE}"
REP = f"Rep {HOSTILE}"
STAGE = f"Stage {HOSTILE}"
PRODUCT = f"Product {HOSTILE}"
ACCOUNT = f"Account {HOSTILE}"
ATTRIBUTE = f"attr_region {HOSTILE}"
NAMES = {
    "team": TEAM,
    "rep": REP,
    "deal": f"D1 {HOSTILE}",
    "stage": STAGE,
    "product": PRODUCT,
    "account": ACCOUNT,
    "attribute": ATTRIBUTE,
}
AS_OF = pd.Timestamp("2026-03-30")
SINCE = AS_OF - pd.Timedelta(days=28)
OWNER = "u1"
OPEN = [NAMES["deal"], f"D2 {HOSTILE}", f"D3 {HOSTILE}"]
WON, LOST = f"D4 {HOSTILE}", f"D5 {HOSTILE}"
DRIVERS = [
    {"concept": f"product {PRODUCT}", "contribution": -0.2, "text": f"{PRODUCT} rarely wins"},
    {"concept": f"account {ACCOUNT}", "contribution": -0.1, "text": f"{ACCOUNT} went quiet"},
    {"concept": ATTRIBUTE, "contribution": 0.05, "text": f"{ATTRIBUTE} helps"},
]
ACTIONS = [
    {
        "id": "no_recent_activity",
        "action": f"Call {ACCOUNT} about {PRODUCT}",
        "expected_impact": {"revenue": 1200.0, "win_probability_points": 4.0},
    }
]


class Page(HTMLParser):
    """The page's script tags and its visible text (what a reader sees)."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.scripts, self.text, self._in = 0, [], ""
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self.scripts += tag == "script"
            self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = ""

    def handle_data(self, data: str) -> None:
        if not self._in:
            self.text.append(data)


def _history() -> History:
    deals = pd.DataFrame(
        {
            "deal_id": [*OPEN, WON, LOST],
            "owner_id": OWNER,
            "team": TEAM,
            "status": ["open", "open", "open", "won", "lost"],
            "closed_at": [pd.NaT, pd.NaT, pd.NaT, AS_OF - pd.Timedelta(days=5), SINCE],
            "amount": [50_000.0, 40_000.0, 30_000.0, 20_000.0, 10_000.0],
        }
    )
    stage_history = pd.DataFrame(
        {
            "deal_id": [OPEN[0], OPEN[0]],
            "changed_at": [SINCE - pd.Timedelta(days=3), AS_OF - pd.Timedelta(days=2)],
            "expected_close_date": [pd.Timestamp("2026-04-10"), pd.Timestamp("2026-05-20")],
        }
    )
    reps = pd.DataFrame({"owner_id": [OWNER, "u2"], "name": [REP, "Plain"], "team": TEAM})
    empty = pd.DataFrame()
    return History(deals, stage_history, empty, reps, empty, empty, {}, AS_OF)


def _scores(p: list[float], ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "deal_id": ids,
            "win_probability": p,
            "model_version": "3",
            "drivers": [DRIVERS] * len(ids),
        }
    )


def _open_deals() -> pd.DataFrame:
    scores = _scores([0.2, 0.5, 0.7], OPEN)
    return scores.assign(
        owner_id=OWNER,
        stage=STAGE,
        amount=[50_000.0, 40_000.0, 30_000.0],
        days_in_stage=[12, 30, 45],
        team=TEAM,
        p_close_this_quarter=[0.1, 0.2, 0.3],
        expected_close_date=pd.Timestamp("2026-05-20"),
        actions=[ACTIONS] * 3,
    )


def _win() -> Any:
    actions = {
        "coaching_product": {f"{OWNER}|{PRODUCT}": {"rate": 0.1, "team_rate": 0.4, "deals": 20}},
        "coaching_stage": {f"{OWNER}|{STAGE}": {"rate": 0.2, "team_rate": 0.5, "deals": 15}},
        "capacity": {TEAM: {"low": 0, "median": 1, "high": 1}},
        "process": {"stage": STAGE, "before": 0.5, "recent": 0.3},
    }
    bundle = SimpleNamespace(
        explainer={"stage_order": [STAGE], "actions": actions},
        metadata={"little_signal": True, "trained_to": "2025-10-01"},
    )
    return SimpleNamespace(version="3", alias="champion", timing=object(), bundle=bundle)


def _forecast() -> tuple[Any, pd.DataFrame]:
    backtest = {"blend": {"wape_total": 0.3}, "seasonal_naive": {"wape_total": 0.2}}
    bundle = SimpleNamespace(metadata={"backtest": {"month": backtest}, "trained_to": "2026-03-01"})
    starts = pd.date_range("2026-03-01", periods=3, freq="MS")
    rows = pd.DataFrame({"period_start": starts, "forecast": [90_000.0, 80_000.0, 70_000.0]})
    for name, factor in (
        ("lower_80", 0.8),
        ("upper_80", 1.2),
        ("lower_95", 0.7),
        ("upper_95", 1.3),
    ):
        rows[name] = rows["forecast"] * factor
    return SimpleNamespace(version="2", bundle=bundle), rows


def _kpis() -> tuple[dict[str, Any], dict[str, Any]]:
    block = {"revenue": 20_000.0, "win_rate": 0.5, "pipeline_coverage": 2.0, "cac": 900.0}
    periods = [{"period_start": "2025-10-01", "complete": True, "revenue": 1.0, "win_rate": 0.5}]
    team = {"overall": block, "groups": [{"group": TEAM, **block, "periods": periods}]}
    rep = {"groups": [{"group": OWNER, **block, "periods": periods}]}
    return team, rep


def _targets() -> pd.DataFrame:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerows([["period", "team", "target"], ["2026-03", TEAM, "100000"]])
    writer.writerows([["2026-Q1", TEAM, "300000"], ["2026-03", "", "100000"]])
    return parse_targets(out.getvalue())


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> Context:
    """A context where every CRM name carries HTML; the registry and the calibration re-scoring
    are replaced by fixed figures (no MLflow, no model)."""
    health = importlib.import_module("serving.report.sections.health")  # the module, not
    # the function the package exports under the same name

    sample = pd.DataFrame({"p": [0.1, 0.9] * 20, "won": [0.0, 1.0] * 20})
    metrics = {"holdout_auc": 0.8, "baseline_base_rate_auc": 0.5, "timing_coverage_80": 0.8}
    monkeypatch.setattr(health, "calibration_sample", lambda *a: (sample, "40 snapshots"))
    monkeypatch.setattr(health, "registry_metrics", lambda win: metrics)
    history = _history()
    forecast, rows = _forecast()
    by_team, by_rep = _kpis()
    return Context(
        as_of=AS_OF,
        generated_at=datetime(2026, 3, 30, 9, 0, tzinfo=UTC),
        team=None,
        teams=[TEAM],
        currency="USD",
        history=history,
        teams_of_deals=pd.Series(TEAM, index=history.deals["deal_id"]),
        open_deals=_open_deals(),
        scores=ScoreSet(
            _scores([0.2, 0.5, 0.7], OPEN),
            "score run r1",
            pd.concat([_scores([0.4, 0.5], OPEN[:2]), _scores([0.3, 0.3], [WON, LOST])]),
            "score run r0",
            SINCE,
        ),
        win=_win(),
        forecast=forecast,
        forecasts={"month": rows, "quarter": None},
        forecast_notes={"month": "", "quarter": "the forecast model has no quarterly series"},
        kpis_team=by_team,
        kpis_rep=by_rep,
        kpi_note=None,
        targets=_targets(),
        previous_headline={"as_of": str(SINCE), "month": {"period_start": "2026-03-01"}},
        names={OWNER: REP, "u2": "Plain"},
    )


# Where each name shows as text (the charts carry them too, as plotly's escaped JSON).
SHOWN_IN = {
    "stages": [STAGE],
    "risk": [NAMES["deal"], REP, STAGE, PRODUCT, ACCOUNT],
    "changes": [NAMES["deal"], REP, ATTRIBUTE],
    "kpis": [TEAM, REP, PRODUCT, STAGE],
}


def render(ctx: Context) -> str:
    return page(ctx, gather_sections(ctx)[0])


def section(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}"')
    return html[start : html.index("</section>", start)]


@pytest.mark.parametrize("team", [None, TEAM])
def test_crm_names_are_escaped_in_every_section(hostile: Context, team: str | None) -> None:
    html = render(dataclasses.replace(hostile, team=team))
    parsed = Page(html)
    for chart in CHARTS:
        assert f'id="{chart}"' in html  # every section rendered in full
    assert 'class="empty-state"' not in html
    assert parsed.scripts == 1 + len(CHARTS)  # plotly.js, and one per chart: none from the data
    assert "<script>alert" not in html and "alert(1)</script>" not in html
    visible = " ".join(parsed.text)
    for what, name in NAMES.items():
        assert str(escape(name)) in html, what
        assert name in visible, what
    assert "&amp;amp; ampersands &lt;/td&gt;&lt;td&gt;" in html
    for section_id, names in SHOWN_IN.items():
        body = section(html, section_id)
        assert all(str(escape(name)) in body for name in names), section_id


def test_an_unknown_hostile_team_is_escaped_in_the_empty_states(hostile: Context) -> None:
    ctx = dataclasses.replace(hostile, team=f"Nowhere {HOSTILE}")
    html = render(ctx)
    assert Page(html).scripts == 1
    assert "<script>alert" not in html
    for section_id, _ in SECTIONS:
        body = section(html, section_id)
        assert f"No deals for team <b>{escape(ctx.team)}</b>" in body
        assert str(escape(TEAM)) in body

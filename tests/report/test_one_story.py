"""The report tells one story: its open pipeline, stages and weighted figures follow the KPI
engine's amount rule, undefined figures are undefined, a model that loses to its baseline is
flagged, and every section renders for any team — on small synthetic exports, without models
(seconds, not minutes)."""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pytest

from features.history import History, load_history
from salesml.importers import read_export, run_import
from salesml.kpis import compute_kpis
from salesml.kpis.pipeline import pipeline_values
from salesml.synth import generate
from salesml.warehouse import connect
from serving.report import Report, ScoreSet, render_report
from serving.report import format as fmt
from serving.report.baselines import timing_flag, win_flag
from serving.report.page import page
from serving.report.sections import SECTIONS, gather_sections

TABLES = ("deals", "stage_history", "activities", "reps", "accounts", "products")
FRESH = "Fresh"


@dataclasses.dataclass
class Export:
    history: History
    con: duckdb.DuckDBPyConnection


def _open_ids(deals: pd.DataFrame) -> pd.Series:
    return deals["status"] == "open"


def _fresh_team(t: dict[str, pd.DataFrame]) -> None:
    """Half of the open deals move to a team that has never won (nor lost) a deal."""
    deals = t["deals"]
    ids = deals.index[_open_ids(deals)][::2]
    deals.loc[ids, "team"] = FRESH


def _no_amounts(t: dict[str, pd.DataFrame]) -> None:
    t["deals"]["amount"] = np.nan
    t["stage_history"]["amount"] = np.nan
    t["products"]["list_price"] = np.nan


def _no_stages(t: dict[str, pd.DataFrame]) -> None:
    t["stage_history"] = t["stage_history"].iloc[0:0]
    t["deals"]["stage"] = None


def _no_stage_history(t: dict[str, pd.DataFrame]) -> None:
    """Like Maven: the deals table has each open deal's stage, stage history has nothing."""
    t["stage_history"] = t["stage_history"].iloc[0:0]


def _no_activities(t: dict[str, pd.DataFrame]) -> None:
    t["activities"] = t["activities"].iloc[0:0]


VARIANTS: dict[str, Callable[[dict[str, pd.DataFrame]], None]] = {
    "plain": lambda t: None,
    "fresh_team": _fresh_team,
    "no_amounts": _no_amounts,
    "no_stages": _no_stages,
    "no_stage_history": _no_stage_history,
    "no_activities": _no_activities,
}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("story")
    generate(400, 3, root / "data", end_date=date(2026, 3, 31))
    return root


@pytest.fixture(scope="module")
def exports(source: Path) -> Iterator[dict[str, Export]]:
    """Each variant imported into its own warehouse."""
    out: dict[str, Export] = {}
    for name, change in VARIANTS.items():
        tables = {t: pd.read_parquet(source / "data" / f"{t}.parquet") for t in TABLES}
        change(tables)
        folder = source / name
        folder.mkdir()
        for table, frame in tables.items():
            frame.to_parquet(folder / f"{table}.parquet", index=False)
        home = source / f"{name}-home"
        run_import(read_export(folder, "canonical"), home / "w.duckdb", home / "rejects")
        con = connect(home / "w.duckdb", read_only=True)
        out[name] = Export(load_history(con), con)
    yield out
    for export in out.values():
        export.con.close()


def section(html: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}".*?</section>', html, re.S)
    assert match, section_id
    return match.group(0)


def scores_of(history: History, p: float = 0.5) -> ScoreSet:
    """Every deal scored ``p`` (what the report reads, without a model)."""
    ids = history.deals["deal_id"].astype(str)
    frame = pd.DataFrame({"deal_id": ids, "win_probability": p, "model_version": "t"})
    return ScoreSet(frame, "test scores")


def report(export: Export, **kwargs: Any) -> Report:
    kwargs.setdefault("scores", scores_of(export.history))
    return render_report(export.history, export.con, None, None, **kwargs)


# --- one rule for amounts and stages ---------------------------------------------------------


def test_the_rule_fills_a_missing_amount_from_the_list_price() -> None:
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3", "D4"],
            "product": ["Pro", "Pro", "Nothing", None],
            "amount": [500.0, None, None, None],
            "stage": ["Won", "Proposal", None, "Lead"],
        }
    )
    products = pd.DataFrame({"product": ["Pro", "Nothing"], "list_price": [4821.0, None]})
    then = pd.DataFrame({"amount": [None, 700.0], "stage": ["Qualified", None]}, index=["D1", "D2"])
    now = pipeline_values(deals, products, then)
    assert now.loc["D1", "amount"] == 500.0  # the deals table's amount (what the KPIs read)
    assert now.loc["D2", "amount"] == 700.0  # stage history's, where the deals table has none
    assert now.loc["D1", "stage"] == "Qualified"  # stage history first
    assert now.loc["D2", "stage"] == "Proposal"  # the deals table where stage history has none
    assert now.loc["D4", "stage"] == "Lead"
    assert now["estimated"].tolist() == [False, False, False, False]
    assert np.isnan(now.loc["D3", "amount"]) and np.isnan(now.loc["D4", "amount"])
    bare = pipeline_values(deals, products)
    assert bare.loc["D2", "amount"] == 4821.0 and bool(bare.loc["D2", "estimated"])
    earlier = pipeline_values(deals, products, then, current=False)
    assert earlier.loc["D1", "amount"] == 4821.0 and bool(earlier.loc["D1", "estimated"])
    assert earlier.loc["D2", "stage"] is None and earlier.loc["D4", "stage"] is None


def test_open_pipeline_agrees_with_the_kpis_and_says_what_is_estimated(
    exports: dict[str, Export],
) -> None:
    export = exports["plain"]
    deals = export.history.deals
    missing = deals.index[_open_ids(deals) & deals["amount"].isna()]
    assert len(missing) > 0, "the synthetic export has open deals without an amount"
    kpis = compute_kpis(export.con, by="team", period="quarter")["overall"]
    assert kpis["open_pipeline_estimated"] > 0
    html = report(export).html
    coverage = section(html, "coverage")
    total, estimated = kpis["open_pipeline"], kpis["open_pipeline_estimated"]
    assert f'<div class="card-value">{fmt.money_short(total)}</div>' in coverage
    assert (
        f"{fmt.money_short(total)} open, of which {fmt.money_short(estimated)} estimated "
        "from list prices" in coverage
    )
    assert f'<div class="card-value">{fmt.money_short(total * 0.5)}</div>' in coverage  # weighted
    stages = section(html, "stages")
    assert f'<td><b>all stages</b></td><td class="num">{kpis["open_pipeline_deals"]:,}' in stages
    assert fmt.money(total) in stages


def test_stages_come_from_the_deals_table_only_at_the_data_as_of(
    exports: dict[str, Export],
) -> None:
    export = exports["no_stage_history"]
    deals = export.history.deals
    open_stages = deals.loc[_open_ids(deals), "stage"].value_counts()
    stages = section(report(export).html, "stages")
    assert "(no stage)" not in stages
    for stage, n in open_stages.items():
        assert f'<td>{stage}</td><td class="num">{n:,}</td>' in stages
    earlier = export.history.exported_at - pd.Timedelta(days=14)
    before = section(report(export, as_of=earlier).html, "stages")
    assert "<td>(no stage)</td>" in before  # the deals table's stage is today's, not then's


# --- every section, any team --------------------------------------------------------------


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_section_renders_for_every_team(exports: dict[str, Export], variant: str) -> None:
    export = exports[variant]
    teams = sorted(export.history.deals["team"].dropna().astype(str).unique())
    for team in [None, *teams]:
        html = report(export, team=team).html
        for section_id, title in SECTIONS:
            assert title in section(html, section_id), (variant, team, section_id)
        text = re.sub(r"<script.*?</script>", "", html, flags=re.S)
        assert "0.000" not in text and "1.000" not in text


def test_a_team_with_open_but_no_won_deals(exports: dict[str, Export]) -> None:
    """It used to stop the report with a TypeError (an empty won-revenue series)."""
    export = exports["fresh_team"]
    html = report(export, team=FRESH).html
    assert "No won revenue and no forecast yet." in section(html, "forecast")
    open_fresh = (export.history.deals["team"] == FRESH) & _open_ids(export.history.deals)
    assert f"{int(open_fresh.sum()):,} open deals" in section(html, "coverage")


def test_without_amounts_figures_are_undefined_not_zero(exports: dict[str, Export]) -> None:
    export = exports["no_amounts"]
    forecast = SimpleNamespace(
        version="1",
        bundle=SimpleNamespace(
            freqs={},
            metadata={
                "trained_to": str(export.history.exported_at.date()),
                "backtest": {
                    "month": {
                        "blend": {"wape_total": 0.0, "mase_total": 0.0, "coverage_80_all": 1.0},
                        "seasonal_naive": {"wape_total": 0.0, "coverage_80_all": 1.0},
                    }
                },
            },
        ),
    )
    ctx_report = render_report(
        export.history, export.con, None, forecast, scores=scores_of(export.history)
    )
    html = ctx_report.html
    coverage = section(html, "coverage")
    assert "no open deal has an amount or a list price" in coverage
    assert '<div class="card-value">$0</div>' not in coverage
    assert "$0" not in section(html, "stages")
    assert "there is no revenue to forecast" in section(html, "headline")
    health_html = page(ctx_report.context, [gather_sections(ctx_report.context)[0][-1]])
    assert "the backtest errors are 0 / 0, undefined" in health_html
    backtests = section(health_html, "health")
    assert '<td>month</td><td>blend</td><td class="num">—</td>' in backtests
    assert "0.0%" not in backtests and "100%" not in backtests


# --- models that lose to their baselines -------------------------------------------------------

LOSING = {
    "holdout_log_loss": 0.645,
    "holdout_brier": 0.226,
    "baseline_base_rate_log_loss": 0.708,
    "baseline_base_rate_brier": 0.248,
    "baseline_rep_win_rate_log_loss": 0.644,
    "baseline_rep_win_rate_brier": 0.226,
    "timing_mae_days": 116.6,
    "timing_coverage_80": 0.785,
    "timing_baseline_stage_median_mae_days": 27.0,
}


def test_baseline_flags() -> None:
    flag = win_flag(LOSING)
    assert flag is not None and "rep win rate" in flag.text and "base rate," not in flag.text
    assert flag.tone == "warn"
    assert win_flag({**LOSING, "holdout_log_loss": 0.6, "holdout_brier": 0.2}) is None
    assert win_flag({**LOSING, "holdout_log_loss": 0.9}).tone == "bad"  # type: ignore[union-attr]
    timing = timing_flag(LOSING)
    assert timing is not None and "117 days" in timing.text and "27 days" in timing.text
    assert timing_flag({**LOSING, "timing_mae_days": 20.0}) is None


def test_model_health_flags_models_that_lose(
    exports: dict[str, Export], monkeypatch: pytest.MonkeyPatch
) -> None:
    health = importlib.import_module("serving.report.sections.health")
    sample = pd.DataFrame({"p": [0.6] * 40, "won": [0.0, 1.0] * 20})
    monkeypatch.setattr(health, "calibration_sample", lambda *a: (sample, "40 snapshots"))
    export = exports["plain"]
    base = report(export).context
    win = SimpleNamespace(
        version="1",
        alias="champion",
        timing=object(),
        bundle=SimpleNamespace(metadata={}, explainer={}),
    )
    ctx = dataclasses.replace(base, win=win, win_metrics=LOSING)
    html = page(ctx, [health.health(ctx)])
    assert "the win model does not beat rep win rate" in html
    assert "the close-timing model misses by 117 days on average" in html
    fine = dataclasses.replace(
        ctx,
        win_metrics={
            **LOSING,
            "holdout_log_loss": 0.5,
            "holdout_brier": 0.1,
            "timing_mae_days": 10.0,
        },
    )
    assert "does not beat" not in page(fine, [health.health(fine)])


def test_the_win_model_card_flags_a_model_that_loses() -> None:
    from training.win.fit import WinTrainingResult
    from training.win.model_card import render_model_card

    split = SimpleNamespace(
        window=lambda: {"train": "a", "validation": "b", "holdout": "c", "maturity_days": 30},
        train=[],
        validation=[],
        holdout=[],
    )
    bundle = SimpleNamespace(metadata={}, spec_version="1", calibrator=SimpleNamespace(name="none"))
    metrics = {"log_loss": 0.645, "brier": 0.226}
    result = WinTrainingResult(
        bundle=bundle,  # type: ignore[arg-type]
        split=split,  # type: ignore[arg-type]
        holdout_metrics=dict(metrics),
        baseline_metrics={
            "base_rate": {"log_loss": 0.708, "brier": 0.248},
            "rep_win_rate": {"log_loss": 0.644, "brier": 0.226},
        },
        reliability={},
        calibrator_table=pd.DataFrame({"calibrator": ["none"], "log_loss": [0.645]}),
        params={},
        little_signal=False,
        booster_holdout_metrics={},
    )
    card = render_model_card(result, "1", "champion")
    assert "⚠ Does not beat its baselines: rep_win_rate." in card
    assert "| rep_win_rate ⚠ beats the model |" in card
    assert "| base_rate |" in card
    better = dataclasses.replace(result, holdout_metrics={"log_loss": 0.5, "brier": 0.2})
    assert "Does not beat" not in render_model_card(better, "1", "champion")

"""Drivers: exact, additive in probability points, planted effects first, noise last."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.history import History
from salesml.explain import (
    attribute_change,
    compare_importance,
    contributions,
    explain,
    global_drivers,
)
from salesml.explain.drivers import log_odds_contributions
from salesml.models.win.bundle import WinBundle
from salesml.models.win.seen import SEEN_KEY
from salesml.scoring import Scorer
from tests.helpers.history import synthetic_workspace
from training.win.fit import WinTrainingResult, train_win_model

PLANTED = {"Engagement", "Rep track record", "Deal size"}  # engagement, rep skill, price ratio
NOISE = {"noise_score", "noise_label"}
PIPELINE_POSITION = {"Stage progress", "Timing"}  # where the deal is in its life, not why


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[WinTrainingResult, History]:
    history = synthetic_workspace(tmp_path_factory, deals=6000, seed=3).history
    return train_win_model(history), history


@pytest.fixture(scope="module")
def scoring(trained: tuple[WinTrainingResult, History]) -> pd.DataFrame:
    _, history = trained
    return build_features(history, history.exported_at)


def test_contributions_add_up_to_the_shown_probability(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    bundle = trained[0].bundle
    frames = [scoring, trained[0].split.holdout]
    for features in frames:
        shown = bundle.predict(features)["win_probability"].to_numpy()
        c = contributions(bundle, features)
        total = (c.base + c.values.to_numpy().sum(axis=1)) / 100
        assert np.abs(total - shown).max() <= 1e-6
        by_concept = explain(bundle, features, top=None, contribution=c)
        sums = np.array([sum(d["contribution"] for d in row) for row in by_concept])
        assert np.abs((c.base + sums) / 100 - shown).max() <= 1e-6


def test_fast_engine_equals_lightgbm_pred_contrib(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    # Without the training record, unseen categories and missing values reach the trees and
    # take their default paths (with it they are read as typical before: SeenInputs).
    meta = {k: v for k, v in trained[0].bundle.metadata.items() if k != SEEN_KEY}
    bundle = replace(trained[0].bundle, metadata=meta)
    rows = pd.concat([trained[0].split.holdout.head(1500), scoring])
    odd = rows.head(50).copy()
    odd["product"] = "never seen"
    odd["days_since_last_activity"] = np.nan
    odd["amount"] = 0.0
    rows = pd.concat([rows, odd])
    native = log_odds_contributions(bundle, rows, engine="native")
    fast = log_odds_contributions(bundle, rows, engine="fast")
    assert np.abs(native - fast).max() <= 1e-9
    margin = bundle.raw_score(rows)
    assert np.abs(fast.sum(axis=1) - margin).max() <= 1e-9


def test_planted_effects_lead_the_global_drivers(
    trained: tuple[WinTrainingResult, History],
) -> None:
    bundle = trained[0].bundle
    ranking = global_drivers(bundle, trained[0].split.holdout)
    order = list(ranking["driver"])
    # Ranked by how much they separate deals at the same stage, the top three drivers are the
    # three planted effects, and every planted effect outranks both noise attributes (when the
    # training screen kept them at all).
    assert set(order[:3]) == PLANTED, ranking
    noise = [order.index(n) for n in NOISE if n in order]
    assert max(order.index(p) for p in PLANTED) < min(noise, default=len(order))
    # The stage a deal has reached still moves its score most on average (it says where the
    # deal is): the table keeps that measure too.
    overall = ranking.sort_values("mean_abs_points", ascending=False)["driver"].tolist()
    assert set(overall[:4]) >= PLANTED and overall[0] in PIPELINE_POSITION | PLANTED, overall
    # per team, the same three lead
    teams = global_drivers(bundle, trained[0].split.holdout, by="team")
    for _, team in teams.groupby("segment"):
        if team["deals"].iat[0] >= 300:
            assert set(team.sort_values("rank")["driver"].head(4)) >= PLANTED, team
    assert bundle.explainer["global"]["concepts"]  # logged at training for run comparison


def test_noise_is_rarely_a_top_driver(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    bundle = trained[0].bundle
    for features in (scoring, trained[0].split.holdout):
        drivers = explain(bundle, features, top=3)
        share = np.mean([any(d["concept"] in NOISE for d in row) for row in drivers])
        assert share < 0.05, share


def test_driver_text_compares_with_won_deals(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    bundle = trained[0].bundle
    drivers = explain(bundle, scoring, top=None)
    texts = [d["text"] for row in drivers for d in row]
    assert any("won deals: median" in t for t in texts)
    for row in drivers:
        points = [abs(d["contribution"]) for d in row]
        assert points == sorted(points, reverse=True)
        assert {d["concept"] for d in row} >= PLANTED
        for d in row:
            assert d["text"].endswith("pts")
            assert set(d) == {"concept", "feature", "value", "contribution", "text"}
    silent = (
        scoring["days_since_last_activity"]
        > 2 * bundle.explainer["won"]["days_since_last_activity"]["median"]
    )
    engagement = [
        d["text"]
        for row, s in zip(drivers, silent, strict=True)
        if s
        for d in row
        if d["feature"] == "days_since_last_activity"
    ]
    assert engagement and all(t.startswith("No activity for") for t in engagement)


def test_typical_values_come_from_training_not_from_the_scored_deals(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    bundle = trained[0].bundle
    before = explain(bundle, scoring.head(20), top=None)
    shifted = pd.concat([scoring.head(20), scoring.iloc[20:].assign(activities_total=999.0)])
    after = explain(bundle, shifted.head(20), top=None)
    assert before == after
    won = trained[0].split.train.query("label_won == 1")["days_since_last_activity"]
    assert bundle.explainer["won"]["days_since_last_activity"]["median"] == pytest.approx(
        float(won.median()), rel=0.25
    )


def test_explanations_survive_a_bundle_round_trip(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame, tmp_path: Path
) -> None:
    bundle = trained[0].bundle
    before = Scorer(bundle).predict(scoring, explain=True)
    loaded = WinBundle.load(bundle.save(tmp_path / "bundle"))
    after = Scorer(loaded).predict(scoring, explain=True)
    pd.testing.assert_frame_equal(before, after)
    assert loaded.explainer == json.loads(json.dumps(bundle.explainer))


def test_a_constant_model_has_no_drivers(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    constant = replace(trained[0].bundle, booster=None)
    out = Scorer(constant).predict(scoring.head(5), explain=True)
    assert (out["drivers"] == "[]").all()
    assert np.allclose(out["drivers_base"] / 100, out["win_probability"])


def test_why_did_my_score_change_adds_up(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    result, history = trained
    bundle = result.bundle
    earlier = build_features(history, history.exported_at - pd.Timedelta(days=14))
    common = earlier.index.intersection(scoring.index)[:200]

    def rows(features: pd.DataFrame, version: str) -> pd.DataFrame:
        out = Scorer(bundle).predict(features.loc[common], explain=True).reset_index()
        return out.rename(columns={"index": "deal_id"}).assign(model_version=version)

    old, new = rows(earlier, "1"), rows(scoring, "1")
    change = attribute_change(old, new)
    assert len(change) == len(common)
    for r in change.itertuples():
        total = sum(a["change_points"] for a in r.attribution)
        assert total == pytest.approx(r.change_points, abs=1e-6)
        assert not r.model_changed
    moved = change.loc[change["change_points"].abs().idxmax()]
    assert moved["attribution"][0]["driver"] not in NOISE
    other = attribute_change(old, rows(scoring, "2"))
    assert other["model_changed"].all()
    assert all(any(a["driver"] == "Model change" for a in r) for r in other["attribution"]) or all(
        abs(sum(a["change_points"] for a in r) - c) < 1e-6
        for r, c in zip(other["attribution"], other["change_points"], strict=True)
    )


def test_importance_change_between_runs() -> None:
    table = compare_importance({"Engagement": 5.0, "Deal size": 3.0}, {"Engagement": 4.0, "X": 2})
    assert list(table["driver"]) == ["Deal size", "X", "Engagement"]
    assert table.set_index("driver").loc["Deal size", "new_points"] == 0.0

"""Recommended actions: catalogue, what-ifs on actionable features only, and they react to data."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.history import History
from features.spec import FIXED_FEATURES
from salesml.actions import RULES, ActionError, recommend, what_if
from tests.helpers.history import synthetic_workspace
from training.win.fit import WinTrainingResult, train_win_model

DOCS = Path(__file__).resolve().parents[2] / "docs" / "actions.md"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[WinTrainingResult, History]:
    history = synthetic_workspace(tmp_path_factory, deals=4000, seed=8).history
    return train_win_model(history), history


@pytest.fixture(scope="module")
def scoring(trained: tuple[WinTrainingResult, History]) -> pd.DataFrame:
    return build_features(trained[1], trained[1].exported_at)


def test_catalogue_has_ten_documented_rules_that_only_touch_actionable_features() -> None:
    actionable = {f.name for f in FIXED_FEATURES if f.actionable}
    assert len(RULES) >= 10
    assert {r.kind for r in RULES} >= {"deal", "process", "resources", "training"}
    doc = DOCS.read_text(encoding="utf-8")
    for rule in RULES:
        assert set(rule.what_if) <= actionable, rule.id
        assert f"`{rule.id}`" in doc, f"{rule.id} is not documented"


def test_what_if_never_moves_a_feature_that_is_not_actionable(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    bundle = trained[0].bundle
    meta = bundle.explainer["features"]
    actions = recommend(bundle, scoring)
    seen = 0
    for row, deal in zip(actions, scoring.index, strict=True):
        for a in row:
            assert set(a["changes"]) <= {n for n, m in meta.items() if m["actionable"]}
            if a["expected_impact"] is not None:
                seen += 1
                changed = what_if(
                    bundle, scoring.loc[[deal]], {k: np.array([v]) for k, v in a["changes"].items()}
                )
                fixed = [n for n in bundle.features if not meta[n]["actionable"]]
                pd.testing.assert_frame_equal(changed[fixed], scoring.loc[[deal], fixed])
    assert seen > 0
    with pytest.raises(ActionError, match="actionable"):
        what_if(bundle, scoring.head(1), {"account_industry": np.array(["Retail"])})
    with pytest.raises(ActionError, match="actionable"):
        what_if(bundle, scoring.head(1), {"rep_win_rate_365d": np.array([0.9])})


def test_actions_are_ranked_by_expected_revenue_impact(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    actions = recommend(trained[0].bundle, scoring)
    assert sum(map(len, actions)) > 0
    for row in actions:
        revenue = [
            a["expected_impact"]["revenue"]
            for a in row
            if a["expected_impact"] and a["expected_impact"]["revenue"] is not None
        ]
        assert revenue == sorted(revenue, reverse=True)
        for a in row:
            assert {"action", "reason", "expected_impact"} <= set(a)
            if a["expected_impact"] is not None:
                assert "model estimate" in a["expected_impact"]["basis"]


def test_no_recent_activity_disappears_once_an_activity_is_logged(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    bundle, history = trained[0].bundle, trained[1]
    before = recommend(bundle, scoring)
    quiet = [
        d
        for d, row in zip(scoring.index, before, strict=True)
        if any(a["id"] == "no_recent_activity" for a in row)
    ]
    assert quiet
    deal = quiet[0]
    activity = pd.DataFrame(
        {
            "deal_id": [deal],
            "occurred_at": [history.exported_at],
            "type": ["call"],
            "owner_id": [scoring.loc[deal, "owner_id"]],
        }
    )
    logged = replace(
        history,
        activities=pd.concat([history.activities, activity], ignore_index=True).astype(
            history.activities.dtypes.to_dict()
        ),
    )
    after_features = build_features(logged, logged.exported_at, deal_ids=[deal])
    after = recommend(bundle, after_features)[0]
    assert not any(a["id"] == "no_recent_activity" for a in after)
    impact = next(
        a for a in before[list(scoring.index).index(deal)] if a["id"] == "no_recent_activity"
    )["expected_impact"]
    assert impact["win_probability_points"] >= 0  # engagement is monotone in the model


def test_thresholds_are_stored_in_the_bundle(
    trained: tuple[WinTrainingResult, History],
) -> None:
    explainer = trained[0].bundle.explainer
    stages = explainer["won_by_stage"]
    assert stages and all("days_in_stage" in s for s in stages.values())
    assert explainer["stage_order"][0] == "Qualification"
    assert explainer["actions"]["capacity"]
    assert explainer["actions"]["rep_won_amount"]


def test_no_activity_advice_needs_an_export_that_logs_activities(
    trained: tuple[WinTrainingResult, History], scoring: pd.DataFrame
) -> None:
    """An export without an activities table (Maven) has no "won deals' last activity" to
    compare with: "no activity logged yet" would be true of every deal and say nothing."""
    bundle = trained[0].bundle
    won = {k: v for k, v in bundle.explainer["won"].items() if k != "days_since_last_activity"}
    silent = replace(bundle, explainer={**bundle.explainer, "won": won})
    for row in recommend(silent, scoring):
        assert not any(a["id"] == "no_recent_activity" for a in row)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batched_what_ifs_equal_one_call_per_what_if(
    trained: tuple[WinTrainingResult, History],
    scoring: pd.DataFrame,
    seed: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """All the what-ifs of a deal (and of a batch of deals) scored in one LightGBM call give
    the actions, impacts and order of one call per rule, and of re-scoring each what-if frame
    on its own."""
    from salesml.actions import engine

    bundle = trained[0].bundle
    rng = np.random.default_rng(seed)
    picked = scoring.iloc[np.sort(rng.choice(len(scoring), size=40, replace=False))]
    batched = recommend(bundle, picked)
    assert batched == recommend(bundle, picked, batched=False)
    # A stack bound smaller than one rule's rows: several flushes, the same answer.
    monkeypatch.setattr(engine, "WHAT_IF_BATCH_ROWS", 3)
    assert recommend(bundle, picked) == batched
    impacts = 0
    for i in range(len(picked)):
        one = picked.iloc[[i]]
        alone = recommend(bundle, one)
        assert alone == [batched[i]]
        p = float(bundle.predict(one)["win_probability"].iloc[0])
        for action in alone[0]:
            impact = action["expected_impact"]
            if impact is None:
                continue
            changes = {
                k: np.asarray([np.nan if v is None else v]) for k, v in action["changes"].items()
            }
            rule = engine.BY_ID[action["id"]]
            changed = what_if(bundle, one, changes, rule)
            p_new = float(bundle.predict(changed)["win_probability"].iloc[0])
            assert impact["win_probability_points"] == pytest.approx((p_new - p) * 100, abs=1e-9)
            impacts += 1
    assert impacts > 0

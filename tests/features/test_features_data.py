"""Features on real-shaped data: deals only, the Maven export, the synthetic generator."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from features.build import (
    INFO_COLUMNS,
    LABEL_COLUMNS,
    build_features,
    build_snapshots,
    weekly_as_of_dates,
)
from features.history import History, make_history
from features.spec import feature_spec
from tests.helpers.history import import_history, synthetic_workspace

END = date(2025, 6, 30)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> History:
    return synthetic_workspace(tmp_path_factory, deals=3000, seed=11, end_date=END).history


def test_a_deals_only_history_gives_nan_features_and_missing_categories() -> None:
    deals = pd.DataFrame(
        {
            "deal_id": ["a", "b", "c", "d"],
            "created_at": pd.to_datetime(["2024-01-02", "2024-01-03", "2024-02-01", "2024-03-01"]),
            "status": ["won", "lost", "open", "won"],
            "closed_at": pd.to_datetime(["2024-02-10", "2024-01-20", None, "2024-03-20"]),
        }
    )
    history = make_history(deals)
    snapshots = build_snapshots(history, weekly_as_of_dates(history))
    spec = feature_spec(history)
    assert list(snapshots.columns) == [
        "deal_id",
        "as_of",
        *INFO_COLUMNS,
        *(f.name for f in spec),
        *LABEL_COLUMNS,
    ]
    assert len(snapshots) > 0
    for f in spec:
        column = snapshots[f.name]
        if f.kind == "categorical":
            assert set(column.astype(str)) == {"missing"}, f.name
        elif f.name in ("age_days", "days_since_last_activity"):
            continue
        elif f.name.startswith("activities_") or f.name in ("engagement_trend", "meetings_total"):
            assert (column == 0).all(), f.name
        else:
            assert column.isna().all(), f.name  # no stage history, owner, account or product
    assert (snapshots["age_days"] >= 0).all()
    assert set(snapshots["outcome"]) <= {"won", "lost", "open"}
    scoring = build_features(history, history.exported_at)
    assert list(scoring.index) == ["c"]


def test_load_history_reads_every_table_and_the_attribute_kinds(synthetic: History) -> None:
    h = synthetic
    assert len(h.deals) == 3000
    assert min(len(h.stage_history), len(h.activities), len(h.reps), len(h.accounts)) > 0
    assert h.attributes == {
        "competitor": "categorical",
        "noise_label": "categorical",
        "noise_score": "numeric",
    }
    assert h.exported_at < pd.Timestamp(END)
    # The data's as-of: the latest event in any table (leads and NPS answers included).
    events = [h.deals["created_at"], h.deals["closed_at"], h.stage_history["changed_at"]]
    assert h.exported_at >= max(s.max() for s in [*events, h.activities["occurred_at"]])


def test_planted_effects_are_visible_at_as_of(synthetic: History) -> None:
    """Won deals were more engaged, and had stronger reps, at the dates they were open."""
    snapshots = build_snapshots(synthetic, weekly_as_of_dates(synthetic))
    closed = snapshots[snapshots["label_won"].notna()]
    by_outcome = closed.groupby("outcome")[["activities_30d", "rep_win_rate_365d"]].mean()
    assert by_outcome.loc["won", "activities_30d"] > 1.2 * by_outcome.loc["lost", "activities_30d"]
    assert by_outcome.loc["won", "rep_win_rate_365d"] > by_outcome.loc["lost", "rep_win_rate_365d"]
    excluded = {"competitor", "noise_label", "noise_score"} & {
        f.name[5:] for f in feature_spec(synthetic)
    }
    assert excluded == {"competitor", "noise_label", "noise_score"}  # none is screened out


def test_scoring_features_match_the_last_snapshot_of_the_same_date(synthetic: History) -> None:
    as_of = weekly_as_of_dates(synthetic)[-1]
    scoring = build_features(synthetic, as_of)
    snapshot = build_snapshots(synthetic, [as_of]).set_index("deal_id")
    pd.testing.assert_frame_equal(scoring, snapshot[list(scoring.columns)])


def test_maven_snapshots_do_not_leak_the_label(tmp_path: Path, maven_dir: Path) -> None:
    """Maven's static fields carry almost no signal (README: leakage-free AUC near 0.5); only
    won deals have an amount there, so any read of the deals table's amount would show."""
    history = import_history(maven_dir, "maven", tmp_path)
    snapshots = build_snapshots(history, weekly_as_of_dates(history))
    labelled = snapshots[snapshots["label_won"].notna()]
    assert labelled["amount"].isna().all()  # no stage history: never the export-time amount
    names = [f.name for f in feature_spec(history)]
    deal_ids = labelled["deal_id"].unique()
    rng = np.random.default_rng(0)
    held_out = labelled["deal_id"].isin(rng.choice(deal_ids, len(deal_ids) // 4, replace=False))
    model = lgb.LGBMClassifier(
        n_estimators=150, learning_rate=0.05, num_leaves=15, min_child_samples=50, verbose=-1
    )
    model.fit(labelled.loc[~held_out, names], labelled.loc[~held_out, "label_won"])
    scores = model.predict_proba(labelled.loc[held_out, names])[:, 1]
    auc = roc_auc_score(labelled.loc[held_out, "label_won"], scores)
    assert auc < 0.65

"""The feature spec, the leakage screen, as-of dates and the build_features contract."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import (
    INFO_COLUMNS,
    build_features,
    build_snapshots,
    vocabularies,
    weekly_as_of_dates,
)
from features.history import EmptyHistoryError, History, make_history
from features.spec import (
    FEATURE_SPEC_VERSION,
    FIXED_FEATURES,
    attribute_feature,
    excluded_attributes,
    feature_spec,
)
from tests.features.histories import random_history

CONCEPTS = {
    "Engagement",
    "Stage progress",
    "Deal size",
    "Timing",
    "Rep track record",
    "Account",
    "Deal profile",
}


def deals_with(n: int, seed: int = 0, **attrs: object) -> pd.DataFrame:
    """``n`` deals: 60 % closed (won or lost at random), the rest still open."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 200, n), unit="D")
    closed = rng.random(n) < 0.6
    won = rng.random(n) < 0.4
    return pd.DataFrame(
        {
            "deal_id": [f"D{i:04d}" for i in range(n)],
            "created_at": created,
            "status": np.where(closed, np.where(won, "won", "lost"), "open"),
            "closed_at": np.where(closed, created + pd.Timedelta(days=30), pd.NaT),
            **attrs,
        }
    )


def test_every_feature_is_declared_once_with_a_description_and_a_known_concept() -> None:
    names = [f.name for f in FIXED_FEATURES]
    assert len(names) == len(set(names))
    assert not set(names) & set(INFO_COLUMNS)
    for f in FIXED_FEATURES:
        assert f.description.endswith(".") and f.concept in CONCEPTS, f.name
    assert FEATURE_SPEC_VERSION


def test_frame_dtypes_follow_the_declared_kinds() -> None:
    history = random_history(3)
    frame = build_features(history, pd.Timestamp("2024-02-20"))
    assert frame.index.name == "deal_id"
    assert list(frame.columns) == [*INFO_COLUMNS, *(f.name for f in feature_spec(history))]
    vocab = vocabularies(history, feature_spec(history))
    for f in feature_spec(history):
        if f.kind == "numeric":
            assert frame[f.name].dtype == np.float64, f.name
        else:
            assert list(frame[f.name].cat.categories) == vocab[f.name], f.name
            assert vocab[f.name][-1] == "missing"


def test_only_deals_open_at_as_of_get_a_row_in_the_order_asked() -> None:
    history = random_history(4)
    as_of = pd.Timestamp("2024-03-01")
    d = history.deals
    is_open = (d["created_at"] <= as_of) & ~(d["closed_at"] <= as_of)
    everything = build_features(history, as_of)
    assert sorted(everything.index) == sorted(d.loc[is_open, "deal_id"])
    closed_id = d.loc[d["closed_at"] <= as_of, "deal_id"].iloc[0]
    wanted = [everything.index[-1], closed_id, "nope", everything.index[0]]
    some = build_features(history, as_of, deal_ids=wanted)
    assert list(some.index) == [everything.index[-1], everything.index[0]]
    pd.testing.assert_frame_equal(some, everything.loc[some.index])


def test_a_zone_aware_as_of_means_the_same_instant_in_utc() -> None:
    history = random_history(5)
    naive = build_features(history, pd.Timestamp("2024-02-20 06:00"))
    aware = build_features(history, pd.Timestamp("2024-02-20 07:00", tz="Europe/Berlin"))
    pd.testing.assert_frame_equal(naive, aware)


def test_a_pinned_feature_list_is_honoured_even_for_attributes_the_history_lacks() -> None:
    history = random_history(6)
    spec = [*FIXED_FEATURES[:3], attribute_feature("gone", "categorical")]
    frame = build_features(history, pd.Timestamp("2024-02-20"), features=spec)
    assert list(frame.columns) == [*INFO_COLUMNS, *(f.name for f in spec)]
    assert set(frame["attr_gone"].astype(str)) == {"missing"}


def test_weekly_dates_are_mondays_at_midnight_within_the_history() -> None:
    history = random_history(7)
    dates = weekly_as_of_dates(history)
    assert all(d.weekday() == 0 and d == d.normalize() for d in dates)
    assert dates[0] >= history.deals["created_at"].min()
    assert dates[0] - pd.Timedelta(days=7) < history.deals["created_at"].min()
    assert dates[-1] <= history.exported_at < dates[-1] + pd.Timedelta(days=7)
    assert np.all(np.diff(np.array(dates, dtype="datetime64[us]")) == np.timedelta64(7, "D"))
    window = weekly_as_of_dates(history, pd.Timestamp("2024-02-01"), pd.Timestamp("2024-02-29"))
    assert [d.day for d in window] == [5, 12, 19, 26]


def test_snapshots_of_no_dates_are_empty_with_every_column() -> None:
    history = random_history(8)
    empty = build_snapshots(history, [])
    assert len(empty) == 0
    assert list(empty.columns) == list(build_snapshots(history, weekly_as_of_dates(history)[:1]))


def test_a_history_needs_deals() -> None:
    with pytest.raises(EmptyHistoryError, match="import an export first"):
        make_history(pd.DataFrame(columns=["deal_id", "created_at", "status"]))


def screened(deals: pd.DataFrame, kinds: dict[str, str]) -> dict[str, str]:
    return excluded_attributes(make_history(deals, attributes=kinds))


def test_an_attribute_filled_only_at_closing_is_excluded() -> None:
    deals = deals_with(400)
    deals["attr_loss_reason"] = np.where(deals["status"] == "open", None, "budget")
    deals["attr_region_code"] = "north"
    excluded = screened(deals, {"loss_reason": "categorical", "region_code": "categorical"})
    assert set(excluded) == {"loss_reason"}
    assert "closing" in excluded["loss_reason"]


def test_an_attribute_filled_for_one_outcome_is_excluded() -> None:
    deals = deals_with(400)
    lost = deals["status"] == "lost"
    deals["attr_churn_note"] = np.where(lost | (deals["status"] == "open"), "x", None)
    assert "one outcome" in screened(deals, {"churn_note": "categorical"})["churn_note"]


def test_an_attribute_that_separates_won_from_lost_is_excluded() -> None:
    deals = deals_with(400, seed=1)
    won = (deals["status"] == "won").to_numpy()
    rng = np.random.default_rng(0)
    deals["attr_signed_value"] = np.where(won, 1000.0, 0.0) + rng.normal(0, 1, len(deals))
    deals["attr_noise"] = rng.normal(0, 1, len(deals))
    deals["attr_stage_label"] = np.where(won, "signed", "dropped")
    kinds = {"signed_value": "numeric", "noise": "numeric", "stage_label": "categorical"}
    excluded = screened(deals, kinds)
    assert set(excluded) == {"signed_value", "stage_label"}
    assert "AUC" in excluded["signed_value"]


def test_id_like_and_empty_attributes_are_excluded() -> None:
    deals = deals_with(400)
    deals["attr_ticket"] = [f"T{i}" for i in range(len(deals))]
    deals["attr_empty"] = None
    excluded = screened(deals, {"ticket": "categorical", "empty": "categorical"})
    assert "id or free text" in excluded["ticket"]
    assert excluded["empty"] == "never filled"


def test_the_spec_lists_kept_attributes_after_the_fixed_features() -> None:
    history = random_history(9)
    spec = feature_spec(history)
    assert spec[: len(FIXED_FEATURES)] == list(FIXED_FEATURES)
    assert [f.name for f in spec[len(FIXED_FEATURES) :]] == ["attr_competitor", "attr_score"]
    assert {f.concept for f in spec[len(FIXED_FEATURES) :]} == {"competitor", "score"}


def test_histories_are_normalised_to_naive_utc_microseconds() -> None:
    deals = deals_with(5)
    deals["created_at"] = deals["created_at"].dt.tz_localize("America/New_York")
    history: History = make_history(deals)
    assert history.deals["created_at"].dtype == "datetime64[us]"
    assert history.deals["created_at"].iloc[0] == deals["created_at"].iloc[0].tz_convert(None)


def test_every_fixed_feature_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "features.md").read_text("utf-8")
    missing = [f.name for f in FIXED_FEATURES if f"`{f.name}`" not in doc]
    assert not missing, f"docs/features.md does not define {missing}"

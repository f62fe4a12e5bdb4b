"""Time is an argument: nothing stamped after as_of can change a feature at as_of.

Each test takes a random history and an as_of on the event grid (so events sit exactly on it),
edits the history only after as_of, and checks every feature of every deal open at as_of is
unchanged. The feature list is pinned to the original history's (as a trained model pins it);
category vocabularies may grow with new values, so categoricals compare by value.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.build import build_features, open_deal_ids
from features.history import History, make_history
from features.spec import Feature, feature_spec
from tests.features.histories import START, STEP, random_history

Edit = Callable[[History, pd.Timestamp, np.random.Generator], History]
SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
cases = st.tuples(st.integers(0, 9), st.integers(60, 440), st.integers(0, 2**31))


@cache
def base(seed: int) -> tuple[History, tuple[Feature, ...]]:
    history = random_history(seed, n_deals=18)
    return history, tuple(feature_spec(history))


def values(history: History, as_of: pd.Timestamp, spec: tuple[Feature, ...]) -> pd.DataFrame:
    frame = build_features(history, as_of, features=spec)
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype) or frame[col].dtype == "str":
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
    return frame


def assert_unchanged(case: tuple[int, int, int], edit: Edit) -> None:
    seed, step, edit_seed = case
    history, spec = base(seed)
    as_of = START + step * STEP
    edited = edit(history, as_of, np.random.default_rng(edit_seed))
    before, after = values(history, as_of, spec), values(edited, as_of, spec)
    pd.testing.assert_frame_equal(after, before)


def rebuild(h: History, **tables: pd.DataFrame) -> History:
    frames = {
        "stage_history": h.stage_history,
        "activities": h.activities,
        "reps": h.reps,
        "accounts": h.accounts,
        "products": h.products,
    }
    frames |= {k: v for k, v in tables.items() if k != "deals"}
    return make_history(tables.get("deals", h.deals), attributes=h.attributes, **frames)


def later(rng: np.random.Generator, as_of: pd.Timestamp) -> pd.Timestamp:
    """A time strictly after as_of: a microsecond later, or some grid steps later."""
    if rng.random() < 0.2:
        return as_of + pd.Timedelta(microseconds=1)
    return as_of + int(rng.integers(1, 400)) * STEP


def open_at(h: History, as_of: pd.Timestamp) -> pd.Series:
    d = h.deals
    return (d["created_at"] <= as_of) & ~(d["closed_at"] <= as_of)


def pick(rng: np.random.Generator, ids: pd.Series | list[str]) -> str:
    ids = list(ids)
    return str(ids[int(rng.integers(0, len(ids)))]) if ids else "D000"


@given(cases)
@SETTINGS
def test_adding_future_activity_does_not_change_features(case: tuple[int, int, int]) -> None:
    def edit(h: History, as_of: pd.Timestamp, rng: np.random.Generator) -> History:
        rows = [
            {"deal_id": pick(rng, h.deals["deal_id"]), "occurred_at": later(rng, as_of)}
            for _ in range(int(rng.integers(1, 6)))
        ]
        acts = pd.concat([h.activities, pd.DataFrame(rows).assign(type="email")])
        return rebuild(h, activities=acts)

    assert_unchanged(case, edit)


@given(cases)
@SETTINGS
def test_adding_future_stage_change_does_not_change_features(case: tuple[int, int, int]) -> None:
    def edit(h: History, as_of: pd.Timestamp, rng: np.random.Generator) -> History:
        rows = [
            {
                "deal_id": pick(rng, h.deals["deal_id"]),
                "stage": pick(rng, ["Lead", "Demo", "Contract", "Brand new stage"]),
                "changed_at": later(rng, as_of),
                "amount": float(rng.choice([10.0, 99999.0])),
                "expected_close_date": later(rng, as_of).normalize(),
            }
            for _ in range(int(rng.integers(1, 6)))
        ]
        rows_frame = pd.DataFrame(rows)
        stages = pd.concat([h.stage_history, rows_frame]).drop_duplicates(
            ["deal_id", "changed_at", "stage"]
        )
        return rebuild(h, stage_history=stages)

    assert_unchanged(case, edit)


@given(cases)
@SETTINGS
def test_closing_a_deal_after_as_of_does_not_change_features(case: tuple[int, int, int]) -> None:
    def edit(h: History, as_of: pd.Timestamp, rng: np.random.Generator) -> History:
        deals = h.deals.copy()
        for deal_id in rng.permutation(deals.loc[open_at(h, as_of), "deal_id"].to_numpy())[:4]:
            row = deals["deal_id"] == deal_id
            deals.loc[row, "status"] = str(rng.choice(["won", "lost", "open"]))
            closing = later(rng, as_of)
            deals.loc[row, "closed_at"] = (
                closing if deals.loc[row, "status"].iloc[0] != "open" else pd.NaT
            )
            deals.loc[row, "amount"] = float(rng.choice([1.0, 5e6]))
        return rebuild(h, deals=deals)

    assert_unchanged(case, edit)


@given(cases)
@SETTINGS
def test_adding_future_deals_does_not_change_features(case: tuple[int, int, int]) -> None:
    """New deals created after as_of, many won soon after, for the same reps, products and
    accounts as the open deals (and some new values)."""

    def edit(h: History, as_of: pd.Timestamp, rng: np.random.Generator) -> History:
        template = h.deals.sample(n=int(rng.integers(1, 8)), replace=True, random_state=rng)
        new = template.copy()
        new["deal_id"] = [f"N{i:03d}" for i in range(len(new))]
        new["created_at"] = [later(rng, as_of) for _ in range(len(new))]
        won = rng.random(len(new)) < 0.7
        new["status"] = np.where(won, "won", "open")
        new["closed_at"] = np.where(won, new["created_at"] + pd.Timedelta(hours=7), pd.NaT)
        new["amount"] = rng.choice([1.0, 1e6], len(new))
        new.loc[new.index[:1], "product"] = "Brand new product"
        activity = pd.DataFrame(
            {"deal_id": new["deal_id"], "occurred_at": new["created_at"], "type": "call"}
        )
        return rebuild(
            h,
            deals=pd.concat([h.deals, new], ignore_index=True),
            activities=pd.concat([h.activities, activity]),
        )

    assert_unchanged(case, edit)


@given(cases)
@SETTINGS
def test_deleting_future_events_does_not_change_features(case: tuple[int, int, int]) -> None:
    def edit(h: History, as_of: pd.Timestamp, rng: np.random.Generator) -> History:
        acts, stages = h.activities, h.stage_history
        acts = acts[(acts["occurred_at"] <= as_of) | (rng.random(len(acts)) < 0.3)]
        stages = stages[(stages["changed_at"] <= as_of) | (rng.random(len(stages)) < 0.3)]
        # Deals created later disappear (but the first one stays: a history has deals).
        first = h.deals["created_at"] == h.deals["created_at"].min()
        deals = h.deals[(h.deals["created_at"] <= as_of) | first]
        known = deals["deal_id"]
        return rebuild(
            h,
            deals=deals,
            activities=acts[acts["deal_id"].isin(known)],
            stage_history=stages[stages["deal_id"].isin(known)],
        )

    assert_unchanged(case, edit)


@given(cases)
@SETTINGS
def test_changing_future_events_does_not_change_features(case: tuple[int, int, int]) -> None:
    """Future activities and stage changes move to other future times and change content;
    deals that close after as_of change outcome, closing time and final amount."""

    def edit(h: History, as_of: pd.Timestamp, rng: np.random.Generator) -> History:
        acts, stages, deals = h.activities.copy(), h.stage_history.copy(), h.deals.copy()
        future = acts["occurred_at"] > as_of
        acts.loc[future, "occurred_at"] = [later(rng, as_of) for _ in range(int(future.sum()))]
        future = stages["changed_at"] > as_of
        stages.loc[future, "stage"] = rng.choice(["Lead", "Contract", "Zed"], int(future.sum()))
        stages.loc[future, "amount"] = rng.choice([5.0, np.nan], int(future.sum()))
        stages.loc[future, "changed_at"] = [
            later(rng, as_of) + pd.Timedelta(microseconds=i) for i in range(int(future.sum()))
        ]
        closes_later = deals["closed_at"] > as_of
        n = int(closes_later.sum())
        deals.loc[closes_later, "status"] = rng.choice(["won", "lost"], n)
        deals.loc[closes_later, "closed_at"] = [later(rng, as_of) for _ in range(n)]
        deals.loc[closes_later, "amount"] = rng.choice([3.0, 3e6], n)
        return rebuild(h, deals=deals, activities=acts, stage_history=stages)

    assert_unchanged(case, edit)


@given(cases)
@SETTINGS
def test_export_time_deal_fields_are_never_read(case: tuple[int, int, int]) -> None:
    """The deals table's amount, stage and expected close date are export-time values: changing
    them for deals open at as_of changes nothing (they come from the stage history)."""

    def edit(h: History, as_of: pd.Timestamp, rng: np.random.Generator) -> History:
        deals = h.deals.copy()
        rows = open_at(h, as_of)
        n = int(rows.sum())
        deals.loc[rows, "amount"] = rng.choice([np.nan, 7.0, 7e6], n)
        deals.loc[rows, "stage"] = rng.choice(["Lead", "Closed Won"], n)
        deals.loc[rows, "expected_close_date"] = pd.Timestamp("2030-01-01")
        return rebuild(h, deals=deals)

    assert_unchanged(case, edit)


@given(cases)
@SETTINGS
def test_open_deal_ids_are_the_rows_build_features_gives(case: tuple[int, int, int]) -> None:
    seed, step, _ = case
    history, spec = base(seed)
    as_of = START + step * STEP
    ids = open_deal_ids(history, as_of)
    assert list(ids) == sorted(build_features(history, as_of, features=spec).index.astype(str))
    assert set(ids) == set(history.deals.loc[open_at(history, as_of), "deal_id"].astype(str))

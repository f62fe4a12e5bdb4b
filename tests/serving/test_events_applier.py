"""The applier's per-round helpers read only the round's deals and give what a whole-history
pass gives (serving/api/live.py, serving/events/journal.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from salesml.importers.validate import Limits
from serving.api import live
from serving.api.live import (
    HISTORY_TABLES,
    _canonical_rows,
    _only,
    _raw,
    _replaced,
    describe,
    describe_round,
    overlay,
    typed_rows,
)
from serving.api.live_context import deal_id_array, deal_id_hashes, positions_of
from serving.changes import input_hashes
from serving.events.checks import check_row
from serving.events.journal import Entry, Journal, LiveScore
from tests.features.histories import random_history


def _everywhere(base: pd.DataFrame, added: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """The whole-history comparison ``_replaced`` stands for."""
    mine = pd.MultiIndex.from_frame(base[keys].astype(str))
    theirs = pd.MultiIndex.from_frame(added[keys].astype(str))
    return np.asarray(mine.isin(theirs), dtype=bool)


@pytest.mark.parametrize("seed", range(4))
def test_replaced_rows_are_those_a_whole_history_comparison_finds(seed: int) -> None:
    history = random_history(seed, n_deals=30)
    rng = np.random.default_rng(seed)
    for table, keys in (
        ("deals", ["deal_id"]),
        ("stage_history", ["deal_id", "changed_at", "stage"]),
        ("activities", ["deal_id", "occurred_at", "type"]),
    ):
        base = getattr(history, table)
        # some existing keys sent again (an upsert), some new rows of known and new deals
        again = base.iloc[rng.choice(len(base), size=min(5, len(base)), replace=False)].copy()
        fresh = base.iloc[rng.choice(len(base), size=3)].copy()
        for column in keys[1:]:
            if pd.api.types.is_datetime64_any_dtype(fresh[column]):
                fresh[column] = fresh[column] + pd.Timedelta(seconds=1)
        fresh.iloc[0, fresh.columns.get_loc("deal_id")] = "NEW"
        added = pd.concat([again, fresh], ignore_index=True)
        got = _replaced(base, added, keys)
        np.testing.assert_array_equal(got, _everywhere(base, added, keys))
        assert got.sum() >= len(again) - again.duplicated(keys).sum()
    # a key without the deal (an activity's own id) compares every row
    acts = history.activities.assign(activity_id=[f"a{i}" for i in range(len(history.activities))])
    added = acts.iloc[[0, 3]].assign(deal_id="OTHER")
    np.testing.assert_array_equal(
        _replaced(acts, added, ["activity_id"]), _everywhere(acts, added, ["activity_id"])
    )


@pytest.mark.parametrize("seed", range(4))
def test_input_hashes_of_the_rounds_deals_alone_are_the_whole_historys(seed: int) -> None:
    history = random_history(seed, n_deals=30)
    rng = np.random.default_rng(seed)
    ids = pd.Index(rng.choice(history.deals["deal_id"].astype(str), size=6, replace=False))
    as_of = history.exported_at
    pd.testing.assert_series_equal(
        input_hashes(_only(history, ids), ids, as_of, "3"), input_hashes(history, ids, as_of, "3")
    )


def test_live_scores_survive_a_reopen_and_events_stay_durably_committed(tmp_path: Path) -> None:
    """Live scores and fold marks commit without waiting for the disk; the connection is
    back to synchronous=FULL for the events themselves after each of them."""
    journal = Journal(tmp_path)
    seqs = journal.append(
        [{"event_id": "e1", "type": "activity.logged", "occurred_at": "2026-01-01", "rows": {}}],
        "canonical",
    )
    journal.put_live([LiveScore("D1", seqs[0] or 0, "e1", "2026-01-01", {"record": {"x": 1}})])
    journal.mark_folded([s for s in seqs if s])
    assert journal._con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    journal.close()
    again = Journal(tmp_path)
    assert [s.deal_id for s in again.live_scores()] == ["D1"]
    assert again.counts() == {"events": 1, "folded": 1, "live_scores": 1}
    again.close()
    with sqlite3.connect(tmp_path / "events" / "journal.sqlite") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _no_reference(*args: object) -> pd.DataFrame:
    raise AssertionError("typed_rows fell back to _canonical for values the checks give")


@pytest.mark.parametrize("seed", range(4))
def test_typed_event_rows_are_what_the_canonical_normalisation_gives(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The applier types a round's rows value by value; ``features.history._canonical`` (a
    DataFrame per step) is the reference, on rows as the events' checks type them — gaps,
    zone-aware times and custom attributes included — and on values the fast path leaves to
    the reference (numbers as text)."""
    history = random_history(seed, n_deals=30)
    rng = np.random.default_rng(seed)
    limits = Limits(pd.Timestamp("2030-01-01"))
    for table in HISTORY_TABLES:
        frame = getattr(history, table)
        picked = frame.iloc[rng.choice(len(frame), size=min(6, len(frame)), replace=False)]
        rows = []
        for record in picked.to_dict(orient="records"):
            raw = {str(k): _raw(v) for k, v in record.items()}
            if rng.random() < 0.5:  # a field left out, or a zone-aware time
                raw.pop(str(rng.choice([k for k in raw if k != "deal_id"])))
            for key, value in raw.items():
                if isinstance(value, str) and "T" in value and rng.random() < 0.5:
                    raw[key] = value + "+02:00"
            typed, _ = check_row(table, raw, limits, None, None)
            typed.update({k: v for k, v in raw.items() if k.startswith("attr_")})
            rows.append(typed)
        expected = _canonical_rows(history, table, rows)
        with monkeypatch.context() as patched:  # the checks' types take the fast path
            patched.setattr(live, "_canonical_rows", _no_reference)
            got = typed_rows(history, table, rows)
        pd.testing.assert_frame_equal(got, expected)
        if "amount" in frame.columns:  # a number sent as text takes the reference path
            odd = [{**rows[0], "amount": "12.5"}, *rows[1:]]
            pd.testing.assert_frame_equal(
                typed_rows(history, table, odd), _canonical_rows(history, table, odd)
            )


def test_the_grown_historys_deal_ids_are_handed_over_not_read_again() -> None:
    history = random_history(5, n_deals=30)
    first = history.stage_history.iloc[0]
    rows: dict[str, list[dict[str, Any]]] = {
        "stage_history": [
            {**{str(k): v for k, v in first.items()}, "amount": 1.5}
        ],  # same key: replaced
        "activities": [
            {**{str(k): v for k, v in history.activities.iloc[0].items()}, "deal_id": "NEW"}
        ],
    }
    grown = overlay(history, rows)
    for table in HISTORY_TABLES:
        frame = getattr(grown, table)
        expected = [None if pd.isna(v) else v for v in frame["deal_id"].to_numpy(dtype=object)]
        np.testing.assert_array_equal(deal_id_array(frame), expected)
        np.testing.assert_array_equal(deal_id_hashes(frame), [hash(v) for v in expected])
    assert len(grown.stage_history) == len(history.stage_history)
    assert len(grown.activities) == len(history.activities) + 1


@pytest.mark.parametrize("collide", [False, True])
def test_a_few_deals_rows_are_found_by_id_hash_then_by_id(
    collide: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``positions_of`` compares the ids' hashes first; a hash shared by other ids (forced
    here: every hash the same) never lets another deal's rows in."""
    from serving.api import live_context

    if collide:
        monkeypatch.setattr(live_context, "_hashes", lambda ids: np.zeros(len(list(ids)), np.int64))
    history = random_history(7, n_deals=30)
    rng = np.random.default_rng(7)
    for table in HISTORY_TABLES:
        frame = getattr(history, table).copy()  # a frame not seen before
        ids = frame["deal_id"].astype(str).to_numpy()
        for size in (0, 1, 5):
            wanted = [str(v) for v in rng.choice(np.unique(ids), size=size, replace=False)]
            expected = np.flatnonzero(np.isin(ids, [*wanted, "no-such-deal"]))
            got = positions_of(frame, [*wanted, "no-such-deal"])
            np.testing.assert_array_equal(got, expected)


def test_a_round_summary_names_its_events_in_order_and_stays_bounded() -> None:
    """Every event of a deal's round is named (its kind and id), the stage moves chained from
    the stage before the round; a large round names the first few and counts the rest, and
    long ids are cut, so the summary stays one line."""

    def entry(seq: int, kind: str, fields: dict[str, Any], event_id: str) -> Entry:
        event = {"event_id": event_id, "type": kind, "fields": {"deal_id": "D1", **fields}}
        return Entry(seq, event_id, kind, "canonical", "2026-04-01T10:00:00Z", event, None, False)

    two = [
        entry(1, "deal.stage_changed", {"stage": "Proposal"}, "a-1"),
        entry(2, "deal.stage_changed", {"stage": "Negotiation"}, "a-2"),
        entry(3, "activity.logged", {"type": "call"}, "a-3"),
        entry(4, "deal.updated", {"amount": 5.0}, "a-4"),
    ]
    text = describe_round(two, "Discovery")
    assert text.startswith(
        "4 events: stage Discovery->Proposal (a-1), stage Proposal->Negotiation (a-2), "
        "call (a-3), deal.updated (amount) (a-4)"
    )
    assert describe_round(two[:1], "Discovery") == describe(two[0])  # one event: as before
    assert describe_round(two[:2], None).startswith("2 events: stage Proposal (a-1), stage ")
    many = [
        entry(n, "activity.logged", {"type": "email"}, f"evt-{n:04d}-" + "x" * 200)
        for n in range(40)
    ]
    text = describe_round(many, "Discovery")
    assert text.startswith("40 events: email (evt-0000-") and "and 36 more" in text
    assert len(text) < 400

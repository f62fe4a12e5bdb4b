"""Live answers (what-ifs and new deals) on the fast path equal the reference path: rows built and
scored together on the scoring thread equal rows scored one by one, and ``encode_row`` writes the
bytes ``ScoreRow`` validation and dumping give, on many random requests and rows."""

from __future__ import annotations

import copy
import math
import random
import threading
from typing import Any

import pandas as pd
import pytest

from salesml.scoring import score_features
from serving.api import state as state_module
from serving.api.encoding import encode_row, row_document
from serving.api.problems import ProblemError
from serving.api.schemas import DealOverrides, NewDeal
from serving.api.state import Scorer, encode_score_row, records
from serving.api.whatif import (
    NEW_PREFIX,
    Change,
    DataIndex,
    build_index,
    framed,
    live_rows,
    whatif_rows,
)
from tests.serving.conftest import Workspace

SEED = 20261207  # fixed before looking at any result


@pytest.fixture(scope="module")
def index(workspace: Workspace) -> DataIndex:
    return build_index(workspace.history)


def _random_changes(index: DataIndex, rng: random.Random, n: int) -> list[Change]:
    """``n`` random what-ifs (amount, stage, product, close date, owner) and new deals."""
    deals = list(index.features.index)
    owners = sorted(index.owner_team)
    products = sorted(index.history.deals["product"].dropna().astype(str).unique())
    out: list[Change] = []
    for i in range(n):
        if rng.random() < 0.3:
            new = NewDeal(
                created_at=(index.as_of - pd.Timedelta(days=rng.randint(0, 90))).isoformat(),
                owner_id=rng.choice(owners),
                amount=rng.choice([None, round(rng.uniform(500, 90_000), 2)]),
                stage=rng.choice(index.stages),
                product=rng.choice([None, *products]),
            )
            out.append(Change(f"{NEW_PREFIX}{i}", f"new-{i}", f"body.deals[{i}]", new=new))
            continue
        fields: dict[str, Any] = {}
        while not fields:
            if rng.random() < 0.6:
                fields["amount"] = rng.choice([0.0, 1.0, round(rng.uniform(100, 200_000), 2)])
            if rng.random() < 0.4:
                fields["stage"] = rng.choice(index.stages)
            if rng.random() < 0.3:
                fields["product"] = rng.choice(products)
            if rng.random() < 0.2:
                days = rng.randint(-30, 200)
                fields["expected_close_date"] = (index.as_of + pd.Timedelta(days=days)).date()
            if rng.random() < 0.2:
                fields["owner_id"] = rng.choice(owners)
        deal = rng.choice(deals)
        out.append(Change(deal, deal, f"body.deals[{i}]", overrides=DealOverrides(**fields)))
    return out


def _one_by_one(index: DataIndex, model: Any, change: Change) -> list[dict[str, Any]]:
    return records(score_features(whatif_rows(index, [change]), model, index.as_of))


def test_live_rows_built_and_batched_on_the_scoring_thread_equal_one_by_one(
    workspace: Workspace, index: DataIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = workspace.model.priced(index.list_prices)
    changes = _random_changes(index, random.Random(SEED), 24)
    expected = [_one_by_one(index, model, c) for c in changes]
    batch_sizes: list[int] = []
    real = state_module.score_columns

    def counted(features: pd.DataFrame, models: Any, as_of: pd.Timestamp) -> dict[str, Any]:
        batch_sizes.append(len(features))
        return real(features, models, as_of)

    monkeypatch.setattr(state_module, "score_columns", counted)
    gate = threading.Event()

    def held() -> pd.DataFrame:  # keeps the thread busy until every job is queued
        gate.wait(10)
        return whatif_rows(index, [changes[0]])  # a frame, batched with the unframed rows

    scorer = Scorer()
    try:
        futures = [scorer.submit(None, model, index.as_of, batchable=True, build=held)]
        futures += [
            scorer.submit(
                None,
                model,
                index.as_of,
                batchable=True,
                build=lambda c=c: live_rows(index, [c]),  # type: ignore[misc]
                as_records=n % 2 == 0,  # half of them as records, read once per batch
            )
            for n, c in enumerate(changes[1:])
        ]
        gate.set()
        results = [f.result(timeout=120) for f in futures]
        got = [r if isinstance(r, list) else records(r) for r in results]
    finally:
        scorer.close()
    assert got == expected
    assert max(batch_sizes) > 1, "the queued what-ifs were not scored together"
    assert sum(batch_sizes) == len(changes)


def test_one_deal_rows_framed_at_once_equal_their_frames_concatenated(index: DataIndex) -> None:
    """A scoring batch frames its one-deal rows at once (``framed``); the frame equals the
    rows' own frames concatenated, whatever vocabularies the changes give (a new product, a
    new deal) and mixed with rows given as frames."""
    changes = _random_changes(index, random.Random(SEED + 3), 30)
    parts = [live_rows(index, [c]) for c in changes]
    assert sum(isinstance(p, list) for p in parts) >= 20, "few one-deal rows: nothing tested"
    one_by_one = pd.concat([whatif_rows(index, [c]) for c in changes])
    for got in (
        framed(parts),
        framed(parts[:12]),
        framed([whatif_rows(index, [changes[0]]), *parts[1:]]),
    ):
        want = one_by_one.iloc[: len(got)]
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_a_live_row_that_cannot_be_built_fails_its_own_request_only(
    workspace: Workspace, index: DataIndex
) -> None:
    model = workspace.model.priced(index.list_prices)
    deal = str(index.features.index[0])
    good = Change(deal, deal, "body.deals[0]", overrides=DealOverrides(amount=1234.0))
    # A new deal created after the scoring time is refused (422) while its rows are built.
    late = NewDeal(created_at=(index.as_of + pd.Timedelta(days=3)).isoformat())
    bad = Change(f"{NEW_PREFIX}0", "new-1", "body.deals[0]", new=late)
    scorer = Scorer()
    try:
        failing = scorer.submit(
            None, model, index.as_of, batchable=True, build=lambda: whatif_rows(index, [bad])
        )
        fine = scorer.submit(
            None, model, index.as_of, batchable=True, build=lambda: whatif_rows(index, [good])
        )
        with pytest.raises(ProblemError) as caught:
            failing.result(timeout=60)
        assert caught.value.status == 422
        assert records(fine.result(timeout=60)) == _one_by_one(index, model, good)
    finally:
        scorer.close()


def _mutated(record: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A score row with random edits of the kinds ``ScoreRow`` coerces, refuses or passes on."""
    out = copy.deepcopy(record)
    edits = [
        lambda r: r.pop(rng.choice(sorted(r)), None),
        lambda r: r.__setitem__("score", float(r["score"]) if r.get("score") is not None else 7.0),
        lambda r: r.__setitem__("score", 41.5),
        lambda r: r.__setitem__("win_probability", 1),
        lambda r: r.__setitem__("win_probability", True),
        lambda r: r.__setitem__("expected_revenue", math.nan),
        lambda r: r.__setitem__("expected_revenue_basis", "other"),
        lambda r: r.__setitem__("score_basis", rng.choice(["other", "base_rate", None, 3])),
        lambda r: r.__setitem__("score_warning", rng.choice(["open 900 days", None, 2.5])),
        lambda r: r.__setitem__(
            "extra_column", rng.choice([1, 2.5, "x", None, True, [1], math.inf])
        ),
        lambda r: r.__setitem__("team", 12),
        lambda r: r.__setitem__("drivers", None),
        lambda r: r.__setitem__("drivers", math.nan),
        lambda r: r.__setitem__("actions", "[]"),
        lambda r: r.__setitem__("actions", '[{"id":"x","kind":"y","action":"a","reason":"b"}]'),
        lambda r: r.__setitem__(
            "drivers",
            '[{"concept":"c","feature":"f","contribution":1,"text":"t","extra":{"a":1}}]',
        ),
        lambda r: r.__setitem__(
            "drivers", '[{"concept":"c","feature":"f","value":2,"contribution":"1","text":"t"}]'
        ),
        lambda r: r.__setitem__(
            "actions",
            '[{"id":"x","kind":"y","action":"a","reason":"b","concept":null,'
            '"expected_impact":{"win_probability_points":2,"basis":"m","more":1},'
            '"changes":{"amount":5,"stage":"S"}}]',
        ),
    ]
    for _ in range(rng.randint(1, 3)):
        rng.choice(edits)(out)
    return out


def _encoded(encode: Any, record: dict[str, Any]) -> bytes | str:
    try:
        return bytes(encode(record))
    except Exception as exc:  # the same rows must fail the same way
        return type(exc).__name__


def test_fast_encoding_equals_the_pydantic_rows_on_random_requests(
    workspace: Workspace, index: DataIndex
) -> None:
    rng = random.Random(SEED + 1)
    model = workspace.model.priced(index.list_prices)
    changes = _random_changes(index, rng, 60)
    rows = [r for c in changes for r in _one_by_one(index, model, c)]
    plain = records(score_features(index.features.iloc[:40], model, index.as_of))
    fast = 0
    assert all("score_basis" in r and "score_warning" in r for r in [*rows, *plain])
    for record in [*rows, *plain]:
        assert encode_row(record) == encode_score_row(record)
        fast += row_document(record) is not None
    assert fast == len(rows) + len(plain), "score_features' rows should take the fast path"
    for record in [*rows, *plain]:
        for _ in range(3):
            edited = _mutated(record, rng)
            assert _encoded(encode_row, edited) == _encoded(encode_score_row, edited)


def test_a_new_deals_internal_key_changes_none_of_its_values(
    workspace: Workspace, index: DataIndex
) -> None:
    """New deals get a process-wide unique internal key (so concurrent requests' new deals are
    scored together); the key is never a value of the row."""
    model = workspace.model.priced(index.list_prices)
    for change in _random_changes(index, random.Random(SEED + 2), 30):
        if change.new is None:
            continue
        other = Change(f"{NEW_PREFIX}987654", change.client_id, change.where, new=change.new)
        first, second = whatif_rows(index, [change]), whatif_rows(index, [other])
        pd.testing.assert_frame_equal(
            first.reset_index(drop=True), second.reset_index(drop=True), check_exact=True
        )
        a, b = _one_by_one(index, model, change), _one_by_one(index, model, other)
        assert [{**r, "deal_id": None} for r in a] == [{**r, "deal_id": None} for r in b]

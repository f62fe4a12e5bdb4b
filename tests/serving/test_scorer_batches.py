"""The scoring thread batches concurrent requests, never one deal twice in a batch."""

from __future__ import annotations

import pandas as pd

from serving.api.state import _batches, _Job


def _job(models: object, *deal_ids: str) -> _Job:
    features = pd.DataFrame({"x": range(len(deal_ids))}, index=list(deal_ids))
    return _Job(features, models, AS_OF, batchable=True)


AS_OF = pd.Timestamp("2026-03-31")


def test_concurrent_requests_for_one_deal_are_scored_in_separate_batches() -> None:
    models = object()
    first, other, again = _job(models, "D1"), _job(models, "D2"), _job(models, "D1")
    batches = _batches([first, other, again])
    assert [[id(j) for j in b] for b in batches] == [[id(first), id(other)], [id(again)]]


def test_requests_on_other_models_are_never_batched_together() -> None:
    a, b = _job(object(), "D1"), _job(object(), "D2")
    assert [[id(j) for j in b] for b in _batches([a, b])] == [[id(a)], [id(b)]]

"""A live answer's row is encoded once: the win model's matrix feeds the score, the drivers,
the actions' columns and the timing model. Every column equals what the frame-by-frame path
(each part reading the feature frame itself) gives, on many random what-ifs and new deals
(fixed seeds) and on a batch of known deals."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_snapshots, weekly_as_of_dates
from features.spec import feature_spec
from salesml.actions import engine
from salesml.explain.api import explain_arrays
from salesml.scoring.scorer import (
    BASIS_AMOUNT,
    BASIS_LIST_PRICE,
    DRIVERS_SHOWN,
    EXPLAIN_INFO,
    Scorer,
    score_columns,
    unseen_as_unknown,
)
from serving.api.whatif import DataIndex, build_index, whatif_rows
from tests.serving.conftest import Workspace
from tests.serving.test_live_answers import _random_changes

SEEDS = (11, 12, 13)  # fixed before looking at any result


@pytest.fixture(scope="module")
def index(workspace: Workspace) -> DataIndex:
    return build_index(workspace.history)


@pytest.fixture(scope="module")
def scorer(workspace: Workspace, index: DataIndex) -> Scorer:
    """The workspace's win model with a close-timing model fitted on the same history."""
    from training.timing.fit import fit_timing

    history = workspace.history
    snapshots = build_snapshots(history, weekly_as_of_dates(history))
    timing, _ = fit_timing(snapshots, feature_spec(history), seed=0)
    return replace(workspace.model, timing=timing).priced(index.list_prices)


def _frame_by_frame(features: pd.DataFrame, model: Scorer, as_of: pd.Timestamp) -> dict[str, Any]:
    """``score_columns``' model columns with no matrix shared: the win model's ``predict``,
    drivers and actions on the frame of the columns they read, the timing model encoding the
    frame itself."""
    bundle = model.bundle
    assert bundle.booster is not None and model.timing is not None
    probability = bundle.predict(features)["win_probability"].to_numpy()
    read = [c for c in features.columns if c in bundle.features or c in EXPLAIN_INFO]
    out = {"win_probability": probability}
    # Categories the model never saw are blanked for the drivers and actions (they are read
    # as unknown: docs/win-model.md step 9), as ``score_columns`` does.
    shown = unseen_as_unknown(bundle, features[read], bundle.contract.model_matrix(features))
    out |= explain_arrays(bundle, shown, top=DRIVERS_SHOWN)
    amount = features["amount"].to_numpy(dtype=float)
    basis = np.where(np.isnan(amount), None, BASIS_AMOUNT).astype(object)
    if model.prices is not None:
        price = model.prices.for_rows(features)
        priced = np.isnan(amount) & ~np.isnan(price)
        amount = np.where(priced, price, amount)
        basis[priced] = BASIS_LIST_PRICE
    out |= model.timing.predict_columns(features, as_of, probability, amount)
    out["expected_revenue_basis"] = basis
    return out


def _assert_same(got: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        have = np.asarray(got[name])
        want = np.asarray(value, dtype=object) if isinstance(value, list) else np.asarray(value)
        assert have.dtype == want.dtype, name
        if have.dtype == object:
            assert have.tolist() == want.tolist(), name
        else:
            np.testing.assert_array_equal(have, want, err_msg=name)  # exact, NaN == NaN


@pytest.mark.parametrize("seed", SEEDS)
def test_one_matrix_answers_equal_the_frame_by_frame_path_on_random_what_ifs(
    scorer: Scorer, index: DataIndex, seed: int
) -> None:
    model = scorer
    rows = [whatif_rows(index, [c]) for c in _random_changes(index, random.Random(seed), 40)]
    actions = 0
    for features in rows:
        got = score_columns(features, model, index.as_of)
        _assert_same(got, _frame_by_frame(features, model, index.as_of))
        actions += sum(a != "[]" for a in got["actions"])
    assert actions > 0, "the random rows should fire some actions"


def test_one_matrix_answers_equal_the_frame_by_frame_path_on_a_batch(
    scorer: Scorer, index: DataIndex
) -> None:
    model = scorer
    features = index.features.iloc[:200]
    _assert_same(
        score_columns(features, model, index.as_of),
        _frame_by_frame(features, model, index.as_of),
    )


def test_the_matrix_is_actually_shared(scorer: Scorer, index: DataIndex) -> None:
    """The timing model takes the win matrix's columns, and the actions read numeric inputs
    from it (else the equality above would hold trivially)."""
    model = scorer
    assert model.timing is not None
    shared = model.timing._shared_columns(model.bundle)
    assert len(shared) >= len(model.timing.features) // 2
    features = index.features.iloc[:3]
    matrix = model.bundle.model_matrix(features)
    context = engine._Context(model.bundle, features, np.full(3, 0.5), matrix)
    numeric = [n for n in model.bundle.features if model.bundle.kinds[n] != "categorical"]
    assert numeric and all(n in context._numeric for n in numeric)
    np.testing.assert_array_equal(context.col(numeric[0]), engine._col(features, numeric[0]))

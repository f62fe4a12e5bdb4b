"""One boosting run, stopped early on several validation sets: the same boosters as one run
per set with LightGBM's own early stopping (``training.win.fit.early_stopped``)."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from salesml.models.contract import FeatureContract
from training.win import fit
from training.win.fit import MAX_ROUNDS, STOPPING_ROUNDS, early_stopped, lgb_params

FEATURES = ["signal", "weak", "noise", "tier"]


def _rows(n: int, seed: int) -> pd.DataFrame:
    """A small fixed history: one strong, one weak and one noise number and a category."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "signal": rng.normal(size=n),
            "weak": rng.normal(size=n),
            "noise": rng.normal(size=n),
            "tier": pd.Categorical(rng.choice(["a", "b", "c"], size=n)),
        }
    )
    logit = 1.2 * frame["signal"] + 0.3 * frame["weak"] + (frame["tier"] == "a") * 0.5
    frame["label_won"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    return frame


@pytest.fixture(scope="module")
def setting() -> tuple[dict[str, Any], lgb.Dataset, FeatureContract, list[pd.DataFrame]]:
    train = _rows(3000, seed=1)
    validation = _rows(1200, seed=2)
    kinds = {"signal": "numeric", "weak": "numeric", "noise": "numeric", "tier": "categorical"}
    contract = FeatureContract(FEATURES, kinds, {"tier": ["a", "b", "c"]})
    params = {**lgb_params(len(train), seed=3), "num_threads": 1}
    train_set = lgb.Dataset(
        contract.matrix(train), train["label_won"].to_numpy(), free_raw_data=False
    )
    half = np.arange(len(validation)) % 2 == 0
    sets = [validation[half], validation[~half], validation]
    return params, train_set, contract, sets


def _alone(
    params: dict[str, Any], train_set: lgb.Dataset, contract: FeatureContract, rows: pd.DataFrame
) -> lgb.Booster:
    """The booster of a run stopped early on ``rows`` alone, as the model was fitted before."""
    valid = lgb.Dataset(contract.matrix(rows), rows["label_won"].to_numpy(), reference=train_set)
    return lgb.train(
        params,
        train_set,
        num_boost_round=MAX_ROUNDS,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(STOPPING_ROUNDS, verbose=False)],
    )


def test_one_run_stops_each_set_where_a_run_of_its_own_stops(
    setting: tuple[dict[str, Any], lgb.Dataset, FeatureContract, list[pd.DataFrame]],
) -> None:
    params, train_set, contract, sets = setting
    shared = early_stopped(params, train_set, contract, sets)
    alone = [_alone(params, train_set, contract, rows) for rows in sets]
    rounds = [b.best_iteration for b in alone]
    assert [b.best_iteration for b in shared] == rounds
    assert len(set(rounds)) > 1  # the sets stop at different rounds: the cut is exercised
    probe = contract.matrix(_rows(500, seed=4))
    for ours, theirs in zip(shared, alone, strict=True):
        assert ours.num_trees() == theirs.num_trees()
        np.testing.assert_array_equal(ours.predict(probe), theirs.predict(probe))


def test_a_set_that_never_stops_keeps_every_round(
    setting: tuple[dict[str, Any], lgb.Dataset, FeatureContract, list[pd.DataFrame]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    params, train_set, contract, sets = setting
    monkeypatch.setattr(fit, "MAX_ROUNDS", 80)
    slow = {**params, "learning_rate": 0.001}  # still improving at the last round
    (booster,) = early_stopped(slow, train_set, contract, sets[2:])
    assert booster.best_iteration == 80 == booster.num_trees()

"""The win model on a flat export: it reads the deals table's amount, screens noise out, is
never worse than the plain peer it is compared with (the peer is served when it wins, and the
card says so), and is refitted on the newest matured deals."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.history import History, make_history
from training.win import fit
from training.win.fit import WinTrainingResult, train_win_model
from training.win.model_card import render_model_card

END = pd.Timestamp("2026-06-30")
NEW_SOURCE = "Newchannel"  # a lead source only the newest deals have


def flat_history(n: int = 900, seed: int = 5, new_source: bool = True) -> History:
    """Two years of deals without stage history: the amount and the lead source decide, a
    30-level ``territory`` is noise; closed deals show their closing stage and date. With
    ``new_source``, some of the newest deals come from a source no older deal has."""
    rng = np.random.default_rng(seed)
    created = END - pd.to_timedelta(np.sort(rng.uniform(5, 730, n))[::-1], unit="D")
    amount = np.round(rng.lognormal(9.0, 1.0, n), 2)
    source = rng.choice(["Web", "Referral", "Event", "Outbound"], n)
    newest = created > END - pd.Timedelta(days=200)
    source = np.where(newest & (rng.random(n) < 0.3) & new_source, NEW_SOURCE, source)
    effect = pd.Series(source).map(
        {"Web": 0.0, "Referral": 1.0, "Event": 0.4, "Outbound": -0.8, NEW_SOURCE: 0.6}
    )
    logit = 0.3 - 1.5 * (np.log(amount) - 9.0) + 1.5 * effect.to_numpy()
    won = rng.random(n) < 1 / (1 + np.exp(-logit))
    closed = pd.Series(created + pd.to_timedelta(rng.uniform(15, 60, n), unit="D"))
    still_open = (closed > END).to_numpy()
    status = np.where(still_open, "open", np.where(won, "won", "lost"))
    deals = pd.DataFrame(
        {
            "deal_id": [f"F{i:04d}" for i in range(n)],
            "created_at": created,
            "status": status,
            "closed_at": closed.where(~still_open),
            "amount": amount,
            "stage": np.where(still_open, "Proposal", "Closed"),
            "expected_close_date": closed.dt.normalize(),
            "lead_source": source,
            "owner_id": rng.choice(["R1", "R2", "R3"], n),
            "attr_territory": rng.choice([f"T{i:02d}" for i in range(30)], n),
        }
    )
    return make_history(deals, attributes={"territory": "categorical"}, exported_at=END)


@pytest.fixture(scope="module")
def trained() -> WinTrainingResult:
    return train_win_model(flat_history())


def test_a_flat_export_is_scored_on_its_deal_table_amount(trained: WinTrainingResult) -> None:
    assert "amount" in trained.flat
    assert "expected_close_date" not in trained.flat  # the closing date, on closed deals
    assert "amount" in trained.bundle.features
    card = render_model_card(trained, "1", "champion")
    assert "read the deals table's `amount` as its creation-time value" in card
    assert "leave `expected_close_date` unknown" in card


def test_a_noise_category_is_screened_out(trained: WinTrainingResult) -> None:
    assert "attr_territory" in trained.dropped
    assert "attr_territory" not in trained.bundle.features
    assert "- `attr_territory`: no significant signal" in render_model_card(trained, "1", "x")


def test_the_served_model_is_not_worse_than_the_plain_peer(trained: WinTrainingResult) -> None:
    # Whichever of the two is served, the other one is listed among the baselines.
    other = "lightgbm" if trained.served == "plain_lightgbm" else "plain_lightgbm"
    mine, theirs = trained.holdout_metrics, trained.baseline_metrics[other]
    assert (mine["log_loss"], mine["brier"]) <= (theirs["log_loss"], theirs["brier"])


def test_refit_uses_the_newest_matured_deals(trained: WinTrainingResult) -> None:
    split = trained.split
    seen = pd.concat([split.train, split.validation])
    assert NEW_SOURCE not in set(seen["lead_source"].astype(str))
    assert NEW_SOURCE in set(split.holdout["lead_source"].astype(str))
    # The served model learnt from the holdout period's deals too, with their new source.
    assert NEW_SOURCE in trained.bundle.vocabularies["lead_source"]
    labelled = trained.refit["rows"]
    assert labelled >= len(seen) + len(split.holdout)
    assert trained.bundle.metadata["refit_rows"] == labelled
    assert trained.refit["to"] == f"{split.holdout_end:%Y-%m-%d}"


def test_the_peer_is_served_when_it_wins_and_the_card_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A model left with only the deal's age (the screen dropped the rest) loses to the peer.
    def keep_only_age(*args: Any, **kwargs: Any) -> dict[str, str]:
        names = args[1]
        return {n: "test: dropped" for n in names if n != "age_days"}

    monkeypatch.setattr(fit, "concept_screen", keep_only_age)
    monkeypatch.setattr(fit, "screened_features", lambda spec, contract: [f.name for f in spec])
    result = train_win_model(flat_history(n=2000, new_source=False))
    assert result.served == "plain_lightgbm"
    assert "lightgbm" in result.baseline_metrics  # the model it replaced, for comparison
    bundle = result.bundle
    assert bundle.booster is not None and "amount" in bundle.features
    assert bundle.calibrator.name in {"platt", "isotonic", "beta", "venn_abers"}
    assert bundle.explainer.get("global"), "the served peer explains itself like any bundle"
    card = render_model_card(result, "2", "champion")
    assert "**the plain peer**" in card


def test_the_tree_size_follows_the_lower_log_loss_on_the_judging_halves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    judged: list[int] = []

    def smaller_is_better(folds: list[Any]) -> float:
        leaves = int(folds[0].booster.params["num_leaves"])
        judged.append(leaves)
        return float(leaves)

    monkeypatch.setattr(fit, "judged_log_loss", smaller_is_better)
    result = train_win_model(flat_history(new_source=False))
    assert sorted(judged) == sorted(fit.LEAVES)  # every size judged once, on both halves
    assert result.params["num_leaves"] == min(fit.LEAVES)
    assert result.served == fit.MODEL_NAME
    trees = result.bundle.booster.dump_model()["tree_info"]
    assert max(t["num_leaves"] for t in trees) <= min(fit.LEAVES)
    card = render_model_card(result, "1", "champion")
    assert f"Tree size: {min(fit.LEAVES)} leaves per tree" in card
    assert "a perfectly calibrated model with these probabilities would score about 0.0" in card


def test_base_rate_counts_each_deal_once() -> None:
    """A deal open for ten weeks is one outcome: one won deal with ten snapshots and three
    lost deals with one each is a win rate of 1/4, not 10/13."""
    rows = pd.DataFrame(
        {
            "deal_id": ["long"] * 10 + ["a", "b", "c"],
            "label_won": [1.0] * 10 + [0.0, 0.0, 0.0],
        }
    )
    assert fit.deal_rate(rows) == pytest.approx(0.25)
    assert rows["label_won"].mean() == pytest.approx(10 / 13)

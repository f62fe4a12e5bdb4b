"""An input the win model never saw in training — an unseen category, or no value where every
training row had one — is read as typical and flagged (``score_basis`` ``unseen_input``), never
read by LightGBM's defaults (NaN as 0; an unseen stage among whichever stages a split sends
right), in the batch and the API alike."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from salesml.explain import text
from salesml.models.calibration import PlattCalibrator
from salesml.models.contract import FeatureContract
from salesml.models.win.bundle import WinBundle
from salesml.models.win.seen import SEEN_KEY, SeenInputs
from salesml.scoring import BASIS_UNSEEN, Scorer, score_basis
from serving.api.app import create_app
from serving.api.schemas import NewDeal
from serving.api.whatif import Change, build_index, whatif_rows
from serving.keys import KeyStore
from tests.serving.conftest import Workspace, headers, make_app_settings

STAGES = ["Discovery", "Proposal", "Negotiation"]
FEATURES = ["current_stage", "amount_vs_list_price", "lead_source", "days_since_last_activity"]
KINDS = {
    "current_stage": "categorical",
    "amount_vs_list_price": "numeric",
    "lead_source": "categorical",
    "days_since_last_activity": "numeric",
}


def _training_rows(n: int = 3000, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Stage and price ratio always known; lead source sometimes 'missing', days since the
    last activity sometimes NaN (no activity yet): wins rise with the stage, fall with the
    price ratio and with silence."""
    rng = np.random.default_rng(seed)
    stage = rng.choice(STAGES, n, p=[0.4, 0.3, 0.3])
    ratio = rng.uniform(0.5, 1.5, n)
    source = rng.choice(["Web", "Referral", "missing"], n, p=[0.5, 0.3, 0.2])
    silence = np.where(rng.random(n) < 0.15, np.nan, rng.exponential(10, n))
    logit = (
        np.select([stage == "Discovery", stage == "Proposal"], [-1.5, 0.0], 1.5)
        - 3.0 * (ratio - 1.0)
        + np.where(source == "Referral", 0.5, 0.0)
        - 0.03 * np.nan_to_num(silence, nan=20.0)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(float)
    frame = pd.DataFrame(
        {
            "current_stage": stage,
            "amount_vs_list_price": ratio,
            "lead_source": source,
            "days_since_last_activity": silence,
        }
    )
    return frame, y


@pytest.fixture(scope="module")
def bundles() -> tuple[WinBundle, WinBundle, pd.DataFrame]:
    """The same booster with the training record (as ``train`` writes it) and without (an
    older bundle), and its training rows."""
    frame, y = _training_rows()
    vocab = {n: sorted(frame[n].unique().tolist()) for n in FEATURES if KINDS[n] != "numeric"}
    contract = FeatureContract(FEATURES, KINDS, vocab)
    params = {"objective": "binary", "num_leaves": 7, "verbosity": -1, "seed": 0}
    booster = lgb.train(params, lgb.Dataset(contract.matrix(frame), y), num_boost_round=60)
    margin = booster.predict(contract.matrix(frame), raw_score=True)
    calibrator = PlattCalibrator().fit(np.asarray(margin), y)
    record = {SEEN_KEY: SeenInputs.fit(frame, contract).as_dict()}
    new = WinBundle(FEATURES, KINDS, vocab, calibrator, booster, float(y.mean()), record)
    old = WinBundle(FEATURES, KINDS, vocab, calibrator, booster, float(y.mean()), {})
    return new, old, frame


def _row(**values: object) -> pd.DataFrame:
    base: dict[str, object] = {
        "current_stage": "Proposal",
        "amount_vs_list_price": 1.1,
        "lead_source": "Web",
        "days_since_last_activity": 5.0,
    }
    return pd.DataFrame({k: [v] for k, v in (base | values).items()}, index=["D1"])


def _p(bundle: WinBundle, row: pd.DataFrame) -> float:
    return float(Scorer(bundle).predict(row)["win_probability"].iloc[0])


def test_training_records_what_each_feature_lacked_and_its_typical_value(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    new, _, frame = bundles
    seen = new.seen
    assert seen is not None
    assert seen.missing["current_stage"] == 0 and seen.missing["amount_vs_list_price"] == 0
    assert seen.missing["lead_source"] == int((frame["lead_source"] == "missing").sum()) > 0
    assert seen.missing["days_since_last_activity"] == int(
        frame["days_since_last_activity"].isna().sum()
    )
    assert seen.typical["current_stage"] == frame["current_stage"].mode()[0] == "Discovery"
    assert seen.typical["amount_vs_list_price"] == float(frame["amount_vs_list_price"].median())
    assert seen.typical["lead_source"] == "missing"  # training had it: its learned reading
    assert "days_since_last_activity" not in seen.typical  # NaN is learned: read as is


def test_a_numeric_input_never_missing_in_training_is_read_as_its_median_not_zero(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    new, old, frame = bundles
    median = float(frame["amount_vs_list_price"].median())
    unknown = _row(amount_vs_list_price=np.nan)
    # LightGBM alone reads it as a ratio of 0 (the bug); the record reads it as typical.
    assert _p(old, unknown) == _p(old, _row(amount_vs_list_price=0.0))
    assert _p(new, unknown) == _p(new, _row(amount_vs_list_price=median))
    assert _p(new, unknown) != _p(new, _row(amount_vs_list_price=0.0))
    basis, warning = score_basis(unknown, new)
    assert basis.tolist() == [BASIS_UNSEEN]
    assert str(warning[0]).startswith("amount vs list price unknown (no training deal lacked it)")


def test_an_unseen_stage_is_read_at_the_middle_of_the_deals_readings_and_named(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    new, old, frame = bundles
    banana = _row(current_stage="Banana")
    by_stage = {s: _p(new, _row(current_stage=s)) for s in STAGES}
    # Training's shares (about 40 / 30 / 30 %) and the stage's effect rising from Discovery
    # to Negotiation put the weighted median of the deal's readings at Proposal: neither the
    # most common stage (Discovery, the lowest reading) nor, as LightGBM alone reads an unseen
    # category, whichever stages its splits send right.
    assert by_stage["Discovery"] < by_stage["Proposal"] < by_stage["Negotiation"]
    assert (frame["current_stage"] == "Discovery").mean() < 0.5
    assert _p(new, banana) == by_stage["Proposal"]
    basis, warning = score_basis(banana, new)
    assert basis.tolist() == [BASIS_UNSEEN]
    assert warning[0] == (
        "stage 'Banana' was never seen in training: read as unknown (at the middle of the "
        "deal's scores over the 3 values training saw)"
    )
    assert score_basis(banana, old)[0].tolist() == ["model"]


def test_an_unseen_category_is_read_as_missing_where_training_had_missing_values(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    new, _, _ = bundles
    webinar = _row(lead_source="Webinar")
    assert _p(new, webinar) == _p(new, _row(lead_source="missing"))
    basis, warning = score_basis(webinar, new)
    assert basis.tolist() == [BASIS_UNSEEN]
    assert "lead source 'Webinar' was never seen in training" in str(warning[0])
    assert "as training deals without one" in str(warning[0])


def test_several_unknown_inputs_are_named_together(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    new, _, _ = bundles
    row = _row(current_stage=None, amount_vs_list_price=np.nan)
    basis, warning = score_basis(row, new)
    assert basis.tolist() == [BASIS_UNSEEN]
    said = str(warning[0]).split("; ")
    assert said == [
        "stage unknown (no training deal lacked one): read at the middle of the deal's scores "
        "over the 3 values training saw",
        "amount vs list price unknown (no training deal lacked it): read as typical, "
        f"{new.seen.typical['amount_vs_list_price']:.2f}×",  # type: ignore[union-attr]
    ]


def test_ordinary_rows_and_learned_missing_values_score_as_before_and_are_not_flagged(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    new, old, frame = bundles
    rows = frame.head(400).set_axis([f"D{i}" for i in range(400)])
    assert rows["days_since_last_activity"].isna().any()
    assert (rows["lead_source"] == "missing").any()
    np.testing.assert_array_equal(
        Scorer(new).predict(rows)["win_probability"], Scorer(old).predict(rows)["win_probability"]
    )
    basis, warning = score_basis(rows, new)
    assert set(basis) == {"model"} and set(warning) == {None}


def test_a_bundle_without_the_record_flags_nothing(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    _, old, _ = bundles
    basis, warning = score_basis(_row(current_stage="Banana", amount_vs_list_price=np.nan), old)
    assert basis.tolist() == ["model"] and warning.tolist() == [None]


def test_the_frame_path_reads_unknown_inputs_as_the_matrix_path_does(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame],
) -> None:
    """(A booster coding categoricals otherwise is handed the frame; it reads an unseen stage
    as the most common, having no float matrix to read the deal's scores on.)"""
    new, _, _ = bundles
    rows = pd.concat(
        [
            _row(amount_vs_list_price=np.nan),
            _row(lead_source="Webinar"),
            _row(),
        ]
    )
    matrix_path = new.raw_score(rows)
    assert new.codes_match_booster
    frame_path = np.asarray(
        new.booster.predict(new.matrix(rows), raw_score=True),  # type: ignore[union-attr]
        dtype=float,
    )
    np.testing.assert_array_equal(matrix_path, frame_path)


def test_the_record_survives_a_save_and_load(
    bundles: tuple[WinBundle, WinBundle, pd.DataFrame], tmp_path: Path
) -> None:
    new, _, _ = bundles
    loaded = WinBundle.load(new.save(tmp_path / "bundle"))
    row = _row(current_stage="Banana", amount_vs_list_price=np.nan)
    assert loaded.seen == new.seen
    assert _p(loaded, row) == _p(new, row)
    assert replace(loaded, metadata={}).seen is None


# --- the trained workspace: the API's new deal and a CRM event -------------------------------


def _new_deal(workspace: Workspace, product: str | None) -> dict[str, object]:
    """A new deal with every field an open deal of the history has (its owner, account, team,
    region, source, type), created three days ago, with or without a product."""
    history = workspace.history
    deals = history.deals
    like = deals[(deals["status"] == "open") & deals["account_id"].notna()].iloc[0]
    deal: dict[str, object] = {
        "created_at": f"{history.exported_at - pd.Timedelta(days=3):%Y-%m-%dT00:00:00}",
        "stage": "Discovery",
        "amount": 20000.0,
        "expected_close_date": f"{history.exported_at + pd.Timedelta(days=30):%Y-%m-%d}",
    }
    for name in ("owner_id", "account_id", "team", "region", "lead_source", "deal_type"):
        if pd.notna(like[name]):
            deal[name] = str(like[name])
    return deal if product is None else deal | {"product": product}


def test_a_new_deal_without_a_product_is_read_as_typical_and_flagged(
    workspace: Workspace, client: TestClient
) -> None:
    bundle = workspace.model.bundle
    seen = bundle.seen
    assert seen is not None, "train records what the model saw"
    assert seen.missing["product"] == 0  # every training deal had a product
    product = str(workspace.history.deals["product"].dropna().iloc[0])
    body = {"deals": [{"deal": _new_deal(workspace, p)} for p in (product, None)]}
    response = client.post("/v1/deals/score", json=body, headers=headers(workspace, "writer"))
    assert response.status_code == 200, response.text
    priced, bare = response.json()["scores"]
    assert priced["score_basis"] == "model", priced["score_warning"]
    assert bare["score_basis"] == BASIS_UNSEEN
    assert bare["score_warning"].startswith(
        "product unknown (no training deal lacked one): read at the middle of the deal's scores"
    )
    # The score is the model's on the deal read with the typical values, not on a ratio of 0.
    index = build_index(workspace.history)
    new = NewDeal.model_validate(_new_deal(workspace, None))
    rows = whatif_rows(index, [Change("\x00new-0", "n", "x", new=new)])
    typical = rows.copy()
    for name in bundle.features:
        value = rows[name].iloc[0]
        unseen = (
            value not in bundle.vocabularies[name]
            if bundle.kinds[name] == "categorical"
            else pd.isna(value)
        )
        if unseen and name in seen.typical:
            typical[name] = seen.typical[name]
            if bundle.kinds[name] == "numeric":  # every such input is named
                assert f"{text.label(name).lower()} unknown" in bare["score_warning"].lower()
    # The product: the one at the weighted median of the deal's scores over every product
    # training saw (weights: their training rows).
    unread = replace(bundle, metadata={})  # LightGBM's own reading: no record
    shares = seen.shares["product"]
    tried = pd.concat([typical.assign(product=name) for name in shares])
    scores = Scorer(unread).predict(tried)["win_probability"].to_numpy()
    order = np.argsort(scores, kind="stable")
    weights = np.asarray(list(shares.values()), dtype=float)[order]
    middle = scores[order][np.argmax(np.cumsum(weights) >= weights.sum() / 2)]
    assert bare["win_probability"] == pytest.approx(float(middle), abs=1e-12)
    ratio = [d for d in bare["drivers"] if d["feature"] == "amount_vs_list_price"]
    assert all(d["text"].startswith("Amount vs list price unknown") for d in ratio)


def test_a_stage_the_model_never_saw_by_event_is_read_as_unknown_and_flagged(
    workspace: Workspace, tmp_path: Path
) -> None:
    home = workspace.copy_home(tmp_path / "home")
    key = KeyStore.for_home(home).add("crm", ["events:write", "scores:read"])[1]
    app = create_app(make_app_settings(home))
    auth = {"X-API-Key": key}
    with TestClient(app) as client:
        deal_id = sorted(app.state.serving.snapshot().data.features.index)[1]
        event = {
            "event_id": "banana-1",
            "type": "deal.stage_changed",
            "occurred_at": "2026-04-01T10:00:00Z",
            "deal": {"deal_id": deal_id, "stage": "Banana"},
        }
        answer = client.post("/v1/events", headers=auth, json={"events": [event]})
        assert answer.status_code == 202, answer.text
        seq = answer.json()["results"][0]["seq"]
        assert app.state.events.wait_scored(seq, timeout=60, saved=True)
        found = client.get(f"/v1/deals/{deal_id}", headers=auth)
    assert found.status_code == 200, found.text
    score = found.json()["score"]
    assert found.json()["run_id"] == "event:banana-1"
    assert score["score_basis"] in (BASIS_UNSEEN, "beyond_observed_ages")
    assert "stage 'Banana' was never seen in training: read as unknown" in score["score_warning"]
    stage = [d for d in score["drivers"] if d["feature"] == "current_stage"]
    assert all(d["value"] is None and d["text"].startswith("Stage unknown") for d in stage)
    assert not any("Banana" in d["text"] for d in score["drivers"])

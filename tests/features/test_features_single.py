"""The one-deal path (features.single) equals build_features on the changed history."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, open_deal_ids
from features.history import History
from features.single import (
    DealContext,
    OwnRows,
    deal_context,
    deal_features,
    deal_row,
    known_deal,
)
from tests.features.histories import STAGES, random_history


@pytest.mark.parametrize("seed", range(12))
def test_each_open_deal_with_its_rows_replaced(seed: int) -> None:
    """Replace an open deal's rows (stage history cut short or extended, another owner and
    product) and compare with the full build on the history changed the same way."""
    history = random_history(seed)
    rng = np.random.default_rng(seed)
    as_of = history.exported_at - pd.Timedelta(days=int(rng.integers(0, 30)))
    context = deal_context(history, as_of)
    ids = list(open_deal_ids(history, as_of))
    owners = [*history.deals["owner_id"].dropna().unique().tolist(), "nobody"]
    products = [*history.deals["product"].dropna().unique().tolist(), "new-product"]
    for deal_id in ids:
        deals = history.deals.copy()
        row = deals.index[deals["deal_id"] == deal_id][0]
        deals.loc[row, "owner_id"] = str(rng.choice(owners))
        deals.loc[row, "product"] = str(rng.choice(products))
        sh = history.stage_history
        mine = sh[sh["deal_id"] == deal_id]
        mine = mine.iloc[: int(rng.integers(0, len(mine) + 1))]
        if rng.random() < 0.5 and len(mine):
            extra = mine.iloc[[-1]].copy()
            extra["changed_at"] = as_of
            extra["stage"] = str(rng.choice(sh["stage"].dropna().unique()))
            extra["amount"] = float(rng.integers(1, 10_000))
            mine = pd.concat([mine, extra], ignore_index=True)
        changed = replace(
            history,
            deals=deals,
            stage_history=pd.concat([sh[sh["deal_id"] != deal_id], mine], ignore_index=True),
        )
        expected = build_features(changed, as_of, deal_ids=[deal_id], features=context.spec)
        acts = history.activities[history.activities["deal_id"] == deal_id]
        got = deal_features(context, deals.loc[[row]], mine, acts)
        assert got is not None
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=False)


def _stage_rows(
    rng: np.random.Generator, deal_id: str, created: pd.Timestamp, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Random stage rows of a new deal: known and unheard-of stages, ties, rows after as_of,
    close dates pushed by fractions of a day (a push-day total that rounds)."""
    names = [*STAGES, "Brand New Stage"]
    n = int(rng.integers(0, 6))
    span = max(int((as_of - created) / pd.Timedelta(hours=1)), 1)
    times = sorted(created + pd.Timedelta(hours=int(rng.integers(0, span + 48))) for _ in range(n))
    return pd.DataFrame(
        {
            "deal_id": [deal_id] * n,
            "stage": [str(rng.choice(names)) for _ in range(n)],
            "changed_at": times,
            "amount": [float(rng.integers(1, 10_000)) / 7 for _ in range(n)],
            "expected_close_date": [
                as_of + pd.Timedelta(minutes=int(rng.integers(0, 90 * 24 * 60))) for _ in range(n)
            ],
        }
    )


@pytest.mark.parametrize("seed", range(10))
def test_new_deals_read_the_snapshot_state_exactly(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New deals (ids sorting anywhere among the open deals, owners, accounts and products
    known or not, stage rows with new stages and fractional pushes) on larger histories: the
    per-snapshot state path gives build_features' row bit for bit, and is the path taken."""
    from features import single

    history = random_history(100 + seed, n_deals=60)
    rng = np.random.default_rng(seed)
    as_of = history.exported_at - pd.Timedelta(days=int(rng.integers(0, 5)))
    context = deal_context(history, as_of)
    assert context.state is not None
    taken: list[bool] = []
    from_state = single._from_state

    def counted(*args: object, **kwargs: object) -> object:
        out = from_state(*args, **kwargs)  # type: ignore[arg-type]
        taken.append(out is not None)
        return out

    monkeypatch.setattr(single, "_from_state", counted)
    pick = {
        "owner_id": ["R1", "R2", "R9", "R-new", None],
        "account_id": ["A1", "A3", "A-new", None],
        "product": ["Basic", "Pro", "Ghost", "Gizmo", None],
        "team": ["East", "West", None],
    }
    for n in range(6):
        deal_id = f"D{int(rng.integers(0, 70)):03d}n{n}"  # sorts among the existing ids
        created = as_of - pd.Timedelta(hours=int(rng.integers(0, 24 * 60)))
        row = history.deals.iloc[[0]].copy()
        row["deal_id"] = deal_id
        row["created_at"] = created
        row["status"] = "open"
        row["closed_at"] = pd.NaT
        for column, values in pick.items():
            row[column] = values[int(rng.integers(0, len(values)))]
        row["amount"] = float(rng.integers(1, 5000)) / 3
        row = row.astype(history.deals.dtypes.to_dict())
        stage_rows = _stage_rows(rng, deal_id, created, as_of).astype(
            history.stage_history.dtypes.to_dict()
        )
        changed = replace(
            history,
            deals=pd.concat([history.deals, row], ignore_index=True),
            stage_history=pd.concat([history.stage_history, stage_rows], ignore_index=True),
        )
        expected = build_features(changed, as_of, deal_ids=[deal_id], features=context.spec)
        got = deal_features(context, row, stage_rows, history.activities.iloc[:0])
        assert got is not None
        pd.testing.assert_frame_equal(got, expected, check_exact=True, check_index_type=False)
    assert taken and all(taken)


NAT = np.iinfo(np.int64).min


def _us(stamp: pd.Timestamp) -> int:
    return int(stamp.to_datetime64().astype("datetime64[us]").astype(np.int64))


def _changed(history: History, fields: dict[str, object], own: OwnRows) -> History:
    """``history`` with the deal of ``fields`` replaced (or added) and its stage-history and
    activity rows those of ``own`` (the batch's view of a plain what-if or new deal)."""
    deals = history.deals
    deal_id = fields["deal_id"]
    row = dict(fields)
    for column in ("created_at", "closed_at", "expected_close_date"):
        row[column] = np.array([row[column]], np.int64).view("datetime64[us]")[0]
    one = pd.DataFrame([row], columns=deals.columns).astype(deals.dtypes.to_dict())
    sh, acts = history.stage_history, history.activities
    mine = pd.DataFrame(
        {
            "deal_id": [deal_id] * len(own.stage),
            "stage": own.stage,
            "changed_at": own.changed_at.view("datetime64[us]"),
            "amount": own.amount,
            "expected_close_date": own.expected_close.view("datetime64[us]"),
        }
    ).astype(sh.dtypes.to_dict())
    own_acts = pd.DataFrame(
        {
            "deal_id": [deal_id] * len(own.activity_time),
            "occurred_at": own.activity_time.view("datetime64[us]"),
            "type": ["Meeting" if m else "email" for m in own.meeting.tolist()],
            "owner_id": ["R1"] * len(own.activity_time),
        }
    ).astype(acts.dtypes.to_dict())
    return replace(
        history,
        deals=pd.concat([deals[deals["deal_id"] != deal_id], one], ignore_index=True),
        stage_history=pd.concat([sh[sh["deal_id"] != deal_id], mine], ignore_index=True),
        activities=pd.concat([acts[acts["deal_id"] != deal_id], own_acts], ignore_index=True),
    )


def _check(context: DealContext, history: History, fields: dict[str, object], own: OwnRows) -> None:
    """The plain path's row (and its numbers and category values) is build_features' row on
    the changed history, bit for bit."""
    expected = build_features(
        _changed(history, fields, own),
        context.as_of,
        deal_ids=[fields["deal_id"]],
        features=context.spec,
    )
    row = deal_row(context, dict(fields), own)
    if len(expected) == 0:
        assert row is None
        return
    assert row is not None
    got = row.frame()
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    for f in context.spec:
        if f.kind == "numeric":
            np.testing.assert_array_equal(
                row.values[[context.positions_in_spec[f.name]]],
                expected[f.name].to_numpy(np.float64),
            )
        else:
            assert row.category(f.name) == str(expected[f.name].iat[0])


OVERRIDES = ("amount", "stage", "expected_close_date", "owner_id", "product", "team")


@pytest.mark.parametrize("seed", range(8))
def test_random_overrides_of_known_deals_on_plain_inputs(seed: int) -> None:
    """What-ifs as the API makes them (known_deal, fields replaced, the stage fields as a row
    at as_of replacing one already there): amount, stage (a new name too), close date, owner,
    product and team, in random combinations, on every open deal: build_features' row."""
    history = random_history(300 + seed, n_deals=40)
    rng = np.random.default_rng(seed)
    as_of = history.exported_at - pd.Timedelta(hours=6 * int(rng.integers(0, 40)))
    context = deal_context(history, as_of)
    now = _us(context.as_of)
    pick: dict[str, list[object]] = {
        "owner_id": ["R1", "R2", "R9", "R-new", None],
        "product": ["Basic", "Pro", "Ghost", "Gizmo", None],
        "team": ["East", "West", "North", None],
    }
    for deal_id in open_deal_ids(history, as_of):
        fields, own = known_deal(context, deal_id)
        chosen = [o for o in OVERRIDES if rng.random() < 0.4] or ["amount"]
        for name in chosen:
            if name in pick:
                fields[name] = pick[name][int(rng.integers(0, len(pick[name])))]
        if {"amount", "stage", "expected_close_date"} & set(chosen):
            seen = np.flatnonzero(own.changed_at <= now)
            last = int(seen[-1]) if len(seen) else -1
            stage = own.stage[last] if last >= 0 else None
            if "stage" in chosen or stage is None:
                stage = str(rng.choice([*STAGES, "Brand New Stage"]))
            amount = own.amount[last] if last >= 0 else np.nan
            if "amount" in chosen:
                amount = float(rng.integers(1, 10_000)) / 3
            ecd = int(own.expected_close[last]) if last >= 0 else NAT
            if "expected_close_date" in chosen:
                ecd = now + int(rng.integers(-5, 60)) * 86_400_000_000
            drop = None
            if last >= 0 and own.changed_at[last] == now and own.rows is not None:
                drop = int(own.rows[last])
            own = own.with_stage_row(str(stage), now, float(amount), ecd, drop)
        _check(context, history, fields, own)


@pytest.mark.parametrize("seed", range(6))
def test_new_deals_with_and_without_activities_on_plain_inputs(seed: int) -> None:
    """New deals from plain fields, with activities (meetings or not, some after as_of or
    without a time) or none, stage rows or none: build_features' row."""
    history = random_history(400 + seed, n_deals=40)
    rng = np.random.default_rng(seed)
    as_of = history.exported_at - pd.Timedelta(days=int(rng.integers(0, 5)))
    context = deal_context(history, as_of)
    now = _us(context.as_of)
    day = 86_400_000_000
    for n in range(8):
        created = now - int(rng.integers(0, 90)) * day // 4
        fields: dict[str, object] = {c: None for c in history.deals.columns}
        fields |= {
            "deal_id": f"D{int(rng.integers(0, 50)):03d}x{n}",
            "status": "open",
            "created_at": created,
            "closed_at": NAT,
            "expected_close_date": NAT,
            "owner_id": [None, "R1", "R3", "R-new"][n % 4],
            "product": ["Pro", None, "Gizmo", "Basic"][n % 4],
            "account_id": ["A1", "A-new", None, "A3"][n % 4],
            "amount": float(rng.integers(1, 5000)) if n % 3 else np.nan,
            "attr_score": float(rng.normal(50, 10)),
            "attr_competitor": ["BigCo", None, "Newcomer"][n % 3],
        }
        k = int(rng.integers(0, 6)) if n % 2 else 0
        times = created + rng.integers(0, max(now - created, 1) + 3 * day, size=k)
        times[rng.random(k) < 0.1] = NAT
        empty = np.zeros(0, np.int64)
        own = OwnRows([], empty, np.zeros(0), empty, times.astype(np.int64), rng.random(k) < 0.4)
        if n % 4 != 1:
            own = own.with_stage_row(
                str(rng.choice(STAGES)), created, float(rng.integers(1, 900)), now + 5 * day, None
            )
        _check(context, history, fields, own)


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type (NaN and missing equal to themselves)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if type(a) is not type(b):
        return False
    return bool(a is b or a == b or (pd.isna(a) and pd.isna(b)))


@pytest.mark.parametrize("seed", range(4))
def test_the_inputs_of_many_deals_are_each_deals_fields_and_own_rows(seed: int) -> None:
    """``inputs_of`` reads each column once for a few deals; per deal it gives what
    ``fields_of`` and ``own_rows`` give of that deal's rows alone — values and their types."""
    from features.single import fields_of, inputs_of, own_rows

    history = random_history(seed)
    rng = np.random.default_rng(seed)
    ids = history.deals["deal_id"].astype(str).tolist()
    wanted = sorted({str(d) for d in rng.choice(ids, size=12)})
    tables = (history.deals, history.stage_history, history.activities)
    parts = [t[t["deal_id"].astype(str).isin(wanted)] for t in tables]
    got = inputs_of(*parts)
    assert sorted(got) == wanted
    for deal_id in wanted:
        mine = [p[p["deal_id"].astype(str) == deal_id] for p in parts]
        fields, own = got[deal_id]
        expected = fields_of(mine[0])
        assert list(fields) == list(expected)
        assert all(_same(fields[k], v) for k, v in expected.items()), deal_id
        theirs = own_rows(mine[1], mine[2], deal_id)
        for name in ("stage", "changed_at", "amount", "expected_close", "activity_time"):
            assert _same(np.asarray(getattr(own, name)), np.asarray(getattr(theirs, name)))
        assert np.array_equal(own.meeting, theirs.meeting)


def test_a_moved_context_keeps_the_lookups_whose_inputs_it_shares() -> None:
    """``DealContext.moved`` is ``replace`` that keeps the cached lookups of unchanged inputs
    (a live round moves the as_of and patches stage rows: indexing the deals again would cost
    more than its rows) and drops the others; every cached property is accounted for."""
    import functools

    from features.single import _CACHE_INPUTS

    cached = {n for n, v in vars(DealContext).items() if isinstance(v, functools.cached_property)}
    assert cached == set(_CACHE_INPUTS)
    history = random_history(5)
    context = deal_context(history, history.exported_at)
    for name in cached:
        getattr(context, name)
    moved = context.moved(as_of=context.as_of)
    assert all(moved.__dict__[n] is context.__dict__[n] for n in cached)
    sh = history.stage_history.iloc[:-1]
    patched = context.moved(history=replace(context.history, stage_history=sh))
    assert "stage_names" not in patched.__dict__  # its input changed: computed again
    assert len(patched.stage_names) == len(sh)
    assert patched.__dict__["_positions"] is context.__dict__["_positions"]
    assert patched.__dict__["accounts"] is context.__dict__["accounts"]
    redone = context.moved(stage_values=[*context.stage_values])  # equal, not the same
    assert "base_vocab" not in redone.__dict__ and "_base_codes" not in redone.__dict__
    assert redone.base_vocab == context.base_vocab

"""The features of one deal in a history changed only in that deal (a what-if or a new deal).

``deal_features(deal_context(history, as_of), deal, stage_rows, activities)`` equals
``build_features(history', as_of, [deal_id])`` where ``history'`` is ``history`` with the deal's
row of ``deals`` and all of its stage-history and activity rows replaced by the given ones (or
added, for a deal the history lacks). It reads the history once per context, then per deal:

* every feature that reads the deal's own rows only (age, stage and amount history, activities,
  static fields, custom attributes, rep tenure, account profile, list price) comes from the
  real feature code run on a one-deal history, or from its one-row equivalent read value by
  value (the deal's arrays, activity counts, account profile, the row itself: pandas' per-call
  cost on one row is most of a live request's);
* the features that read other deals — the rep's and team's record, the rep's open pipeline,
  the account's wins, the product's typical amount, the stage order behind
  ``stage_regressions`` — from the same functions run on the context's arrays with the deal
  changed;
* categoricals on the changed history's vocabularies (kept as value counts).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from features._context import (
    SIZE_BANDS,
    SIZE_EDGES,
    Deals,
    account_features,
    deal_arrays,
    deals_from,
    product_features,
    rep_features,
)
from features._entities import (
    EntityState,
    account_values,
    changed_positions,
    entity_state,
    owner_amounts,
    product_values,
    rep_values,
)
from features._events import (
    MICROS_PER_DAY,
    NAT,
    FloatArray,
    IntArray,
    codes,
    days_between,
    micros,
    open_pairs,
    take_at,
)
from features._frame import (
    ACTIVITY_WINDOWS,
    INFO_COLUMNS,
    MEETING_TYPES,
    STATIC_COLUMNS,
    _activity_features,
    _attribute,
    _categorical,
    with_flat_values,
)
from features._stages import CodedStages, StageFeatures, code_stages, coded_stage_features
from features.build import _naive_utc
from features.history import History
from features.spec import MISSING, Feature, feature_spec, flat_columns

# Features computed from other deals than the scored one (patched in from the context).
CONTEXT_FEATURES = (
    "rep_win_rate_365d",
    "rep_closed_deals_365d",
    "rep_cycle_days_365d",
    "rep_open_deals",
    "rep_open_amount",
    "account_won_deals",
    "account_won_revenue",
    "amount_vs_product_typical",
    "stage_regressions",
)
_GROUPS = (
    ("owner_id", "owner"),
    ("team", "team"),
    ("account_id", "account"),
    ("product", "product"),
)


@dataclass(frozen=True)
class DealContext:
    """What a one-deal feature row reads from the rest of the history, built once."""

    history: History
    as_of: pd.Timestamp
    dates: IntArray  # [as_of] in microseconds
    spec: list[Feature]
    deals_table: pd.DataFrame  # sorted by deal_id, as build_features reads it
    deals: Deals
    stages: CodedStages
    open_deal: IntArray  # positions of the deals open at as_of
    open_ids: np.ndarray  # their deal_ids (sorted)
    open_amount: np.ndarray  # their amount at as_of
    sources: dict[str, str | None]  # categorical feature -> deals column / "stage" / None
    counts: dict[str, Counter[str]]  # categorical feature -> its vocabulary's value counts
    values: dict[str, list[str]]  # categorical feature -> its sorted distinct values
    stage_counts: Counter[str]  # stage name -> stage-history rows
    stage_values: list[str]  # sorted stage names
    fixed_vocab: dict[str, list[str]]  # categoricals whose vocabulary no deal changes
    flat: dict[str, str]  # deals-table columns a deal without stage history reads
    # Per-entity aggregates at as_of (None when a stage row without a stage name would make a
    # one-deal correction of the stage order inexact: then every request reads the arrays).
    state: EntityState | None = None

    def position(self, deal_id: object) -> int:
        """Position of ``deal_id`` in the context's deal arrays (-1: a deal the history lacks)."""
        return self._positions.get(deal_id, -1)

    @functools.cached_property
    def _positions(self) -> dict[Any, int]:
        return {key: i for i, key in enumerate(self.deals.index)}

    @functools.cached_property
    def stage_names(self) -> np.ndarray:
        """The stage history's ``stage`` column as objects."""
        return self.history.stage_history["stage"].to_numpy(dtype=object)

    @functools.cached_property
    def group_codes(self) -> dict[str, dict[Any, int]]:
        """owner / team / account / product -> value -> its code in the context's arrays."""
        out: dict[str, dict[Any, int]] = {}
        for _, attr in _GROUPS:
            vocab: pd.Index = getattr(self.deals, attr + "s")
            out[attr] = {v: i for i, v in reversed(list(enumerate(vocab)))}
        return out

    @functools.cached_property
    def accounts(self) -> tuple[dict[str, int], FloatArray, np.ndarray]:
        """The accounts table as ``account_profile`` reads it: each id's row, and the rows'
        head counts and industries."""
        table = self.history.accounts.drop_duplicates("account_id")
        ids = table["account_id"].to_numpy(dtype=object)
        rows = {str(v): i for i, v in reversed(list(enumerate(ids))) if not pd.isna(v)}
        employees = table["employees"].to_numpy(dtype=np.float64)
        return rows, employees, table["industry"].to_numpy(dtype=object)


def deal_context(
    history: History, as_of: pd.Timestamp, features: Sequence[Feature] | None = None
) -> DealContext:
    """Index ``history`` for one-deal feature rows at ``as_of``."""
    from features._frame import vocabularies

    spec = list(features) if features is not None else feature_spec(history)
    when = _naive_utc(as_of)
    dates = micros(pd.Series([when], dtype=object))
    deals_table = history.deals.sort_values("deal_id", kind="stable", ignore_index=True)
    deals = deal_arrays(deals_table)
    stages = code_stages(history.stage_history, deals.index)
    open_deal, q_date = open_pairs(deals.created, deals.closed, dates)
    st = coded_stage_features(stages, len(deals.index), open_deal, q_date, dates)
    st = with_flat_values(replace(history, deals=deals_table), st, open_deal)
    sources: dict[str, str | None] = {}
    counts: dict[str, Counter[str]] = {}
    fixed: dict[str, list[str]] = {}
    categorical = [f for f in spec if f.kind == "categorical"]
    for f in categorical:
        if f.name == "current_stage":
            sources[f.name] = "stage"
        elif f.name in ("account_size_band", "account_industry"):
            continue
        else:
            column = STATIC_COLUMNS.get(f.name, f.name)
            present = column in history.deals.columns
            sources[f.name] = column if present else None
            counts[f.name] = Counter(_strings(history.deals[column])) if present else Counter()
    fixed = {
        name: vocab
        for name, vocab in vocabularies(history, categorical).items()
        if name in ("account_size_band", "account_industry")
    }
    stage_counts = Counter(_strings(history.stage_history["stage"]))
    state = None
    if not (stages.stage[stages.deal >= 0] < 0).any():
        state = entity_state(
            history.reps, history.products, deals, stages, open_deal, int(dates[0])
        )
    return DealContext(
        history=history,
        as_of=when,
        dates=dates,
        spec=spec,
        deals_table=deals_table,
        deals=deals,
        stages=stages,
        open_deal=open_deal,
        open_ids=deals_table["deal_id"].to_numpy(dtype=object)[open_deal],
        open_amount=st.amount,
        sources=sources,
        counts=counts,
        values={name: sorted(c) for name, c in counts.items()},
        stage_counts=stage_counts,
        stage_values=sorted(stage_counts),
        fixed_vocab=fixed,
        flat=flat_columns(history),
        state=state,
    )


def _strings(values: pd.Series) -> list[str]:
    """The non-null values as the strings ``vocabularies`` makes of them."""
    return [str(v) for v in values.dropna().astype(str)]


def deal_features(
    context: DealContext,
    deal: pd.DataFrame,
    stage_rows: pd.DataFrame,
    activities: pd.DataFrame,
) -> pd.DataFrame | None:
    """The feature row of the one deal in ``deal``; None when it is not open at as_of.

    ``deal`` has the columns of ``history.deals``; ``stage_rows`` and ``activities`` are all
    of the deal's rows (columns of the history's tables).
    """
    deal = deal.reset_index(drop=True)
    deal_id = deal["deal_id"].iat[0]
    loc = context.position(deal_id)
    one = _one_deal_arrays(deal)
    if len(open_pairs(one.created, one.closed, context.dates)[0]) == 0:
        return None
    state = context.state
    if state is not None and loc >= 0:
        old_stage_rows = state.rows_of(loc)
    elif loc >= 0:
        old_stage_rows = np.flatnonzero(context.stages.deal == loc)
    else:
        old_stage_rows = np.zeros(0, np.int64)
    parts = _from_state(context, deal, one, loc, old_stage_rows, stage_rows)
    if parts is None:
        parts = _from_arrays(context, deal, one, loc, old_stage_rows, stage_rows)
    if parts is None:
        return None
    st, names, around = parts
    t = context.dates
    numeric: dict[str, FloatArray] = {
        "age_days": days_between(t, one.created),
        "days_in_stage": st.days_in_stage,
        "stage_regressions": st.stage_regressions,
        "days_to_expected_close": days_between(st.expected_close, t),
        "close_date_pushes": st.close_date_pushes,
        "push_days_total": st.push_days_total,
        "amount": st.amount,
        "amount_changes": st.amount_changes,
    }
    numeric |= _activities_of_one(activities, deal_id, t)
    numeric |= around
    profile = _account_profile(context, one)
    numeric["account_employees"] = profile["account_employees"]
    per_deal: dict[str, pd.Series | np.ndarray] = {
        name: deal[column].to_numpy(dtype=object) for name, column in STATIC_COLUMNS.items()
    }
    per_deal |= {k: v for k, v in profile.items() if k != "account_employees"}
    vocab, stages = _vocabularies(context, deal, loc, old_stage_rows, stage_rows)
    # st.stage codes into the union of old and new stage names; the changed history's
    # vocabulary may lack a name only the replaced rows had.
    where = {name: i for i, name in enumerate(stages)}
    stage = np.array([where[names[c]] if c >= 0 else -1 for c in st.stage], dtype=np.int64)
    return _assemble_one(deal, context.spec, vocab, stages, numeric, stage, per_deal)


_Parts = tuple[StageFeatures, list[str], dict[str, FloatArray]]


def _from_arrays(
    context: DealContext,
    deal: pd.DataFrame,
    one: Deals,
    loc: int,
    old_stage_rows: IntArray,
    stage_rows: pd.DataFrame,
) -> _Parts | None:
    """The deal's stage features (codes into the returned stage names) and the features read
    from other deals, by the batch's functions run on the context's arrays with the deal
    changed (a cost that grows with the history)."""
    history = context.history
    deal_id = deal["deal_id"].iat[0]
    d, at = _changed_deals(context, deal, one, loc)
    coded = _changed_stages(context, old_stage_rows, stage_rows, at, deal_id)
    q_one = np.array([at], dtype=np.int64)
    t = context.dates
    st = coded_stage_features(coded, len(d.created), q_one, np.zeros(1, np.int64), t)
    if len(stage_rows) == 0:
        st = _flat_values(context, deal, st)
    # The open deals in deal_id order, as build_features queries them (the open pipeline
    # sums their amounts in that order).
    if loc >= 0:
        q_deal = context.open_deal.copy()
        amount = context.open_amount.copy()
        mine = np.flatnonzero(q_deal == at)
        if len(mine) == 0:  # the deal's creation and closing are the history's: never here
            return None
        amount[mine] = st.amount
        slot = int(mine[0])
    else:
        slot = int(np.searchsorted(context.open_ids, np.asarray([deal_id], dtype=object))[0])
        q_deal = np.insert(context.open_deal, slot, at)
        amount = np.insert(context.open_amount, slot, st.amount)
    q_time = np.full(len(q_deal), t[0])
    rep = rep_features(history.reps, d, q_deal, q_time, np.zeros(len(q_deal), np.int64), amount)
    around = product_features(history.products, d, q_one, t, st.amount)
    around |= {k: v[slot : slot + 1] for k, v in rep.items()}
    around |= account_features(d, q_one, t)
    return st, coded.vocabulary, around


def _from_state(
    context: DealContext,
    deal: pd.DataFrame,
    one: Deals,
    loc: int,
    old_stage_rows: IntArray,
    stage_rows: pd.DataFrame,
) -> _Parts | None:
    """``_from_arrays`` from the context's per-entity state: the deal's own rows, its owner's
    open deals and lookups. None where the state does not apply exactly (a deal closed after
    as_of, whose closing counts in the records; a stage row without a stage name)."""
    state = context.state
    base = context.deals
    if state is None or one.closed[0] != NAT or (loc >= 0 and base.closed[loc] != NAT):
        return None
    if stage_rows["stage"].isna().any():
        return None
    deal_id = deal["deal_id"].iat[0]
    if loc >= 0:
        slot = int(np.searchsorted(context.open_deal, loc))
        if slot >= len(context.open_deal) or context.open_deal[slot] != loc:
            return None
    else:
        slot = int(np.searchsorted(context.open_ids, np.asarray([deal_id], dtype=object))[0])
    names = sorted({*context.stages.vocabulary, *_few_strings(stage_rows["stage"])})
    own = _own_stages(stage_rows, deal_id, names)
    t = context.dates
    positions = changed_positions(state, context.stages.vocabulary, names, loc, own)
    # The batch sorts the deals by id: a new deal's rows come after those of the ids before it.
    at = loc if loc >= 0 else int(base.index.searchsorted(deal_id))  # type: ignore[arg-type]
    offset = float(state.push_before[at])
    zero = np.zeros(1, np.int64)
    st = coded_stage_features(own, 1, zero, zero, t, positions=positions, push_offset=offset)
    if len(stage_rows) == 0:
        st = _flat_values(context, deal, st)
    owner = _code(context, one, "owner")
    amounts = owner_amounts(
        state, context.open_amount, owner, slot, float(st.amount[0]), new=loc < 0
    )
    owner_id = one.owners[one.owner[0]] if one.owner[0] >= 0 else None
    around = rep_values(state, owner, _code(context, one, "team"), owner_id, amounts)
    product = _code(context, one, "product")
    name = one.products[one.product[0]] if one.product[0] >= 0 else None
    around |= product_values(state, product, name, st.amount)
    around |= account_values(state, _code(context, one, "account"))
    return st, names, around


def _code(context: DealContext, one: Deals, attr: str) -> int:
    """The code of the deal's ``attr`` (owner, team, account, product) in the context's
    vocabulary, as ``_changed_deals`` gives it (a value the history lacks: the next code)."""
    code = int(getattr(one, attr)[0])
    if code < 0:
        return -1
    found = context.group_codes[attr].get(getattr(one, attr + "s")[code], -1)
    return found if found >= 0 else len(getattr(context.deals, attr + "s"))


def _flat_values(context: DealContext, deal: pd.DataFrame, st: StageFeatures) -> StageFeatures:
    """The deals table's amount and expected close date of a deal without stage history, where
    the context's leakage screen keeps them (as ``build_features`` reads them). A kept ``stage``
    column is not read here: the stage vocabulary of a what-if stays the stage history's."""
    changes: dict[str, Any] = {}
    if "amount" in context.flat and "amount" in deal.columns:
        changes["amount"] = pd.to_numeric(deal["amount"], errors="coerce").to_numpy(np.float64)
    if "expected_close_date" in context.flat and "expected_close_date" in deal.columns:
        changes["expected_close"] = micros(deal["expected_close_date"])
    return replace(st, **changes) if changes else st


def _vocabularies(
    context: DealContext,
    deal: pd.DataFrame,
    loc: int,
    old_stage_rows: IntArray,
    stage_rows: pd.DataFrame,
) -> tuple[dict[str, list[str]], list[str]]:
    """``vocabularies`` of the changed history, and its stage vocabulary: the context's,
    unless the change adds a value or removes a value's last occurrence."""
    out: dict[str, list[str]] = dict(context.fixed_vocab)
    old_names = _few_strings(context.stage_names[old_stage_rows])
    stage_values = _changed_values(
        context.stage_counts, context.stage_values, old_names, _few_strings(stage_rows["stage"])
    )
    stages = [*stage_values, MISSING]
    for name, source in context.sources.items():
        if source == "stage":
            out[name] = stages
            continue
        values = context.values[name]
        if source is not None:
            old = [] if loc < 0 else _cell_strings(context.deals_table[source].iat[loc])
            values = _changed_values(
                context.counts[name], values, old, _cell_strings(deal[source].iat[0])
            )
        out[name] = [*(v for v in values if v != MISSING), MISSING]
    return out, stages


def _changed_values(
    counts: Counter[str], values: list[str], old: list[str], new: list[str]
) -> list[str]:
    """The sorted distinct values once ``old`` occurrences are replaced by ``new`` ones."""
    if sorted(old) == sorted(new):
        return values
    changed = Counter(counts)
    changed.subtract(old)
    changed.update(new)
    return sorted(v for v, n in changed.items() if n > 0)


def _few_strings(values: pd.Series | np.ndarray) -> list[str]:
    """``_strings`` of a few values, one by one (a column conversion costs more on a few)."""
    if isinstance(values, pd.Series):
        values = values.to_numpy(dtype=object)
    return [v if isinstance(v, str) else str(v) for v in values if not pd.isna(v)]


def _cell_strings(value: object) -> list[str]:
    """``_strings`` of a one-value column."""
    return [] if pd.isna(value) else [str(value)]  # type: ignore[call-overload]


def _changed_deals(
    context: DealContext, deal: pd.DataFrame, one: Deals, loc: int
) -> tuple[Deals, int]:
    """The context's deal arrays with the deal replaced (``loc``) or appended, and its position.

    Group codes are labels: a value the history lacks gets the next free code."""
    base = context.deals
    at = loc if loc >= 0 else len(base.created)

    def put(array: np.ndarray, value: object) -> np.ndarray:
        out = array.copy() if loc >= 0 else np.append(array, np.asarray([value]))
        out[at] = value
        return out

    fields: dict[str, object] = {
        "created": put(base.created, one.created[0]),
        "closed": put(base.closed, one.closed[0]),
        "won": put(base.won, one.won[0]),
        "lost": put(base.lost, one.lost[0]),
        "final_amount": put(base.final_amount, one.final_amount[0]),
    }
    for _, attr in _GROUPS:
        vocab: pd.Index = getattr(base, attr + "s")
        code = int(getattr(one, attr)[0])
        if code < 0:
            new_code = -1
        else:
            value = getattr(one, attr + "s")[code]
            found = vocab.get_indexer(pd.Index([value]))[0]
            if found < 0:
                found = len(vocab)
                vocab = vocab.append(pd.Index([value]))
            new_code = int(found)
        fields[attr] = put(getattr(base, attr), new_code)
        fields[attr + "s"] = vocab
    index = base.index if loc >= 0 else base.index.append(pd.Index([deal["deal_id"].iat[0]]))
    return Deals(index=index, **fields), at  # type: ignore[arg-type]


def _changed_stages(
    context: DealContext, old_rows: IntArray, stage_rows: pd.DataFrame, at: int, deal_id: object
) -> CodedStages:
    """The context's coded stage history with the deal's rows replaced by ``stage_rows``."""
    base = context.stages
    names = sorted({*base.vocabulary, *_strings(stage_rows["stage"])})
    remap = np.searchsorted(np.asarray(names, dtype=object), np.asarray(base.vocabulary, object))
    keep = np.ones(len(base.deal), dtype=bool)
    keep[old_rows] = False
    new = code_stages(stage_rows, pd.Index([deal_id]))  # the deal's rows: code 0
    new_remap = np.searchsorted(
        np.asarray(names, dtype=object), np.asarray(new.vocabulary, dtype=object)
    )
    new_stage = _recode_stages(new.stage, new_remap)
    old_stage = _recode_stages(base.stage, remap)
    return CodedStages(
        deal=np.concatenate([base.deal[keep], np.where(new.deal >= 0, at, -1)]),
        time=np.concatenate([base.time[keep], new.time]),
        stage=np.concatenate([old_stage[keep], new_stage]).astype(np.int64),
        amount=np.concatenate([base.amount[keep], new.amount]),
        expected_close=np.concatenate([base.expected_close[keep], new.expected_close]),
        vocabulary=names,
    )


def _recode_stages(stage: IntArray, remap: IntArray) -> IntArray:
    if len(remap) == 0:
        return np.full(len(stage), -1, dtype=np.int64)
    return np.where(stage >= 0, remap[np.maximum(stage, 0)], -1).astype(np.int64)


def _one_deal_arrays(deal: pd.DataFrame) -> Deals:
    """``deal_arrays`` of a one-row deals table: a value's vocabulary is the value itself."""
    lookups: dict[str, tuple[IntArray, pd.Index]] = {}
    for col in ("owner_id", "team", "account_id", "product"):
        value: Any = deal[col].iat[0]
        if pd.isna(value):
            lookups[col] = (np.full(1, -1, dtype=np.int64), _EMPTY)
        else:
            lookups[col] = (np.zeros(1, dtype=np.int64), pd.Index([value]))
    return deals_from(deal, pd.Index(deal["deal_id"]), lookups)


_EMPTY = pd.Index([])


def _account_profile(context: DealContext, one: Deals) -> dict[str, np.ndarray]:
    """``account_profile(history.accounts, one)`` from the context's indexed accounts table."""
    rows, employees, industries = context.accounts
    code = int(one.account[0])
    row = np.asarray([rows.get(str(one.accounts[code]), -1) if code >= 0 else -1])
    employee = take_at(employees, row, np.nan)
    band = np.full(1, None, dtype=object)
    if not np.isnan(employee[0]):
        band[0] = SIZE_BANDS[int(np.searchsorted(SIZE_EDGES, employee, side="right")[0])]
    return {
        "account_employees": employee,
        "account_industry": take_at(industries, row, None),
        "account_size_band": band,
    }


def _assemble_one(
    deal: pd.DataFrame,
    spec: Sequence[Feature],
    vocab: dict[str, list[str]],
    stages: list[str],
    numeric: dict[str, FloatArray],
    stage: IntArray,
    per_deal: dict[str, pd.Series | np.ndarray],
) -> pd.DataFrame:
    """``assemble`` of the deal's one row, indexed by its deal_id: the same values and dtypes,
    each categorical coded by a lookup (not a column conversion), the frame built once."""
    columns: dict[str, Any] = {c: deal[c].array[:1] for c in INFO_COLUMNS[:3]}
    columns["stage"] = pd.array([stages[stage[0]] if stage[0] >= 0 else None], dtype="str")
    for f in spec:
        if f.kind == "numeric":
            values = numeric.get(f.name)
            if values is None:
                raw_values = pd.to_numeric(_attribute(deal, f.name), errors="coerce")
                values = raw_values.to_numpy(dtype=np.float64)[:1]
            columns[f.name] = np.asarray(values, dtype=np.float64)
        elif f.name == "current_stage":
            code = stage[0] if stage[0] >= 0 else len(stages) - 1
            columns[f.name] = _categorical(np.asarray([code]), stages)
        else:
            raw = per_deal[f.name] if f.name in per_deal else _attribute(deal, f.name)
            known = vocab[f.name]
            code = _category_code(raw[0] if isinstance(raw, np.ndarray) else raw.iat[0], known)
            columns[f.name] = _categorical(np.asarray([code]), known)
    return pd.DataFrame(columns, index=pd.Index(deal["deal_id"].array[:1], name="deal_id"))


def _category_code(value: object, known: list[str]) -> int:
    """``assemble``'s code of one value in ``known`` (its last entry, ``missing``, for a
    missing or unknown value)."""
    if not isinstance(value, str):
        if pd.isna(value):  # type: ignore[call-overload]
            return len(known) - 1
        value = pd.Series([value], dtype=object).astype("str").iat[0]
    try:
        return known.index(value, 0, len(known) - 1)  # type: ignore[arg-type]
    except ValueError:
        return len(known) - 1


def _activities_of_one(
    activities: pd.DataFrame, deal_id: object, t: IntArray
) -> dict[str, FloatArray]:
    """``_activity_features`` of one deal at ``t[0]``, counted on its own rows."""
    if len(activities) == 0:
        return _activity_features(activities, pd.Index([deal_id]), np.zeros(1, np.int64), t)
    times = micros(activities["occurred_at"])
    mine = (codes(activities["deal_id"], pd.Index([deal_id])) >= 0) & (times != NAT)
    now = int(t[0])
    seen = times[mine & (times <= now)]

    def upto(w: int) -> int:
        return int(np.count_nonzero(seen <= now - w * MICROS_PER_DAY))

    total = len(seen)
    within = {w: total - upto(w) for w in ACTIVITY_WINDOWS}
    last = np.asarray([seen.max() if total else NAT], dtype=np.int64)
    meeting = np.zeros(len(activities), dtype=bool)
    if "type" in activities.columns:
        types = activities["type"].astype(object).where(activities["type"].notna(), "")
        meeting = types.astype(str).str.lower().isin(MEETING_TYPES).to_numpy(dtype=bool)
    meetings = int(np.count_nonzero(meeting & mine & (times <= now)))

    def one(value: float) -> FloatArray:
        return np.asarray([value], dtype=np.float64)

    return {
        "activities_7d": one(within[7]),
        "activities_30d": one(within[30]),
        "activities_90d": one(within[90]),
        "activities_total": one(total),
        "days_since_last_activity": days_between(t, last),
        "engagement_trend": one(2 * within[30] - within[60]),
        "meetings_total": one(meetings),
    }


def _own_stages(stage_rows: pd.DataFrame, deal_id: object, names: list[str]) -> CodedStages:
    """``code_stages(stage_rows, [deal_id])`` with its stages coded into ``names`` (which
    hold them all), value by value."""
    key = str(deal_id)
    where = {name: i for i, name in enumerate(names)}
    ids = stage_rows["deal_id"].to_numpy(dtype=object)
    stages = stage_rows["stage"].to_numpy(dtype=object)
    return CodedStages(
        deal=np.asarray([0 if not pd.isna(v) and str(v) == key else -1 for v in ids], np.int64),
        time=micros(stage_rows["changed_at"]),
        stage=np.asarray([-1 if pd.isna(v) else where[str(v)] for v in stages], np.int64),
        amount=stage_rows["amount"].to_numpy(dtype=np.float64),
        expected_close=micros(stage_rows["expected_close_date"]),
        vocabulary=names,
    )

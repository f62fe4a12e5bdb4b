"""Compute every feature for many (deal, as-of date) pairs at once, as one DataFrame."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features._context import (
    SIZE_BANDS,
    Deals,
    account_features,
    account_profile,
    product_features,
    rep_features,
)
from features._events import (
    MICROS_PER_DAY,
    NAT,
    EventIndex,
    FloatArray,
    IntArray,
    codes,
    days_between,
    micros,
    take_at,
)
from features._stages import StageFeatures, stage_features, stage_vocabulary
from features.history import History
from features.spec import FIXED_FEATURES, MISSING, Feature, flat_columns, flat_deals
from salesml.schemas import ATTRIBUTE_PREFIX

INFO_COLUMNS = ("owner_id", "account_id", "team", "stage")
# Categorical features copied from a deals column (known from the deal's creation).
STATIC_COLUMNS = {
    "product": "product",
    "lead_source": "lead_source",
    "deal_type": "deal_type",
    "sales_team": "team",
    "region": "region",
}
ACTIVITY_WINDOWS = (7, 30, 60, 90)
MEETING_TYPES = ("meeting", "demo")  # activities that are a conversation with the buyer


class UnknownFeatureError(ValueError):
    """A feature list names a feature this version cannot compute."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(
            f"unknown feature(s) {', '.join(names)}: the list was made by another feature spec "
            "version; retrain the model with this version"
        )


def vocabularies(history: History, spec: Sequence[Feature]) -> dict[str, list[str]]:
    """The category vocabulary of each categorical feature: every value the history holds,
    sorted, then ``"missing"``. It depends on the history only, never on as_of."""
    sources: dict[str, pd.Series] = {
        "current_stage": history.stage_history["stage"],
        "account_industry": history.accounts["industry"],
    }
    for name, column in STATIC_COLUMNS.items():
        sources[name] = history.deals[column]
    out = {}
    for f in spec:
        if f.kind != "categorical":
            continue
        if f.name == "account_size_band":
            values = list(SIZE_BANDS)
        elif f.name == "current_stage":
            values = _once(history, "current_stages", lambda: current_stage_vocabulary(history))
        else:
            source = sources.get(f.name, history.deals.get(f.name))
            found = [] if source is None else list(source.dropna().astype(str).unique())
            values = sorted(str(v) for v in found if str(v) != MISSING)
        out[f.name] = [*values, MISSING]
    return out


# What several steps of one ``frame_parts`` call read of the same history, computed once for
# the call (the leakage screen of the deals table alone took a fifth of a batch's features):
# history id -> {what: value}. Only set inside ``frame_parts``; a history is never changed
# while its frame is computed.
_CALL_MEMO: contextvars.ContextVar[dict[tuple[int, str], Any] | None] = contextvars.ContextVar(
    "features_frame_memo", default=None
)


def _once(history: History, what: str, compute: Callable[[], Any]) -> Any:
    """``compute()``, once per history and ``what`` inside one ``frame_parts`` call."""
    memo = _CALL_MEMO.get()
    if memo is None:
        return compute()
    key = (id(history), what)
    if key not in memo:
        memo[key] = compute()
    return memo[key]


def _flat_columns(history: History) -> dict[str, str]:
    return dict(_once(history, "flat_columns", lambda: flat_columns(history)))


def _flat_deals(history: History) -> np.ndarray:
    return np.asarray(_once(history, "flat_deals", lambda: flat_deals(history)))


def _stage_names(history: History) -> list[str]:
    return list(_once(history, "stages", lambda: stage_vocabulary(history.stage_history)))


def current_stage_vocabulary(history: History) -> list[str]:
    """The stage names ``current_stage`` may take: the stage history's, plus the deals table's
    stages of deals without stage history when the leakage screen keeps that column."""
    names = set(_stage_names(history))
    if "stage" in _flat_columns(history):
        names |= set(history.deals.loc[_flat_deals(history), "stage"].dropna().astype(str))
    return sorted(names)


def with_flat_values(history: History, st: StageFeatures, q_deal: IntArray) -> StageFeatures:
    """``st`` with the deals table's amount, stage and expected close date filled in for the
    queried deals that have no stage history at all, for each column the leakage screen keeps
    (``features.spec.flat_columns``): a flat export's values are its creation-time values."""
    kept = _flat_columns(history)
    if not kept:
        return st
    deals = history.deals
    flat = _flat_deals(history)[q_deal]
    changes: dict[str, Any] = {}
    if "amount" in kept:
        amount = pd.to_numeric(deals["amount"], errors="coerce").to_numpy(dtype=np.float64)
        changes["amount"] = np.where(flat, amount[q_deal], st.amount)
    if "expected_close_date" in kept:
        expected = micros(deals["expected_close_date"])[q_deal]
        changes["expected_close"] = np.where(flat, expected, st.expected_close)
    if "stage" in kept:
        old = _stage_names(history)
        names = _once(history, "current_stages", lambda: current_stage_vocabulary(history))
        remap = np.asarray([names.index(n) for n in old] + [-1], dtype=np.int64)
        stage = remap[np.where(st.stage >= 0, st.stage, len(old))]
        mine = codes(deals["stage"], pd.Index(names))[q_deal]
        changes["stage"] = np.where(flat, mine, stage)
    return replace(st, **changes)


def feature_frame(
    history: History,
    deals: Deals,
    dates: IntArray,
    q_deal: IntArray,
    q_date: IntArray,
    spec: Sequence[Feature],
) -> pd.DataFrame:
    """INFO_COLUMNS then the features of ``spec``, one row per (q_deal, dates[q_date]) pair.

    The pairs must include every deal open at each date (a rep's open pipeline counts them).
    """
    parts = frame_parts(history, deals, dates, q_deal, q_date, spec)
    return assemble(history.deals, spec, q_deal, parts)


@dataclass(frozen=True)
class FrameParts:
    """``feature_frame``'s values before they become a frame: per query, every numeric feature
    and the stage code (into ``stages``, -1: none); per deal (its position in the history),
    each categorical feature's code into its vocabulary (``vocab``).

    Every value of a query depends on that query alone, so ``take`` of some queries assembles
    into exactly those rows of the whole frame (the batch computes the parts once, then
    assembles them slice by slice)."""

    numeric: dict[str, FloatArray]
    stage: IntArray
    categories: dict[str, IntArray]
    vocab: dict[str, list[str]]
    stages: list[str]

    def take(self, rows: slice | IntArray) -> FrameParts:
        """The parts of the queries ``rows`` (positions, or a slice: views, no copy)."""
        numeric = {name: values[rows] for name, values in self.numeric.items()}
        return replace(self, numeric=numeric, stage=self.stage[rows])


def frame_parts(
    history: History,
    deals: Deals,
    dates: IntArray,
    q_deal: IntArray,
    q_date: IntArray,
    spec: Sequence[Feature],
) -> FrameParts:
    """The values of ``feature_frame`` (same arguments), before assembly."""
    token = _CALL_MEMO.set({})
    try:
        return _frame_parts(history, deals, dates, q_deal, q_date, spec)
    finally:
        _CALL_MEMO.reset(token)


def _frame_parts(
    history: History,
    deals: Deals,
    dates: IntArray,
    q_deal: IntArray,
    q_date: IntArray,
    spec: Sequence[Feature],
) -> FrameParts:
    fixed = {f.name for f in FIXED_FEATURES}
    unknown = [
        f.name for f in spec if f.name not in fixed and not f.name.startswith(ATTRIBUTE_PREFIX)
    ]
    if unknown:
        raise UnknownFeatureError(unknown)
    q_time = dates[q_date]
    st = stage_features(history.stage_history, deals.index, q_deal, q_date, dates)
    st = with_flat_values(history, st, q_deal)
    numeric: dict[str, FloatArray] = {
        "age_days": days_between(q_time, deals.created[q_deal]),
        "days_in_stage": st.days_in_stage,
        "stage_regressions": st.stage_regressions,
        "days_to_expected_close": days_between(st.expected_close, q_time),
        "close_date_pushes": st.close_date_pushes,
        "push_days_total": st.push_days_total,
        "amount": st.amount,
        "amount_changes": st.amount_changes,
    }
    numeric |= _activity_features(history.activities, deals.index, q_deal, q_time)
    numeric |= product_features(history.products, deals, q_deal, q_time, st.amount)
    numeric |= rep_features(history.reps, deals, q_deal, q_time, q_date, st.amount)
    numeric |= account_features(deals, q_deal, q_time)
    profile = account_profile(history.accounts, deals)
    numeric["account_employees"] = profile["account_employees"][q_deal]
    for f in spec:
        if f.kind == "numeric" and f.name not in numeric:
            raw_values = pd.to_numeric(_attribute(history.deals, f.name), errors="coerce")
            numeric[f.name] = raw_values.to_numpy(dtype=np.float64)[q_deal]
    # Static categoricals: one value per deal, coded once, then repeated per as_of date.
    per_deal: dict[str, pd.Series | np.ndarray] = {
        name: history.deals[column] for name, column in STATIC_COLUMNS.items()
    }
    per_deal |= {k: v for k, v in profile.items() if k != "account_employees"}
    vocab = vocabularies(history, spec)
    current = _once(history, "current_stages", lambda: current_stage_vocabulary(history))
    stages = vocab.get("current_stage", [*current, MISSING])
    categories = {}
    for f in spec:
        if f.kind == "numeric" or f.name == "current_stage":
            continue
        raw = per_deal[f.name] if f.name in per_deal else _attribute(history.deals, f.name)
        known = vocab[f.name]
        code = codes(pd.Series(raw, dtype=object).astype("str"), pd.Index(known[:-1]))
        categories[f.name] = np.where(code >= 0, code, len(known) - 1)
    return FrameParts(numeric, st.stage, categories, vocab, stages)


def assemble(
    deals: pd.DataFrame, spec: Sequence[Feature], q_deal: IntArray, parts: FrameParts
) -> pd.DataFrame:
    """The frame of ``feature_frame`` from its parts (``frame_parts``, or a ``take`` of them
    with the ``q_deal`` of those queries)."""
    columns: dict[str, Any] = {
        c: deals[c].take(q_deal).reset_index(drop=True) for c in INFO_COLUMNS[:3]
    }
    stages, stage = parts.stages, parts.stage
    columns["stage"] = pd.Series(_categorical(stage, stages), dtype="str")
    for f in spec:
        if f.kind == "numeric":
            columns[f.name] = np.asarray(parts.numeric[f.name], dtype=np.float64)
        elif f.name == "current_stage":
            columns[f.name] = _categorical(np.where(stage >= 0, stage, len(stages) - 1), stages)
        else:
            columns[f.name] = _categorical(parts.categories[f.name][q_deal], parts.vocab[f.name])
    return pd.DataFrame(columns)


def _categorical(code: IntArray, categories: list[str]) -> pd.Categorical[str]:
    """Codes into ``categories`` (-1: NaN) as a pandas Categorical."""
    dtype: Any = _category_dtype(tuple(categories))
    out: pd.Categorical[str] = pd.Categorical.from_codes(
        np.asarray(code, dtype=np.int64), dtype=dtype
    )
    return out


@functools.lru_cache(maxsize=512)
def _category_dtype(categories: tuple[str, ...]) -> pd.CategoricalDtype:
    """The dtype of ``pd.Categorical.from_codes(codes, pd.Index(list(categories)))``, built
    once per vocabulary (dtypes are immutable)."""
    return pd.CategoricalDtype(pd.Index(list(categories)), ordered=False)


def _attribute(deals: pd.DataFrame, name: str) -> pd.Series:
    """A custom attribute column (all null when the history lacks it)."""
    if name not in deals.columns:
        return pd.Series(np.full(len(deals), np.nan))
    return deals[name]


def _activity_features(
    activities: pd.DataFrame, deal_index: pd.Index, q_deal: IntArray, q_time: IntArray
) -> dict[str, FloatArray]:
    """Activity counts in trailing windows ``(as_of - w, as_of]``, recency and trend."""
    deal = codes(activities["deal_id"], deal_index)
    queried = np.zeros(len(deal_index) + 1, dtype=bool)  # last slot: deal -1
    queried[q_deal] = True
    # Only the queried deals' activities matter (scoring asks for the few open deals).
    ev = EventIndex(
        np.where(queried[deal], deal, -1), micros(activities["occurred_at"]), len(deal_index)
    )
    total = ev.count_upto(q_deal, q_time)
    within = {
        w: total - ev.count_upto(q_deal, q_time - w * MICROS_PER_DAY) for w in ACTIVITY_WINDOWS
    }
    last_time = take_at(ev.time, ev.last_upto(q_deal, q_time), NAT)
    meeting = np.zeros(len(activities), dtype=bool)
    if "type" in activities.columns:
        meeting = _meetings(activities["type"])
    meetings = EventIndex(
        np.where(queried[deal] & meeting, deal, -1),
        micros(activities["occurred_at"]),
        len(deal_index),
    )
    return {
        "activities_7d": within[7].astype(np.float64),
        "activities_30d": within[30].astype(np.float64),
        "activities_90d": within[90].astype(np.float64),
        "activities_total": total.astype(np.float64),
        "days_since_last_activity": days_between(q_time, last_time),
        "engagement_trend": (2 * within[30] - within[60]).astype(np.float64),
        "meetings_total": meetings.count_upto(q_deal, q_time).astype(np.float64),
    }


def _meetings(types: pd.Series) -> np.ndarray:
    """Whether each activity's type is one of ``MEETING_TYPES`` (any case; missing: no). A
    categorical column (the batch's compact history) is judged once per category."""
    if isinstance(types.dtype, pd.CategoricalDtype):
        categories = pd.Series(types.cat.categories)
        flags = np.append(_meetings(categories.astype(object)), False)  # code -1: missing
        return np.asarray(flags[types.cat.codes.to_numpy()], dtype=bool)
    text = types.astype(object).where(types.notna(), "")
    return text.astype(str).str.lower().isin(MEETING_TYPES).to_numpy(dtype=bool)


def among(values: pd.Series, ids: pd.Index) -> np.ndarray:
    """Whether each of ``values`` is one of ``ids`` (compared as text; missing: no), matched in
    Arrow: pandas' ``isin`` on Arrow-backed text made a Python object a value (at a million
    open deals, longer than building the features it skipped)."""
    if len(values) == 0 or len(ids) == 0:
        return np.zeros(len(values), dtype=bool)
    found = pc.is_in(
        pa.array(values.astype(str), type=pa.string(), from_pandas=True),
        value_set=pa.array(pd.Index(ids).astype(str), type=pa.string(), from_pandas=True),
        skip_nulls=True,
    )
    return np.asarray(pc.fill_null(found, False).to_numpy(zero_copy_only=False), dtype=bool)

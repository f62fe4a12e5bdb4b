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
import math
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
)
from features._frame import (
    ACTIVITY_WINDOWS,
    INFO_COLUMNS,
    STATIC_COLUMNS,
    _category_dtype,
    _meetings,
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

    def moved(self, **changes: Any) -> DealContext:
        """``dataclasses.replace(self, **changes)`` keeping the lookups indexed so far (the
        cached properties below) whose inputs are the very same objects in the new context:
        a context kept up to date per round (``serving.api.live_context``) changes its as_of,
        state or stage rows, and indexing the deals, vocabularies and accounts again would
        cost each round more than its deals' rows."""
        new = replace(self, **changes)
        for name, inputs in _CACHE_INPUTS.items():
            if name in self.__dict__ and all(
                a is b for a, b in zip(inputs(self), inputs(new), strict=True)
            ):
                new.__dict__[name] = self.__dict__[name]
        return new

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

    # What a feature row reads per request, indexed once (on first use) for plain lookups.
    @functools.cached_property
    def columns(self) -> dict[str, _Column]:
        """The deals table's columns a feature row reads (not the deal's name, not unread
        custom fields), each as numbers or as codes into its distinct values: what
        ``known_deal`` reads a deal's fields from, in about the memory of the numbers."""
        read = {
            *DATETIME_COLUMNS,
            "status",
            "amount",
            "stage",
            *INFO_COLUMNS[:3],
            "product",
            *STATIC_COLUMNS.values(),
            *(s for s in self.sources.values() if s is not None and s != "stage"),
            *(f.name for f in self.spec),
        }
        out: dict[str, _Column] = {}
        for column in self.deals_table.columns:
            name = str(column)
            if name not in read:
                continue
            values = self.deals_table[column]
            if name in DATETIME_COLUMNS:
                out[name] = _Column(micros(values), None)
            elif values.dtype == np.float64:
                out[name] = _Column(values.to_numpy(), None)
            else:
                codes_, uniques = pd.factorize(values, use_na_sentinel=True)
                out[name] = _Column(codes_, np.append(uniques.to_numpy(dtype=object), np.nan))
        return out

    @functools.cached_property
    def activity_index(self) -> _Activities:
        """Each deal's activities (times, meeting flags), grouped by deal position."""
        acts = self.history.activities
        deal = codes(acts["deal_id"], self.deals.index)
        order = np.argsort(deal, kind="stable")
        order = order[deal[order] >= 0]
        meeting = np.zeros(len(acts), dtype=bool)
        if "type" in acts.columns:
            meeting = _meetings(acts["type"])
        starts = np.searchsorted(deal[order], np.arange(len(self.deals.index) + 1))
        return _Activities(micros(acts["occurred_at"])[order], meeting[order], starts)

    @functools.cached_property
    def layout(self) -> _Layout:
        kinds = np.array([f.kind == "numeric" for f in self.spec], dtype=bool)
        return _Layout(
            columns=pd.Index([*INFO_COLUMNS, *(f.name for f in self.spec)]),
            numeric=np.flatnonzero(kinds),
            categorical=np.flatnonzero(~kinds),
        )

    @functools.cached_property
    def positions_in_spec(self) -> dict[str, int]:
        return {f.name: i for i, f in enumerate(self.spec)}

    @functools.cached_property
    def info_dtypes(self) -> tuple[Any, ...]:
        return tuple(self.deals_table[c].dtype for c in INFO_COLUMNS[:3])

    @functools.cached_property
    def id_dtype(self) -> Any:
        return self.deals_table["deal_id"].dtype

    @functools.cached_property
    def stage_code(self) -> dict[str, int]:
        """Stage name -> its code in the context's stage vocabulary."""
        return {name: i for i, name in enumerate(self.stages.vocabulary)}

    @functools.cached_property
    def base_stages(self) -> list[str]:
        """``current_stage``'s vocabulary when a change adds or removes no stage name."""
        return [*self.stage_values, MISSING]

    @functools.cached_property
    def base_vocab(self) -> dict[str, list[str]]:
        """Each categorical's vocabulary when a change adds or removes no value."""
        out: dict[str, list[str]] = dict(self.fixed_vocab)
        for name, source in self.sources.items():
            if source == "stage":
                out[name] = self.base_stages
            else:
                out[name] = [*(v for v in self.values[name] if v != MISSING), MISSING]
        return out

    @functools.cached_property
    def _base_codes(self) -> dict[str, tuple[list[str], dict[str, int], pd.CategoricalDtype]]:
        return {
            name: (vocab, {v: i for i, v in enumerate(vocab[:-1])}, _category_dtype(tuple(vocab)))
            for name, vocab in self.base_vocab.items()
        }

    def code_of(self, name: str, vocab: list[str]) -> dict[str, int] | None:
        """Positions of ``vocab``'s values (but ``missing``) when it is the base vocabulary."""
        base = self._base_codes.get(name)
        return base[1] if base is not None and base[0] is vocab else None

    def category_dtype(self, name: str, vocab: list[str]) -> pd.CategoricalDtype:
        """The categorical dtype of ``vocab`` (built once for the base vocabularies)."""
        base = self._base_codes.get(name)
        if base is not None and base[0] is vocab:
            return base[2]
        return _category_dtype(tuple(vocab))


def _vocab_inputs(c: DealContext) -> tuple[object, ...]:
    return (c.fixed_vocab, c.sources, c.values, c.stage_values)


# Each cached property of ``DealContext`` -> the objects it is computed from (``moved`` keeps
# it when they are the same objects). A property not named here is computed again.
_CACHE_INPUTS: dict[str, Any] = {
    "_positions": lambda c: (c.deals,),
    "stage_names": lambda c: (c.history.stage_history,),
    "group_codes": lambda c: (c.deals,),
    "accounts": lambda c: (c.history.accounts,),
    "columns": lambda c: (c.deals_table, c.sources, c.spec),
    "activity_index": lambda c: (c.history.activities, c.deals),
    "layout": lambda c: (c.spec,),
    "positions_in_spec": lambda c: (c.spec,),
    "info_dtypes": lambda c: (c.deals_table,),
    "id_dtype": lambda c: (c.deals_table,),
    "stage_code": lambda c: (c.stages.vocabulary,),
    "base_stages": lambda c: (c.stage_values,),
    "base_vocab": _vocab_inputs,
    "_base_codes": _vocab_inputs,
}


@dataclass(frozen=True)
class _Column:
    """A deals column: its values (``labels`` None), or codes into ``labels`` (-1: missing,
    the last label)."""

    values: np.ndarray
    labels: np.ndarray | None

    def at(self, loc: int) -> object:
        value = self.values[loc]
        return value.item() if self.labels is None else self.labels[value]


@dataclass(frozen=True)
class _Activities:
    time: IntArray  # sorted by deal position (stable)
    meeting: np.ndarray
    starts: IntArray  # per deal position (+1): where its activities start


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


DATETIME_COLUMNS = ("created_at", "closed_at", "expected_close_date")


@dataclass(frozen=True)
class OwnRows:
    """A deal's own stage-history and activity rows as plain arrays: the one-deal path's input
    without frames (``own_rows`` makes it of frames, ``known_deal`` of a deal the context
    holds). Stage rows in the history's order; times in microseconds (``NAT``: missing)."""

    stage: list[object]  # stage names (None: missing)
    changed_at: IntArray
    amount: FloatArray
    expected_close: IntArray
    activity_time: IntArray  # the deal's activities' times (NAT: missing)
    meeting: np.ndarray  # whether each activity is a meeting (``MEETING_TYPES``)
    rows: IntArray | None = None  # stage rows' positions in the history (a known deal's)

    def with_stage_row(
        self, stage: str, changed_at: int, amount: float, expected_close: int, drop: int | None
    ) -> OwnRows:
        """These rows with the history row ``drop`` (a position in ``rows``'s terms, None:
        none) removed and a stage row added last."""
        keep = np.ones(len(self.stage), dtype=bool)
        if drop is not None and self.rows is not None:
            keep &= self.rows != drop
        return replace(
            self,
            stage=[s for s, k in zip(self.stage, keep.tolist(), strict=True) if k] + [stage],
            changed_at=np.append(self.changed_at[keep], np.int64(changed_at)),
            amount=np.append(self.amount[keep], float(amount)),
            expected_close=np.append(self.expected_close[keep], np.int64(expected_close)),
            rows=None,
        )


@dataclass(frozen=True)
class FeatureRow:
    """One deal's feature row: ``values`` in ``spec`` order (a number, or a categorical's code
    into ``vocabularies[name]``, whose last entry is ``missing``); ``frame()`` is the row
    ``build_features`` gives."""

    context: DealContext
    deal_id: object
    info: tuple[object, object, object]  # owner_id, account_id, team
    stage: str | None
    values: FloatArray
    vocabularies: dict[str, list[str]]

    def category(self, name: str) -> str:
        """The value of categorical feature ``name``."""
        i = self.context.positions_in_spec[name]
        return self.vocabularies[name][int(self.values[i])]

    def frame(self) -> pd.DataFrame:
        """The row as ``build_features`` gives it: INFO_COLUMNS, then the features, indexed by
        deal_id; built block by block (a frame of 40 one-value columns costs ~1.5 ms)."""
        from pandas.api.internals import (  # type: ignore[import-not-found]  # no stubs yet
            create_dataframe_from_blocks,
        )

        context = self.context
        layout = context.layout
        dtypes = context.info_dtypes
        blocks: list[tuple[Any, np.ndarray]] = [
            (_one_value(v, dtypes[i]), np.array([i])) for i, v in enumerate(self.info)
        ]
        blocks.append((_one_value(self.stage, _STR), np.array([3])))
        blocks.append((self.values[layout.numeric][:, None], layout.numeric + 4))
        for i in layout.categorical.tolist():
            name = context.spec[i].name
            dtype = context.category_dtype(name, self.vocabularies[name])
            codes_ = np.array([int(self.values[i])], dtype=np.int64)
            blocks.append((pd.Categorical.from_codes(codes_, dtype=dtype), np.array([i + 4])))
        index = pd.Index(_one_value(self.deal_id, context.id_dtype), name="deal_id")
        frame: pd.DataFrame = create_dataframe_from_blocks(
            blocks, index=index, columns=layout.columns
        )
        return frame


def rows_frame(rows: Sequence[FeatureRow]) -> pd.DataFrame:
    """``pd.concat([row.frame() for row in rows])`` built once: one block per dtype for all the
    rows (a live scoring batch of 20 rows pays ~20 frames and a concat otherwise). Rows of one
    context whose categoricals share vocabularies; other rows are framed one by one."""
    from pandas.api.internals import create_dataframe_from_blocks

    first = rows[0]
    context = first.context
    if len(rows) == 1 or any(
        r.context is not context or r.vocabularies != first.vocabularies for r in rows[1:]
    ):
        return pd.concat([r.frame() for r in rows]) if len(rows) > 1 else first.frame()
    layout = context.layout
    dtypes = context.info_dtypes
    blocks: list[tuple[Any, np.ndarray]] = [
        (_values([r.info[i] for r in rows], dtypes[i]), np.array([i])) for i in range(len(dtypes))
    ]
    blocks.append((_values([r.stage for r in rows], _STR), np.array([3])))
    numeric = np.stack([r.values[layout.numeric] for r in rows], axis=1)
    blocks.append((numeric, layout.numeric + 4))
    for i in layout.categorical.tolist():
        name = context.spec[i].name
        dtype = context.category_dtype(name, first.vocabularies[name])
        codes_ = np.array([int(r.values[i]) for r in rows], dtype=np.int64)
        blocks.append((pd.Categorical.from_codes(codes_, dtype=dtype), np.array([i + 4])))
    index = pd.Index(_values([r.deal_id for r in rows], context.id_dtype), name="deal_id")
    frame: pd.DataFrame = create_dataframe_from_blocks(blocks, index=index, columns=layout.columns)
    return frame


def _values(values: list[object], dtype: Any) -> Any:
    """``_one_value`` of several values: an array of ``dtype``."""
    if isinstance(dtype, np.dtype):
        fill = np.nan if dtype.kind == "f" else None
        return np.array([fill if fill is not None and _isna(v) else v for v in values], dtype)
    return pd.array([None if _isna(v) else v for v in values], dtype=dtype)


@dataclass(frozen=True)
class _Layout:
    columns: pd.Index  # INFO_COLUMNS then the spec's names
    numeric: IntArray  # positions in the spec of the numeric features
    categorical: IntArray


_STR = pd.api.types.pandas_dtype("str")


@functools.lru_cache(maxsize=4096)
def _cached_value(value: object, dtype: Any) -> Any:
    return pd.array([value], dtype=dtype)


def _one_value(value: object, dtype: Any) -> Any:
    """A one-value array of ``dtype`` (extension arrays of a value seen before are reused:
    immutable in the frames built here, and ~50 us each to build)."""
    missing = _isna(value)
    if isinstance(dtype, np.dtype):
        return np.array([np.nan if missing and dtype.kind == "f" else value], dtype=dtype)
    try:
        return _cached_value(None if missing else value, dtype)
    except TypeError:  # unhashable
        return pd.array([None if missing else value], dtype=dtype)


def _isna(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float):
        return math.isnan(value)
    if isinstance(value, str):
        return False
    return bool(pd.isna(value)) if np.ndim(value) == 0 else False  # type: ignore[call-overload,arg-type]


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
    fields = fields_of(deal)
    row = deal_row(context, fields, own_rows(stage_rows, activities, fields["deal_id"]))
    return None if row is None else row.frame()


def fields_of(deal: pd.DataFrame) -> dict[str, object]:
    """The one row of a deals frame as plain values (datetimes in microseconds)."""
    out: dict[str, object] = {}
    for column in deal.columns:
        name = str(column)
        if name in DATETIME_COLUMNS:
            out[name] = int(micros(deal[column].iloc[:1])[0])
        else:
            out[name] = deal[column].iat[0]
    return out


def own_rows(stage_rows: pd.DataFrame, activities: pd.DataFrame, deal_id: object) -> OwnRows:
    """The rows of ``deal_id`` among ``stage_rows`` and ``activities`` (frames with the history
    tables' columns) as ``OwnRows``."""
    key = str(deal_id)
    ids = stage_rows["deal_id"].to_numpy(dtype=object)
    mine = np.asarray([not _isna(v) and str(v) == key for v in ids], dtype=bool)
    stages = stage_rows["stage"].to_numpy(dtype=object)[mine]
    times = micros(activities["occurred_at"]) if len(activities) else np.zeros(0, np.int64)
    acts = np.asarray(
        [not _isna(v) and str(v) == key for v in activities["deal_id"].to_numpy(dtype=object)],
        dtype=bool,
    )
    meeting = np.zeros(len(activities), dtype=bool)
    if "type" in activities.columns and len(activities):
        meeting = _meetings(activities["type"])
    return OwnRows(
        stage=[None if _isna(v) else v for v in stages.tolist()],
        changed_at=micros(stage_rows["changed_at"])[mine] if len(mine) else np.zeros(0, np.int64),
        amount=stage_rows["amount"].to_numpy(dtype=np.float64)[mine],
        expected_close=(
            micros(stage_rows["expected_close_date"])[mine] if len(mine) else np.zeros(0, np.int64)
        ),
        activity_time=times[acts],
        meeting=meeting[acts],
    )


def inputs_of(
    deals: pd.DataFrame, stage_rows: pd.DataFrame, activities: pd.DataFrame
) -> dict[str, tuple[dict[str, object], OwnRows]]:
    """``fields_of`` and ``own_rows`` of every deal in ``deals`` (its first row), keyed by the
    deal id as text, each column read once for all of them: a round of live events scores a
    few deals, and a frame per deal costs more than their rows (``stage_rows`` and
    ``activities``: those deals' rows, in the history's order)."""
    n = len(deals)
    columns: dict[str, Any] = {}
    for column in deals.columns:
        name = str(column)
        values = deals[column]
        if name in DATETIME_COLUMNS:
            columns[name] = [int(v) for v in micros(values)]
        else:
            # what ``values.iat[i]`` gives: the numpy array's scalar, or the extension array's
            columns[name] = (
                values.to_numpy() if isinstance(values.dtype, np.dtype) else values.array
            )
    fields: dict[str, dict[str, object]] = {}
    for i in range(n):
        key = deals["deal_id"].iat[i]
        if _isna(key) or str(key) in fields:
            continue
        fields[str(key)] = {name: values[i] for name, values in columns.items()}
    stage_at = _positions_by_deal(stage_rows, fields)
    act_at = _positions_by_deal(activities, fields)
    stages = stage_rows["stage"].to_numpy(dtype=object)
    changed = micros(stage_rows["changed_at"]) if len(stage_rows) else np.zeros(0, np.int64)
    amount = stage_rows["amount"].to_numpy(dtype=np.float64)
    close = micros(stage_rows["expected_close_date"]) if len(stage_rows) else np.zeros(0, np.int64)
    times = micros(activities["occurred_at"]) if len(activities) else np.zeros(0, np.int64)
    meeting = np.zeros(len(activities), dtype=bool)
    if "type" in activities.columns and len(activities):
        meeting = _meetings(activities["type"])
    empty = np.zeros(0, np.int64)
    out = {}
    for key, row in fields.items():
        mine, acts = stage_at.get(key, empty), act_at.get(key, empty)
        own = OwnRows(
            stage=[None if _isna(v) else v for v in stages[mine].tolist()],
            changed_at=changed[mine],
            amount=amount[mine],
            expected_close=close[mine],
            activity_time=times[acts],
            meeting=meeting[acts],
        )
        out[key] = (row, own)
    return out


def _positions_by_deal(frame: pd.DataFrame, keys: Any) -> dict[str, IntArray]:
    """``deal_id as text -> its rows' positions in frame`` (in frame order), for ``keys``."""
    found: dict[str, list[int]] = {}
    for i, v in enumerate(frame["deal_id"].to_numpy(dtype=object).tolist()):
        if not _isna(v) and str(v) in keys:
            found.setdefault(str(v), []).append(i)
    return {k: np.asarray(p, dtype=np.int64) for k, p in found.items()}


def known_deal(context: DealContext, deal_id: object) -> tuple[dict[str, object], OwnRows]:
    """The plain inputs of a deal the context holds (its fields, a copy to change, and its own
    rows): what a what-if changes before ``deal_row``. KeyError for an unknown deal."""
    loc = context.position(deal_id)
    if loc < 0:
        raise KeyError(deal_id)
    fields = {name: column.at(loc) for name, column in context.columns.items()}
    fields["deal_id"] = context.deals.index[loc]
    stages = context.stages
    if context.state is not None:
        rows = context.state.rows_of(loc)
    else:
        rows = np.flatnonzero(stages.deal == loc)
    names = context.stage_names[rows]
    acts = context.activity_index
    lo, hi = int(acts.starts[loc]), int(acts.starts[loc + 1])
    own = OwnRows(
        stage=[None if _isna(v) else v for v in names.tolist()],
        changed_at=stages.time[rows],
        amount=stages.amount[rows],
        expected_close=stages.expected_close[rows],
        activity_time=acts.time[lo:hi],
        meeting=acts.meeting[lo:hi],
        rows=rows,
    )
    return fields, own


def deal_row(context: DealContext, fields: dict[str, object], own: OwnRows) -> FeatureRow | None:
    """The feature row of the deal with ``fields`` (the deals table's columns, datetimes in
    microseconds) and its own rows ``own``; None when it is not open at as_of."""
    deal_id = fields["deal_id"]
    loc = context.position(deal_id)
    t = context.dates
    now = int(t[0])
    created, closed = int(fields["created_at"]), int(fields["closed_at"])  # type: ignore[call-overload]
    if not (created <= now and (closed == NAT or closed > now)):
        return None
    state = context.state
    if state is not None and loc >= 0:
        old_stage_rows = state.rows_of(loc)
    elif loc >= 0:
        old_stage_rows = np.flatnonzero(context.stages.deal == loc)
    else:
        old_stage_rows = np.zeros(0, np.int64)
    new_names = [str(v) for v in own.stage if v is not None]
    parts = _from_state(context, fields, loc, own, new_names)
    if parts is None:
        parts = _from_frames(context, fields, loc, old_stage_rows, own)
    if parts is None:
        return None
    st, names, around = parts
    created_at = np.array([created], dtype=np.int64)
    numeric: dict[str, FloatArray] = {
        "age_days": days_between(t, created_at),
        "days_in_stage": st.days_in_stage,
        "stage_regressions": st.stage_regressions,
        "days_to_expected_close": days_between(st.expected_close, t),
        "close_date_pushes": st.close_date_pushes,
        "push_days_total": st.push_days_total,
        "amount": st.amount,
        "amount_changes": st.amount_changes,
    }
    numeric |= _activity_counts(own.activity_time, own.meeting, now)
    numeric |= around
    employees, industry, band = _account_profile(context, fields.get("account_id"))
    numeric["account_employees"] = np.array([employees])
    per_deal: dict[str, object] = {
        name: fields.get(column) for name, column in STATIC_COLUMNS.items()
    }
    per_deal["account_industry"] = industry
    per_deal["account_size_band"] = band
    vocab, stages = _vocabularies(context, fields, loc, old_stage_rows, new_names)
    # st.stage codes into the union of old and new stage names; the changed history's
    # vocabulary may lack a name only the replaced rows had.
    code = int(st.stage[0])
    stage = -1 if code < 0 else _stage_index(stages, names[code])
    values = np.empty(len(context.spec), dtype=np.float64)
    for i, f in enumerate(context.spec):
        if f.kind == "numeric":
            found = numeric.get(f.name)
            values[i] = found[0] if found is not None else _number(fields.get(f.name, np.nan))
        elif f.name == "current_stage":
            values[i] = stage if stage >= 0 else len(stages) - 1
        else:
            raw = per_deal[f.name] if f.name in per_deal else fields.get(f.name)
            values[i] = _category_code(raw, vocab[f.name], context.code_of(f.name, vocab[f.name]))
    info = (fields.get("owner_id"), fields.get("account_id"), fields.get("team"))
    name = stages[stage] if stage >= 0 else None
    return FeatureRow(context, deal_id, info, name, values, vocab)


def _stage_index(stages: list[str], name: str) -> int:
    return stages.index(name)


def _number(value: object) -> float:
    """``pd.to_numeric(value, errors="coerce")`` of one value, as a float."""
    if _isna(value):
        return np.nan
    if isinstance(value, float | int | np.floating | np.integer) and not isinstance(value, bool):
        return float(value)
    out = pd.to_numeric(pd.Series([value], dtype=object), errors="coerce").to_numpy(np.float64)
    return float(out[0])


def _from_frames(
    context: DealContext,
    fields: dict[str, object],
    loc: int,
    old_stage_rows: IntArray,
    own: OwnRows,
) -> _Parts | None:
    """``_from_arrays`` of plain inputs (the rare case the state does not cover)."""
    deal = _deal_frame(context, fields)
    n = len(own.stage)
    stage_rows = pd.DataFrame(
        {
            "deal_id": pd.array([fields["deal_id"]] * n, dtype=context.id_dtype),
            "stage": pd.Series(own.stage, dtype=object).astype(
                context.history.stage_history["stage"].dtype
            ),
            "changed_at": own.changed_at.view("datetime64[us]"),
            "amount": own.amount,
            "expected_close_date": own.expected_close.view("datetime64[us]"),
        }
    )
    return _from_arrays(context, deal, _one_deal_arrays(deal), loc, old_stage_rows, stage_rows)


def _deal_frame(context: DealContext, fields: dict[str, object]) -> pd.DataFrame:
    """A one-row deals frame of ``fields`` in the history's dtypes."""
    table = context.deals_table
    columns: dict[str, Any] = {}
    for column, dtype in table.dtypes.items():
        name = str(column)
        value = fields.get(name)
        if name in DATETIME_COLUMNS:
            columns[name] = np.array([NAT if value is None else value], np.int64).view(
                "datetime64[us]"
            )
        elif isinstance(dtype, np.dtype):
            columns[name] = np.array([np.nan if _isna(value) else value], dtype=object).astype(
                dtype
            )
        else:
            columns[name] = pd.array([None if _isna(value) else value], dtype=dtype)
    return pd.DataFrame(columns)


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
        st = _flat_values(context, fields_of(deal), st)
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
    context: DealContext, fields: dict[str, object], loc: int, own: OwnRows, new_names: list[str]
) -> _Parts | None:
    """``_from_arrays`` from the context's per-entity state: the deal's own rows, its owner's
    open deals and lookups. None where the state does not apply exactly (a deal closed after
    as_of, whose closing counts in the records; a stage row without a stage name)."""
    state = context.state
    base = context.deals
    if state is None or fields["closed_at"] != NAT or (loc >= 0 and base.closed[loc] != NAT):
        return None
    if len(new_names) < len(own.stage):
        return None
    deal_id = fields["deal_id"]
    if loc >= 0:
        slot = int(np.searchsorted(context.open_deal, loc))
        if slot >= len(context.open_deal) or context.open_deal[slot] != loc:
            return None
    else:
        slot = int(np.searchsorted(context.open_ids, np.asarray([deal_id], dtype=object))[0])
    vocabulary = context.stages.vocabulary
    known = context.stage_code
    fits = all(n in known for n in new_names)
    names = vocabulary if fits else sorted({*vocabulary, *new_names})
    coded = _own_stages(own, names, known if names is vocabulary else None)
    t = context.dates
    positions = changed_positions(state, vocabulary, names, loc, coded)
    # The batch sorts the deals by id: a new deal's rows come after those of the ids before it.
    at = loc if loc >= 0 else int(base.index.searchsorted([deal_id])[0])
    offset = float(state.push_before[at])
    st = _one_deal_stages(coded, int(t[0]), positions[0], offset)
    if len(own.stage) == 0:
        st = _flat_values(context, fields, st)
    owner_id = fields.get("owner_id")
    owner = _code(context, "owner", owner_id)
    amounts = owner_amounts(
        state, context.open_amount, owner, slot, float(st.amount[0]), new=loc < 0
    )
    hired_key = None if owner < 0 else owner_id
    team = _code(context, "team", fields.get("team"))
    around = rep_values(state, owner, team, hired_key, amounts)
    product_id = fields.get("product")
    product = _code(context, "product", product_id)
    around |= product_values(state, product, None if product < 0 else product_id, st.amount)
    around |= account_values(state, _code(context, "account", fields.get("account_id")))
    return st, names, around


def _code(context: DealContext, attr: str, value: object) -> int:
    """The code of a deal's ``attr`` (owner, team, account, product) value in the context's
    vocabulary, as ``_changed_deals`` gives it (a value the history lacks: the next code)."""
    if _isna(value):
        return -1
    found = context.group_codes[attr].get(value, -1)
    return found if found >= 0 else len(getattr(context.deals, attr + "s"))


def _flat_values(
    context: DealContext, fields: dict[str, object], st: StageFeatures
) -> StageFeatures:
    """The deals table's amount and expected close date of a deal without stage history, where
    the context's leakage screen keeps them (as ``build_features`` reads them). A kept ``stage``
    column is not read here: the stage vocabulary of a what-if stays the stage history's."""
    changes: dict[str, Any] = {}
    if "amount" in context.flat and "amount" in fields:
        changes["amount"] = np.array([_number(fields["amount"])], dtype=np.float64)
    if "expected_close_date" in context.flat and "expected_close_date" in fields:
        value = fields["expected_close_date"]
        changes["expected_close"] = np.array([NAT if value is None else value], np.int64)
    return replace(st, **changes) if changes else st


def _vocabularies(
    context: DealContext,
    fields: dict[str, object],
    loc: int,
    old_stage_rows: IntArray,
    new_names: list[str],
) -> tuple[dict[str, list[str]], list[str]]:
    """``vocabularies`` of the changed history, and its stage vocabulary: the context's
    (the very lists), unless the change adds a value or removes a value's last occurrence."""
    out = context.base_vocab
    changed: dict[str, list[str]] = {}
    old_names = _few_strings(context.stage_names[old_stage_rows])
    stage_values = _changed_values(context.stage_counts, context.stage_values, old_names, new_names)
    stages = context.base_stages
    if stage_values is not context.stage_values:
        stages = [*stage_values, MISSING]
    for name, source in context.sources.items():
        if source == "stage":
            if stages is not context.base_stages:
                changed[name] = stages
            continue
        if source is None:
            continue
        old = [] if loc < 0 else _cell_strings(context.columns[source].at(loc))
        values = context.values[name]
        new = _changed_values(context.counts[name], values, old, _cell_strings(fields.get(source)))
        if new is not values:
            changed[name] = [*(v for v in new if v != MISSING), MISSING]
    return ({**out, **changed} if changed else out), stages


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


def _account_profile(context: DealContext, account: object) -> tuple[float, object, object]:
    """``account_profile`` of one deal's account (head count, industry, size band) from the
    context's indexed accounts table."""
    rows, employees, industries = context.accounts
    row = -1 if _isna(account) else rows.get(str(account), -1)
    if row < 0:
        return np.nan, None, None
    employee = float(employees[row])
    band = None
    if not np.isnan(employee):
        band = SIZE_BANDS[int(np.searchsorted(SIZE_EDGES, employee, side="right"))]
    return employee, industries[row], band


def _category_code(value: object, known: list[str], where: dict[str, int] | None = None) -> int:
    """``assemble``'s code of one value in ``known`` (its last entry, ``missing``, for a
    missing or unknown value); ``where``: ``known``'s positions, when the caller has them."""
    if not isinstance(value, str):
        if _isna(value):
            return len(known) - 1
        value = pd.Series([value], dtype=object).astype("str").iat[0]
    if where is not None:
        return where.get(value, len(known) - 1)  # type: ignore[arg-type]
    try:
        return known.index(value, 0, len(known) - 1)  # type: ignore[arg-type]
    except ValueError:
        return len(known) - 1


def _activity_counts(times: IntArray, meeting: np.ndarray, now: int) -> dict[str, FloatArray]:
    """``_activity_features`` of one deal at ``now`` from its activities' times and meeting
    flags."""
    t = np.array([now], dtype=np.int64)
    kept = (times != NAT) & (times <= now)
    seen = times[kept]
    total = len(seen)
    if total:
        after = np.sort(seen)
        edges = now - np.asarray(ACTIVITY_WINDOWS, dtype=np.int64) * MICROS_PER_DAY
        within = dict(
            zip(
                ACTIVITY_WINDOWS,
                (total - np.searchsorted(after, edges, "right")).tolist(),
                strict=True,
            )
        )
        last = np.array([after[-1]], dtype=np.int64)
    else:
        within = dict.fromkeys(ACTIVITY_WINDOWS, 0)
        last = np.array([NAT], dtype=np.int64)
    meetings = int(np.count_nonzero(meeting[kept]))

    def one(value: float) -> FloatArray:
        return np.array([value], dtype=np.float64)

    return {
        "activities_7d": one(within[7]),
        "activities_30d": one(within[30]),
        "activities_90d": one(within[90]),
        "activities_total": one(total),
        "days_since_last_activity": days_between(t, last),
        "engagement_trend": one(2 * within[30] - within[60]),
        "meetings_total": one(meetings),
    }


def _own_stages(own: OwnRows, names: list[str], where: dict[str, int] | None) -> CodedStages:
    """``code_stages`` of the deal's rows alone (deal 0) with its stages coded into ``names``
    (which hold them all; ``where``: their positions, when the caller has them)."""
    if where is None:
        where = {name: i for i, name in enumerate(names)}
    return CodedStages(
        deal=np.zeros(len(own.stage), dtype=np.int64),
        time=own.changed_at,
        stage=np.array([-1 if v is None else where[str(v)] for v in own.stage], np.int64),
        amount=own.amount,
        expected_close=own.expected_close,
        vocabulary=names,
    )


def _one_deal_stages(
    coded: CodedStages, now: int, positions: FloatArray, push_offset: float
) -> StageFeatures:
    """``coded_stage_features(coded, 1, [0], [0], [now], positions=[positions],
    push_offset=push_offset)`` of one deal's rows (deal 0), row by row: the same comparisons
    and the same float additions in the same order (its running totals are sequential sums),
    without the vectorised machinery's per-call cost."""
    time, stage_code = coded.time, coded.stage
    keep = np.flatnonzero(time != NAT)
    order = keep[np.lexsort([stage_code[keep], time[keep]])]  # by (time, stage), stable
    times = time[order]
    end = int(np.searchsorted(times, now, side="right"))
    if end == 0:
        nan = np.full(1, np.nan)
        return StageFeatures(
            np.full(1, -1, np.int64), nan, nan, nan, nan, nan, nan, np.full(1, NAT, np.int64)
        )
    stage = stage_code[order[:end]].tolist()
    ecd = coded.expected_close[order[:end]].tolist()
    amount = coded.amount[order[:end]].tolist()
    pos = np.nan_to_num(positions, nan=-1.0).tolist() if len(positions) else []
    run_start, pushes, push_total, changes, back = 0, 0.0, push_offset, 0.0, 0.0
    for i in range(1, end):
        here, before = stage[i], stage[i - 1]
        if here != before:
            run_start = i
            # a code of -1 reads the last position, as the vectorised lookup does
            if pos and 0 <= pos[here] < pos[max(before, 0)]:
                back += 1.0
        if ecd[i] != NAT and ecd[i - 1] != NAT and ecd[i] > ecd[i - 1]:
            pushes += 1.0
            push_total += float(np.float64(ecd[i] - ecd[i - 1]) / MICROS_PER_DAY)
        a, b = amount[i], amount[i - 1]
        if not (math.isnan(a) and math.isnan(b)) and a != b:
            changes += 1.0
    last = end - 1
    t = np.array([now], dtype=np.int64)

    def one(value: float) -> FloatArray:
        return np.array([value], dtype=np.float64)

    return StageFeatures(
        stage=np.array([stage[last]], dtype=np.int64),
        days_in_stage=days_between(t, times[run_start : run_start + 1]),
        stage_regressions=one(back),
        close_date_pushes=one(pushes),
        push_days_total=one(push_total - push_offset),
        amount=one(amount[last]),
        amount_changes=one(changes),
        expected_close=np.array([ecd[last]], dtype=np.int64),
    )

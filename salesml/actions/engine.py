"""Evaluate the action catalogue for deals; estimate the effect of actionable ones by what-if.

A what-if copies the deal's features, changes only the rule's actionable features to a target
(e.g. "an activity logged today"), re-scores with the same bundle and reports the change in win
probability and in expected revenue (``p' × amount' − p × amount``; ``Δp × amount`` when the
amount is unchanged). It is a model estimate, not a promise: the model learned associations.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from salesml.actions.catalogue import BY_ID, RULES, Rule
from salesml.errors import SalesmlError
from salesml.models.contract import FEW_ROWS as OBJECT_ROWS
from salesml.models.contract import column_arrays, column_values, float_column, object_values

if TYPE_CHECKING:
    from salesml.models.win.bundle import WinBundle

FloatArray = npt.NDArray[np.float64]
FEW_ROWS = 8  # up to this many rows (a live answer's), categories are read code by code
BASIS = "model estimate (what-if re-score), not a promise"
ACTIVITY = (
    "activities_7d",
    "activities_30d",
    "activities_90d",
    "activities_total",
    "engagement_trend",
)


class ActionError(SalesmlError):
    """A rule tried to change a feature that no one can change."""


def _col(features: pd.DataFrame, name: str) -> FloatArray:
    if name not in features:
        return np.full(len(features), np.nan)
    return float_column(features, name)  # the feature frames' numerics: copied, not converted


def few_values(column: pd.Series) -> npt.NDArray[Any]:
    """``object_values(column)`` (the values as Python objects, NaN where missing); on a live
    answer's few rows of a string categorical, each category looked up by its code (``tolist``
    converts the column through Arrow, ~0.3 ms a call)."""
    dtype = column.dtype
    if (
        len(column) <= FEW_ROWS
        and isinstance(dtype, pd.CategoricalDtype)
        and _string_categories(dtype)
    ):
        return _by_code(column.array)
    return object_values(column)


def frame_values(features: pd.DataFrame, name: str) -> npt.NDArray[Any]:
    """``few_values(features[name])``, on a few rows read from the frame's stored values (no
    Series built): a string categorical by its codes, any other column by its values'
    ``tolist`` (what ``Series.tolist`` calls)."""
    values = column_values(features, name)
    if values is None:
        return few_values(features[name])
    if isinstance(values, pd.Categorical):
        if len(values) <= FEW_ROWS and _string_categories(values.dtype):
            return _by_code(values)
    elif len(values) <= OBJECT_ROWS:
        return np.array(values.tolist(), dtype=object)  # ``object_values`` of the Series
    return few_values(features[name])


def _string_categories(dtype: pd.CategoricalDtype) -> bool:
    return dtype.categories.dtype == object or pd.api.types.is_string_dtype(dtype.categories)


def _by_code(values: pd.Categorical) -> npt.NDArray[Any]:
    categories = values.dtype.categories
    return np.array(
        [np.nan if code < 0 else categories[code] for code in values.codes.tolist()],
        dtype=object,
    )


def _text(features: pd.DataFrame, name: str) -> npt.NDArray[Any]:
    if name not in features:
        return np.full(len(features), None, dtype=object)
    values = frame_values(features, name)
    values[pd.isna(values)] = None
    return values


def _stage_stat(bundle: WinBundle, stages: npt.NDArray[Any], feature: str, key: str) -> FloatArray:
    ex = bundle.explainer
    overall = ex.get("won", {}).get(feature, {}).get(key, np.nan)
    by_stage = ex.get("won_by_stage", {})
    return np.array(
        [by_stage.get(s, {}).get(feature, {}).get(key, overall) if s else overall for s in stages],
        dtype=float,
    )


def _fmt(v: float, digits: int = 0) -> str:
    return f"{v:,.{digits}f}"


def _money(v: float) -> str:
    return f"{v:,.0f}"


class _Context:
    def __init__(
        self,
        bundle: WinBundle,
        features: pd.DataFrame,
        probability: FloatArray,
        matrix: npt.NDArray[np.float64] | None = None,
    ):
        self.bundle = bundle
        self.features = features
        self.p = probability
        # A numeric model input's ``_col`` is its column of the model matrix (``encode`` and
        # ``_col`` convert a column alike), so with the matrix at hand it is not read again.
        self._matrix = matrix
        self._numeric = (
            {
                name: i
                for i, name in enumerate(bundle.features)
                if bundle.kinds.get(name) != "categorical"
            }
            if matrix is not None
            else {}
        )
        self._dtypes: dict[Any, Any] | None = None
        # Each column read once (a rule and its what-if read a few of the same columns); the
        # arrays are shared, so no rule writes into one.
        self._cols: dict[str, FloatArray] = {}
        self._texts: dict[str, npt.NDArray[Any]] = {}
        self.ex = bundle.explainer
        self.won = self.ex.get("won", {})
        self.acts = self.ex.get("actions", {})
        stage = _text(features, "current_stage")
        info = _text(features, "stage")
        unknown = pd.isna(stage) | (stage == "missing")
        self.stage = np.where(unknown, info, stage)
        self.amount = self.col("amount")
        meta = self.ex.get("features", {})
        self.actionable = {n for n, m in meta.items() if m.get("actionable")}

    def col(self, name: str) -> FloatArray:
        """``_col`` of the deals' features, read once."""
        hit = self._cols.get(name)
        if hit is None:
            i = self._numeric.get(name)
            if i is not None and self._matrix is not None:
                hit = np.array(self._matrix[:, i], dtype=np.float64)
            else:
                hit = _col(self.features, name)
            self._cols[name] = hit
        return hit

    @property
    def dtypes(self) -> dict[Any, Any]:
        """The features' column → dtype, read once (every what-if checks it)."""
        if self._dtypes is None:
            features = self.features
            # Each column's stored values carry its dtype (``features.dtypes`` builds a Series).
            arrays = column_arrays(features)
            self._dtypes = (
                {name: values.dtype for name, values in arrays.items()}
                if len(arrays) == features.shape[1]
                else dict(zip(features.columns, features.dtypes, strict=True))
            )
        return self._dtypes

    def text(self, name: str) -> npt.NDArray[Any]:
        """``_text`` of the deals' features, read once."""
        hit = self._texts.get(name)
        if hit is None:
            hit = self._texts[name] = _text(self.features, name)
        return hit

    def won_stat(self, feature: str, key: str) -> float:
        return float(self.won.get(feature, {}).get(key, np.nan))


Changes = dict[str, npt.NDArray[Any]]
Firing = tuple[npt.NDArray[np.bool_], list[str], list[str], Changes | None]


def _zero_nan(values: FloatArray) -> FloatArray:
    """``np.nan_to_num(values)`` of a float array (NaN → 0; ±inf → the largest finite
    floats, left to ``nan_to_num``): a few ufuncs instead of its ~10 us a call, which the
    rules pay ~20 times a live answer."""
    out = np.array(values, dtype=np.float64)
    if np.isinf(out).any():
        return np.asarray(np.nan_to_num(out), dtype=np.float64)
    out[np.isnan(out)] = 0.0
    return out


def _activity_changes(c: _Context, rows: npt.NDArray[np.bool_], added: FloatArray) -> Changes:
    out: Changes = {"days_since_last_activity": np.zeros(int(rows.sum()))}
    for name in ACTIVITY:
        out[name] = _zero_nan(c.col(name)[rows]) + added[rows]
    return out


def _stalled(c: _Context) -> Firing:
    days = c.col("days_in_stage")
    p75 = _stage_stat(c.bundle, c.stage, "days_in_stage", "p75")
    order = list(c.ex.get("stage_order", []))
    nxt = np.array(
        [
            order[order.index(s) + 1] if s in order and order.index(s) + 1 < len(order) else None
            for s in c.stage
        ],
        dtype=object,
    )
    vocab = set(c.bundle.vocabularies.get("current_stage", []))
    rows = (days > p75) & np.array([n is not None and n in vocab for n in nxt])
    actions = [BY_ID["stalled_in_stage"].action.format(next_stage=n) for n in nxt[rows]]
    reasons = [
        f"{_fmt(d)} days in {s} (won deals: 75 % moved on within {_fmt(q)} days)"
        for d, s, q in zip(days[rows], c.stage[rows], p75[rows], strict=True)
    ]
    changes: Changes = {
        "current_stage": nxt[rows],
        "days_in_stage": np.zeros(int(rows.sum())),
    }
    return rows, actions, reasons, changes


def _no_recent_activity(c: _Context) -> Firing:
    since = c.col("days_since_last_activity")
    p75 = c.won_stat("days_since_last_activity", "p75")
    median = c.won_stat("days_since_last_activity", "median")
    if not math.isfinite(p75):  # no won deal had an activity: the data logs none to compare
        return np.zeros(len(since), dtype=bool), [], [], None
    rows = np.isnan(since) | (since > p75)
    reasons = [
        "No activity logged yet"
        if math.isnan(s)
        else f"No activity for {_fmt(s)} days (won deals: median {_fmt(median)}, 75 % within "
        f"{_fmt(p75)})"
        for s in since[rows]
    ]
    added = np.ones(len(since))
    action = BY_ID["no_recent_activity"].action
    return rows, [action] * int(rows.sum()), reasons, _activity_changes(c, rows, added)


def _few_activities(c: _Context) -> Firing:
    total = _zero_nan(c.col("activities_total"))
    p25 = _stage_stat(c.bundle, c.stage, "activities_total", "p25")
    median = _stage_stat(c.bundle, c.stage, "activities_total", "median")
    rows = total < p25
    gap = np.maximum(np.ceil(median - total), 1.0)
    actions = [
        BY_ID["few_activities_for_stage"].action.format(gap=_fmt(g), typical=f"median {_fmt(m)}")
        for g, m in zip(gap[rows], median[rows], strict=True)
    ]
    reasons = [
        f"{_fmt(t)} activities so far (won deals in {s}: median {_fmt(m)}, p25 {_fmt(q)})"
        for t, s, m, q in zip(total[rows], c.stage[rows], median[rows], p25[rows], strict=True)
    ]
    return rows, actions, reasons, _activity_changes(c, rows, gap)


def _engagement_fading(c: _Context) -> Firing:
    trend = c.col("engagement_trend")
    recent = _zero_nan(c.col("activities_30d"))
    p25 = c.won_stat("activities_30d", "p25")
    median = c.won_stat("activities_30d", "median")
    rows = (trend < 0) & (recent < p25)
    gap = np.maximum(np.ceil(median - recent), 1.0)
    reasons = [
        f"{_fmt(a)} activities in the last 30 days, {_fmt(t)} against the 30 days before "
        f"(won deals: median {_fmt(median)} in 30 days)"
        for a, t in zip(recent[rows], trend[rows], strict=True)
    ]
    action = BY_ID["engagement_fading"].action
    return rows, [action] * int(rows.sum()), reasons, _activity_changes(c, rows, gap)


def _close_date(c: _Context, rule: str) -> Firing:
    days = c.col("days_to_expected_close")
    target = _stage_stat(c.bundle, c.stage, "days_to_expected_close", "median")
    target = np.where(np.isnan(target) | (target < 1), 14.0, target)
    if rule == "close_date_overdue":
        rows = days < 0
        reasons = [f"Expected close date passed {_fmt(-d)} days ago" for d in days[rows]]
    else:
        rows = np.isnan(days) & (c.stage != None)  # noqa: E711 (elementwise)
        reasons = ["No expected close date"] * int(rows.sum())
    actions = [BY_ID[rule].action] * int(rows.sum())
    return rows, actions, reasons, {"days_to_expected_close": target[rows]}


def _pushed(c: _Context) -> Firing:
    pushes = c.col("close_date_pushes")
    limit = max(2.0, np.nan_to_num(c.won_stat("close_date_pushes", "p90"), nan=2.0))
    rows = pushes >= limit
    reasons = [
        f"Close date pushed {_fmt(n)} times (won deals: 90 % at most {_fmt(limit)})"
        for n in pushes[rows]
    ]
    return rows, [BY_ID["close_date_pushed_repeatedly"].action] * int(rows.sum()), reasons, None


def _scaled(c: _Context, rows: npt.NDArray[np.bool_], target: FloatArray) -> Changes:
    factor = target[rows] / c.amount[rows]
    out: Changes = {"amount": target[rows]}
    for name in ("amount_vs_product_typical", "amount_vs_list_price"):
        out[name] = c.col(name)[rows] * factor
    return out


def _amount_above_rep(c: _Context) -> Firing:
    typical_by_rep = c.acts.get("rep_won_amount", {})
    owners = c.text("owner_id")
    typical = np.array([typical_by_rep.get(str(o), np.nan) for o in owners], dtype=float)
    rows = c.amount > 2 * typical
    actions = [
        BY_ID["amount_above_rep_typical"].action.format(typical=_money(t)) for t in typical[rows]
    ]
    reasons = [
        f"Amount {_money(a)} is {a / t:.1f}× the owner's median won deal ({_money(t)})"
        for a, t in zip(c.amount[rows], typical[rows], strict=True)
    ]
    return rows, actions, reasons, _scaled(c, rows, typical)


def _price_above_list(c: _Context) -> Firing:
    ratio = c.col("amount_vs_list_price")
    median = c.won_stat("amount_vs_list_price", "median")
    p90 = c.won_stat("amount_vs_list_price", "p90")
    rows = (ratio > p90) & (c.amount > 0)
    with np.errstate(divide="ignore", invalid="ignore"):  # used on firing rows only (ratio > 0)
        target = c.amount * median / ratio
    actions = [BY_ID["price_above_list"].action.format(typical=f"{median:.2f}×")] * int(rows.sum())
    reasons = [
        f"Amount is {r:.2f}× list price (won deals: median {median:.2f}×, 90 % below {p90:.2f}×)"
        for r in ratio[rows]
    ]
    return rows, actions, reasons, _scaled(c, rows, target)


def _regression(c: _Context) -> Firing:
    n = c.col("stage_regressions")
    rows = n >= 1
    reasons = [f"Moved back to an earlier stage {_fmt(k)} time(s)" for k in n[rows]]
    return rows, [BY_ID["stage_regression"].action] * int(rows.sum()), reasons, None


def _missing_amount(c: _Context) -> Firing:
    rows = np.isnan(c.amount) & ("amount" in c.features)
    return (
        rows,
        [BY_ID["missing_amount"].action] * int(rows.sum()),
        ["No amount recorded"] * int(rows.sum()),
        None,
    )


def _overloaded(c: _Context) -> Firing:
    load = c.col("rep_open_deals")
    teams = c.text("team")
    cap = c.acts.get("capacity", {})
    high = np.array([cap.get(str(t), {}).get("high", np.nan) for t in teams], dtype=float)
    median = np.array([cap.get(str(t), {}).get("median", np.nan) for t in teams], dtype=float)
    rows = load > high
    actions = [
        BY_ID["rep_overloaded"].action.format(value=_fmt(v), typical=_fmt(m))
        for v, m in zip(load[rows], median[rows], strict=True)
    ]
    reasons = [
        f"Owner has {_fmt(v)} open deals; the team's reps usually carry {_fmt(m)} "
        f"(90 % at most {_fmt(h)})"
        for v, m, h in zip(load[rows], median[rows], high[rows], strict=True)
    ]
    return rows, actions, reasons, None


def _coaching(c: _Context, rule: str, column: npt.NDArray[Any]) -> Firing:
    flags = c.acts.get(rule, {})
    owners = c.text("owner_id")
    found = [flags.get(f"{o}|{s}") for o, s in zip(owners, column, strict=True)]
    rows = np.array([f is not None for f in found], dtype=bool)
    actions, reasons = [], []
    for f, s in zip(found, column, strict=True):
        if f is None:
            continue
        actions.append(
            BY_ID[rule].action.format(
                value=f"{f['rate']:.0%}", segment=s, typical=f"{f['team_rate']:.0%}"
            )
        )
        reasons.append(
            f"Over {f['deals']:.0f} closed deals the owner won {f['rate']:.0%} in "
            f"{s}; the team won {f['team_rate']:.0%}"
        )
    return rows, actions, reasons, None


def _process(c: _Context) -> Firing:
    drop = c.acts.get("process", {})
    stage = drop.get("stage")
    rows = (
        np.array([s == stage for s in c.stage], dtype=bool)
        if stage
        else np.zeros(len(c.stage), dtype=bool)
    )
    n = int(rows.sum())
    if not n:
        return rows, [], [], None
    action = BY_ID["process_stage_drop"].action.format(
        segment=stage, typical=f"{drop['before']:.0%}", value=f"{drop['recent']:.0%}"
    )
    reason = (
        f"Deals seen in {stage} won {drop['recent']:.0%} in the last quarter of training "
        f"data against {drop['before']:.0%} before"
    )
    return rows, [action] * n, [reason] * n, None


EVALUATORS: dict[str, Callable[[_Context], Firing]] = {
    "stalled_in_stage": _stalled,
    "no_recent_activity": _no_recent_activity,
    "few_activities_for_stage": _few_activities,
    "engagement_fading": _engagement_fading,
    "close_date_overdue": lambda c: _close_date(c, "close_date_overdue"),
    "no_expected_close_date": lambda c: _close_date(c, "no_expected_close_date"),
    "close_date_pushed_repeatedly": _pushed,
    "amount_above_rep_typical": _amount_above_rep,
    "price_above_list": _price_above_list,
    "stage_regression": _regression,
    "missing_amount": _missing_amount,
    "rep_overloaded": _overloaded,
    "coaching_product": lambda c: _coaching(c, "coaching_product", c.text("product")),
    "coaching_stage": lambda c: _coaching(c, "coaching_stage", c.stage),
    "process_stage_drop": _process,
}
DEAL_RULES = tuple(r for r in RULES if r.id in EVALUATORS)


def what_if(
    bundle: WinBundle, features: pd.DataFrame, changes: Changes, rule: Rule | None = None
) -> pd.DataFrame:
    """``features`` with ``changes`` applied; refuses any feature that is not actionable."""
    _check_changes(bundle, changes, rule)
    out = features.copy()
    for name, values in changes.items():
        column = out[name]
        if isinstance(column.dtype, pd.CategoricalDtype) or column.dtype == object:
            column = column.astype("object")
        column = column.copy()
        column[:] = values
        out[name] = column
    return out


def _check_changes(bundle: WinBundle, changes: Changes, rule: Rule | None) -> None:
    meta = bundle.explainer.get("features", {})
    for name in changes:
        if not meta.get(name, {}).get("actionable", False) or (
            rule is not None and name not in rule.what_if
        ):
            raise ActionError(
                f"what-if may only change actionable features its rule declares; {name!r} "
                f"is not one ({rule.id if rule else 'no rule'})"
            )


WHAT_IF_BATCH_ROWS = 65_536  # what-if rows scored in one LightGBM call (bounds the stack)


class _Pending:
    """The direct what-ifs of several rules, written into model-matrix rows and scored by one
    ``margin`` call (a row's margin never depends on the other rows in the call)."""

    def __init__(self, bundle: WinBundle) -> None:
        self.bundle = bundle
        self.blocks: list[npt.NDArray[np.float64]] = []
        self.slots: list[list[Any]] = []
        self.rows = 0

    def add(self, block: npt.NDArray[np.float64], slot: list[Any]) -> None:
        self.blocks.append(block)
        self.slots.append(slot)
        self.rows += len(block)
        if self.rows >= WHAT_IF_BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.blocks:
            return
        stacked = self.blocks[0] if len(self.blocks) == 1 else np.vstack(self.blocks)
        p_all = np.asarray(self.bundle.calibrator.predict(self.bundle.margin(stacked)), dtype=float)
        start = 0
        for block, slot in zip(self.blocks, self.slots, strict=True):
            slot[0] = p_all[start : start + len(block)]
            start += len(block)
        self.blocks, self.slots, self.rows = [], [], 0


def _direct_block(
    bundle: WinBundle,
    features: pd.DataFrame,
    matrix: npt.NDArray[np.float64] | None,
    rows: npt.NDArray[np.int64],
    changes: Changes,
    rule: Rule,
    dtypes: dict[Any, Any] | None = None,
) -> npt.NDArray[np.float64] | None:
    """The model-matrix rows of ``features.iloc[rows]`` with ``changes`` written in (what
    ``bundle.model_matrix(what_if(...))`` gives), or ``None`` when a change cannot be written
    into the matrix directly."""
    if matrix is None:
        return None
    if dtypes is None:
        dtypes = dict(zip(features.columns, features.dtypes, strict=True))
    if not all(_direct(bundle, dtypes, n, v) for n, v in changes.items()):
        return None
    _check_changes(bundle, changes, rule)
    sub = matrix[rows]
    position = {name: i for i, name in enumerate(bundle.features)}
    for name, values in changes.items():
        if name not in position:
            continue  # not a model input: the score does not read it
        if bundle.kinds[name] == "categorical":
            # what_if makes the column object-typed and writes the values in.
            column = pd.Series(np.asarray(values, dtype=object), dtype=object)
            sub[:, position[name]] = bundle.encode(name, column)
        else:
            # what ``encode`` gives for a float64 column: its values (numeric ones, ``_direct``)
            sub[:, position[name]] = np.asarray(values, dtype=np.float64)
    return sub


def _what_if_probability(
    bundle: WinBundle,
    features: pd.DataFrame,
    matrix: npt.NDArray[np.float64] | None,
    rows: npt.NDArray[np.int64],
    changes: Changes,
    rule: Rule,
    dtypes: dict[Any, Any] | None = None,
) -> FloatArray:
    """The win probability of ``features.iloc[rows]`` with ``changes`` applied: what
    ``bundle.predict(what_if(...))`` gives, from the deals' model matrix when the changes
    can be written into it directly (no frame copy, one LightGBM call on a float matrix)."""
    sub = _direct_block(bundle, features, matrix, rows, changes, rule, dtypes)
    if sub is None:
        changed = what_if(bundle, features.iloc[rows], changes, rule)
        return np.asarray(bundle.predict(changed)["win_probability"].to_numpy(), dtype=float)
    return np.asarray(bundle.calibrator.predict(bundle.margin(sub)), dtype=float)


def _direct(bundle: WinBundle, dtypes: dict[Any, Any], name: str, values: Any) -> bool:
    """Whether a change can go straight into the model matrix with the result ``what_if``
    gives: a known column (``dtypes``: the features' column → dtype), and for a numeric
    feature a float64 column and numeric values."""
    if name not in dtypes:
        return False
    if name not in bundle.kinds or bundle.kinds[name] == "categorical":
        return True
    return bool(dtypes[name] == np.float64 and np.asarray(values).dtype.kind in ("f", "i"))


# One fired rule: the rule, its rows, actions, reasons, changes and (filled in by
# ``_Pending.flush``) the what-if probabilities in slot[0].
_Fired = tuple[Rule, npt.NDArray[np.int64], list[str], list[str], Changes | None, list[Any]]


def _fire_rules(c: _Context, matrix: npt.NDArray[np.float64] | None, batched: bool) -> list[_Fired]:
    """Every rule evaluated on every deal; the what-ifs of all rules scored together (one
    LightGBM call for the direct ones when ``batched``, else one call per rule)."""
    bundle, features = c.bundle, c.features
    can_what_if = bundle.booster is not None and bool(c.actionable)
    direct = can_what_if and bundle.codes_match_booster
    pending = _Pending(bundle)
    inputs = set(bundle.features)
    fired: list[_Fired] = []
    for rule in DEAL_RULES:
        rows, actions, reasons, changes = EVALUATORS[rule.id](c)
        # A model the training screen narrowed (or the plain peer) does not read every
        # feature a rule may change: a change it cannot see has no modelled impact.
        if changes:
            changes = {k: v for k, v in changes.items() if k in inputs}
        index = np.flatnonzero(rows)
        if index.size == 0:
            continue
        slot: list[Any] = [None]
        if changes and can_what_if:
            if direct and matrix is None:
                matrix = bundle.model_matrix(features)
            block = (
                _direct_block(bundle, features, matrix, index, changes, rule, c.dtypes)
                if batched
                else None
            )
            if block is None:
                slot[0] = _what_if_probability(
                    bundle, features, matrix, index, changes, rule, c.dtypes
                )
            else:
                pending.add(block, slot)
        else:
            changes = None
        fired.append((rule, index, actions, reasons, changes, slot))
    pending.flush()
    return fired


def recommend(
    bundle: WinBundle,
    features: pd.DataFrame,
    probability: FloatArray | None = None,
    top: int | None = None,
    matrix: npt.NDArray[np.float64] | None = None,
    batched: bool = True,
) -> list[list[dict[str, Any]]]:
    """The actions of each deal, what-if ones first by expected revenue impact (``matrix``:
    the deals' ``bundle.model_matrix``, when the caller has it; ``batched``: the what-ifs of
    every rule and deal scored in one LightGBM call, else one call per rule — the same values).

    Each action: ``id`` (catalogue rule), ``kind``, ``concept``, ``action``, ``reason``,
    ``expected_impact`` (``{"win_probability_points", "revenue", "basis"}`` or ``None`` when the
    rule has no what-if) and ``changes`` (feature → value used by the what-if).
    """
    n = len(features)
    out: list[list[dict[str, Any]]] = [[] for _ in range(n)]
    if n == 0:
        return out
    p = (
        probability
        if probability is not None
        else bundle.predict(features)["win_probability"].to_numpy()
    )
    c = _Context(bundle, features, np.asarray(p, dtype=float), matrix)
    for rule, index, actions, reasons, changes, slot in _fire_rules(c, matrix, batched):
        impact: list[dict[str, Any] | None] = [None] * index.size
        shown: list[dict[str, Any]] = [{} for _ in index]
        if changes is not None:
            p_new = slot[0]
            amount_new = (
                np.asarray(changes["amount"], dtype=float)
                if "amount" in changes
                else c.amount[index]
            )
            revenue = p_new * amount_new - c.p[index] * c.amount[index]
            for k in range(index.size):
                impact[k] = {
                    "win_probability_points": float((p_new[k] - c.p[index[k]]) * 100),
                    "revenue": None if math.isnan(revenue[k]) else float(revenue[k]),
                    "basis": BASIS,
                }
                shown[k] = {name: _plain(v[k]) for name, v in changes.items()}
        for k, row in enumerate(index):
            if _backfires(impact[k]):
                continue  # the model expects this change to cost the deal: not a recommendation
            out[row].append(
                {
                    "id": rule.id,
                    "kind": rule.kind,
                    "concept": rule.concept,
                    "action": actions[k],
                    "reason": reasons[k],
                    "expected_impact": impact[k],
                    "changes": shown[k],
                }
            )
    for i in range(n):
        out[i].sort(key=_rank)
        if top is not None:
            out[i] = out[i][:top]
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _backfires(impact: dict[str, Any] | None) -> bool:
    """Whether the what-if says the action would lose expected revenue (or, for a deal
    without an amount, win probability)."""
    if impact is None:
        return False
    if impact["revenue"] is not None:
        return bool(impact["revenue"] < 0)
    return bool(impact["win_probability_points"] < 0)


def _rank(action: dict[str, Any]) -> tuple[int, float]:
    impact = action["expected_impact"]
    if impact is None:
        return (2, 0.0)
    if impact["revenue"] is None:
        return (1, -impact["win_probability_points"])
    return (0, -impact["revenue"])

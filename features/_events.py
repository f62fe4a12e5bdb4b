"""Vectorised point-in-time primitives: as-of counts, lookups and windowed medians.

Times are int64 microseconds (``NAT`` for missing). Events of one kind are sorted by
(group, time) once; a query "events of group g stamped at or before t" is then one
``np.searchsorted`` on a composite key ``g * (M + 1) + rank(t)``, where ``rank`` is the position
of a time among the M distinct event times. Ranks keep the key inside int64 whatever the time
span, and are exact, so "at or before" means exactly ``<=``.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
NAT = np.iinfo(np.int64).min
MICROS_PER_DAY = 86_400 * 1_000_000


def micros(values: pd.Series | pd.Index | pd.Timestamp | npt.ArrayLike) -> IntArray:
    """Timestamps as int64 microseconds since the epoch; missing values become ``NAT``."""
    if isinstance(values, pd.Series) and values.dtype == "datetime64[us]":
        return np.asarray(values.to_numpy().view(np.int64), dtype=np.int64)
    stamps = pd.to_datetime(pd.Series(np.atleast_1d(np.asarray(values))))
    return np.asarray(stamps.astype("datetime64[us]").to_numpy().view(np.int64), dtype=np.int64)


def days_between(later: IntArray, earlier: IntArray) -> FloatArray:
    """``later - earlier`` in days; NaN where either side is ``NAT``."""
    valid = (later != NAT) & (earlier != NAT)
    out = np.full(len(later), np.nan)
    out[valid] = (later[valid] - earlier[valid]) / MICROS_PER_DAY
    return out


def codes(values: pd.Series | npt.NDArray[Any], index: pd.Index) -> IntArray:
    """Position of each value in ``index`` (-1 when missing or unknown)."""
    if len(index) == 0:
        return np.full(len(values), -1, dtype=np.int64)
    found = pc.index_in(_strings(values), value_set=_strings(index), skip_nulls=True)
    return np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)


@overload
def unique(values: IntArray) -> IntArray: ...
@overload
def unique(values: IntArray, return_inverse: Literal[True]) -> tuple[IntArray, IntArray]: ...
def unique(values: IntArray, return_inverse: bool = False) -> IntArray | tuple[IntArray, IntArray]:
    """Sorted distinct values (and each value's position among them), by sorting: numpy's
    hash-based ``np.unique`` is many times slower on millions of int64."""
    order = np.argsort(values, kind="stable") if return_inverse else None
    ordered = values[order] if order is not None else np.sort(values)
    first = np.r_[True, ordered[1:] != ordered[:-1]] if len(ordered) else np.zeros(0, bool)
    distinct = ordered[first]
    if order is None:
        return distinct
    inverse = np.empty(len(values), dtype=np.int64)
    inverse[order] = np.cumsum(first) - 1
    return distinct, inverse


def _strings(values: pd.Series | pd.Index | npt.NDArray[Any]) -> pa.Array:
    """Values as an Arrow string array (zero-copy for Arrow-backed pandas strings)."""
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        array = pa.array([None if pd.isna(v) else str(v) for v in values])
    return array.cast(pa.string())


class EventIndex:
    """Events sorted by (group, time), answering as-of questions for many (group, t) at once.

    ``order`` is the permutation that sorted the events: payload arrays are ``payload[order]``.
    Events with group -1 are dropped (they belong to no known deal, rep, …).
    """

    def __init__(
        self,
        group: IntArray,
        time: IntArray,
        n_groups: int,
        tiebreak: IntArray | None = None,
    ) -> None:
        keep = np.flatnonzero((group >= 0) & (time != NAT))
        keys: list[IntArray] = [time[keep], group[keep]]
        if tiebreak is not None:
            keys.insert(0, tiebreak[keep])
        self.order: IntArray = keep[np.lexsort(keys)]
        self.group: IntArray = group[self.order]
        self.time: IntArray = time[self.order]
        self.times, rank = unique(self.time, return_inverse=True)
        self.stride = len(self.times) + 1
        rank += 1
        self.keys: IntArray = self.group * self.stride + rank
        self.n_groups = n_groups
        self.starts: IntArray = np.searchsorted(
            self.keys, np.arange(n_groups + 1, dtype=np.int64) * self.stride
        ).astype(np.int64)

    def __len__(self) -> int:
        return len(self.order)

    def end_upto(self, group: IntArray, t: IntArray) -> IntArray:
        """One past the position of the last event of ``group`` stamped ``<= t``."""
        rank = np.searchsorted(self.times, t, side="right")
        known = group >= 0
        key = np.where(known, group, 0) * self.stride + rank
        end = np.searchsorted(self.keys, key, side="right").astype(np.int64)
        return np.where(known & (t != NAT), end, self.start(group))

    def start(self, group: IntArray) -> IntArray:
        """Position of the first event of ``group`` (for -1: 0, with no events counted)."""
        return np.where(group >= 0, self.starts[np.maximum(group, 0)], 0)

    def count_upto(self, group: IntArray, t: IntArray) -> IntArray:
        """Number of events of ``group`` stamped ``<= t`` (0 for group -1)."""
        return np.where(group >= 0, self.end_upto(group, t) - self.start(group), 0)

    def last_upto(self, group: IntArray, t: IntArray) -> IntArray:
        """Position of the last event of ``group`` stamped ``<= t``; -1 when there is none."""
        end = self.end_upto(group, t)
        return np.where((group >= 0) & (end > self.start(group)), end - 1, -1)

    def sum_upto(self, cumulative: FloatArray, group: IntArray, t: IntArray) -> FloatArray:
        """Sum of a payload over events of ``group`` stamped ``<= t``.

        ``cumulative`` is ``prefix_sum(payload[order])`` (length ``len(self) + 1``).
        """
        total = cumulative[self.end_upto(group, t)] - cumulative[self.start(group)]
        return np.where(group >= 0, total, 0.0)

    def window_median(
        self, values: FloatArray, group: IntArray, after: IntArray, upto: IntArray
    ) -> FloatArray:
        """Median of ``values`` (aligned with the sorted events) over events of ``group``
        stamped in ``(after, upto]``; NaN when there are none.

        Queries are deduplicated by slice, so the loop runs once per distinct (group, window),
        e.g. once per rep and as-of date, never per deal.
        """
        lo = self.end_upto(group, after)
        hi = self.end_upto(group, upto)
        out = np.full(len(group), np.nan)
        has = (group >= 0) & (hi > lo)
        if not has.any():
            return out
        slices, inverse = unique(lo[has] * (len(self) + 1) + hi[has], return_inverse=True)
        starts, ends = np.divmod(slices, len(self) + 1)
        medians = [np.median(values[a:b]) for a, b in zip(starts, ends, strict=True)]
        out[has] = np.asarray(medians, dtype=np.float64)[inverse]
        return out


def take_at(values: npt.NDArray[Any], positions: IntArray, fill: Any) -> npt.NDArray[Any]:
    """``values[positions]``, with ``fill`` where the position is -1 (``values`` may be empty)."""
    found = positions >= 0
    out = np.full(len(positions), fill, dtype=values.dtype if fill is not None else object)
    out[found] = values[positions[found]]
    return out


def prefix_sum(values: npt.ArrayLike) -> FloatArray:
    """``[0, v0, v0+v1, …]`` with NaN counted as 0."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)
    return np.concatenate([[0.0], np.cumsum(v)])


def open_pairs(created: IntArray, closed: IntArray, dates: IntArray) -> tuple[IntArray, IntArray]:
    """Every (deal, date) with ``created <= date < closed`` (``closed`` NAT = still open).

    ``dates`` must be sorted. Returns deal positions and date positions, sorted by date, then
    deal.
    """
    first = np.searchsorted(dates, created, side="left")
    end_time = np.where(closed == NAT, np.iinfo(np.int64).max, closed)
    last = np.searchsorted(dates, end_time, side="left")
    n = np.maximum(last - first, 0)
    deal = np.repeat(np.arange(len(created), dtype=np.int64), n)
    offset = np.arange(len(deal), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
    date = np.repeat(first, n) + offset
    order = np.lexsort([deal, date])
    return deal[order], date[order].astype(np.int64)

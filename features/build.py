"""Point-in-time feature rows for scoring, and labelled snapshots for training.

Both are the same function of (history, as_of): ``build_features`` evaluates it at one date for
the deals open then (serving: as_of = now), ``build_snapshots`` at many past dates, for every deal
open at each, and labels each row with what happened after (training). See docs/features.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from features._context import deal_arrays
from features._events import NAT, days_between, micros, open_pairs
from features._frame import (
    INFO_COLUMNS,
    among,
    assemble,
    feature_frame,
    frame_parts,
    vocabularies,
)
from features.history import History
from features.spec import Feature, feature_spec
from salesml.errors import ConfigError

OUTCOMES = ("won", "lost", "open")
LABEL_COLUMNS = ("outcome", "label_won", "closed_at", "days_to_close", "days_observed")

__all__ = [
    "INFO_COLUMNS",
    "LABEL_COLUMNS",
    "build_feature_slices",
    "build_features",
    "build_snapshots",
    "open_deal_ids",
    "vocabularies",
    "weekly_as_of_dates",
]


def build_features(
    history: History,
    as_of: pd.Timestamp,
    deal_ids: Sequence[str] | None = None,
    *,
    features: Sequence[Feature] | None = None,
) -> pd.DataFrame:
    """Features of every deal open at ``as_of``, from events stamped at or before it.

    A deal is open at as_of when ``created_at <= as_of`` and it had not closed by then
    (``closed_at`` empty or later).

    Args:
        history: The history to read (see :func:`features.history.load_history`).
        as_of: The date the features describe; naive timestamps are UTC.
        deal_ids: Only these deals, in this order (ids not open at as_of are left out).
        features: The features to compute; defaults to ``feature_spec(history)``. Pass the
            list a model was trained with to get exactly its columns.

    Returns:
        One row per open deal, indexed by ``deal_id``: the ``INFO_COLUMNS`` (owner_id,
        account_id, team, stage at as_of) then one column per feature, numerics as float64 and
        categoricals as ``category`` with the vocabulary of :func:`vocabularies`.
    """
    frame = build_snapshots(history, [as_of], features=features)
    frame = frame.drop(columns=["as_of", *LABEL_COLUMNS]).set_index("deal_id")
    if deal_ids is not None:
        wanted = pd.Index(list(deal_ids))
        frame = frame.loc[wanted[wanted.isin(frame.index)]]
    return frame


def build_feature_slices(
    history: History,
    as_of: pd.Timestamp,
    slice_deals: int,
    *,
    features: Sequence[Feature] | None = None,
    skip: pd.Index | None = None,
) -> Iterator[pd.DataFrame]:
    """``build_features(history, as_of)`` in slices of at most ``slice_deals`` open deals, in
    deal_id order: concatenated, the slices are its frame, value for value. With ``skip``
    (deal ids), the rows of those deals are left out (the others' values do not change: the
    owners' open pipeline still counts every open deal); empty slices are not yielded.

    Every table of the history is read once, for all the open deals, into a few numbers a deal
    (``features._frame.frame_parts``: the owners' open pipeline counts every open deal); each
    slice is then assembled from them, so what grows with the number of open deals beyond
    those numbers is one slice's frame at a time (the batch scores and writes a slice before
    the next is built).
    """
    if slice_deals < 1:
        raise ConfigError(f"slice_deals must be 1 or more, got {slice_deals}")
    spec = list(features) if features is not None else feature_spec(history)
    dates = micros(pd.Series([_naive_utc(as_of)], dtype=object))
    deals_table = history.deals.sort_values("deal_id", kind="stable", ignore_index=True)
    sorted_history = replace(history, deals=deals_table)
    deals = deal_arrays(deals_table)
    q_deal, q_date = open_pairs(deals.created, deals.closed, dates)
    # Every table is read once for all the open deals (a few numbers a deal); each slice
    # then only assembles its rows from them.
    parts = frame_parts(sorted_history, deals, dates, q_deal, q_date, spec)
    ids = deals_table["deal_id"]
    wanted = np.arange(len(q_deal))
    if skip is not None and len(skip):
        wanted = wanted[~among(ids.take(q_deal), skip)]
    for start in range(0, len(wanted), slice_deals):
        part = wanted[start : start + slice_deals]
        frame = assemble(deals_table, spec, q_deal[part], parts.take(part))
        frame.insert(0, "deal_id", ids.take(q_deal[part]).reset_index(drop=True))
        yield frame.set_index("deal_id")


def open_deal_ids(history: History, as_of: pd.Timestamp) -> pd.Index:
    """The ids of the deals open at ``as_of`` (the rows ``build_features`` gives), sorted."""
    dates = micros(pd.Series([_naive_utc(as_of)], dtype=object))
    deals_table = history.deals.sort_values("deal_id", kind="stable", ignore_index=True)
    deals = deal_arrays(deals_table)
    q_deal, _ = open_pairs(deals.created, deals.closed, dates)
    return pd.Index(deals_table["deal_id"].take(q_deal).astype(str), name="deal_id")


def build_snapshots(
    history: History,
    as_of_dates: Sequence[pd.Timestamp],
    *,
    features: Sequence[Feature] | None = None,
) -> pd.DataFrame:
    """Every deal open at each of ``as_of_dates``, with its features then and its outcome.

    Columns: ``deal_id``, ``as_of``, the ``INFO_COLUMNS``, the features (as in
    :func:`build_features`), then the labels ``LABEL_COLUMNS``: ``outcome`` (won / lost / open =
    still open at export), ``label_won`` (1.0 / 0.0 / NaN while open), ``closed_at``,
    ``days_to_close`` (closed_at - as_of in days, NaN while open) and ``days_observed``
    (exported_at - as_of in days: how long the outcome had to show). Rows are sorted by as_of,
    then deal_id. Labels are the only columns that read anything after as_of.
    """
    spec = list(features) if features is not None else feature_spec(history)
    dates = np.unique(micros(pd.Series([_naive_utc(d) for d in as_of_dates], dtype=object)))
    deals_table = history.deals.sort_values("deal_id", kind="stable", ignore_index=True)
    sorted_history = replace(history, deals=deals_table)
    deals = deal_arrays(deals_table)
    q_deal, q_date = open_pairs(deals.created, deals.closed, dates)
    q_time = dates[q_date]
    frame = feature_frame(sorted_history, deals, dates, q_deal, q_date, spec)
    frame.insert(0, "deal_id", deals_table["deal_id"].take(q_deal).reset_index(drop=True))
    frame.insert(1, "as_of", pd.Series(q_time.astype("datetime64[us]")))
    status = deals_table["status"].to_numpy(dtype=object)
    closed_known = deals.closed != NAT
    outcome_code = np.select(
        [closed_known & (status == "won"), closed_known & (status == "lost")], [0, 1], 2
    )[q_deal]
    frame["outcome"] = pd.Series(np.asarray(OUTCOMES, dtype=object)[outcome_code], dtype="str")
    frame["label_won"] = np.array([1.0, 0.0, np.nan])[outcome_code]
    closed = np.where(outcome_code == 2, NAT, deals.closed[q_deal])
    frame["closed_at"] = pd.Series(closed.astype("datetime64[us]"))
    frame["days_to_close"] = days_between(closed, q_time)
    exported = np.full(len(q_time), micros(history.exported_at)[0])
    frame["days_observed"] = days_between(exported, q_time)
    return frame


def weekly_as_of_dates(
    history: History, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
) -> list[pd.Timestamp]:
    """Mondays at 00:00 from ``start`` (default: the first deal's creation) to ``end``
    (default: ``history.exported_at``), both included when they are Mondays at 00:00."""
    first = _naive_utc(start if start is not None else history.deals["created_at"].min())
    last = _naive_utc(end if end is not None else history.exported_at)
    day = first.normalize()
    if day < first:
        day += pd.Timedelta(days=1)
    monday = day + pd.Timedelta(days=(7 - day.weekday()) % 7)
    return list(pd.date_range(monday, last, freq="7D", unit="us"))


def _naive_utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    if pd.isna(stamp):
        raise ConfigError("as_of must be a timestamp, not a missing value")
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp

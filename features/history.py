"""The history a feature is computed from: the warehouse tables, read once, in memory.

``History`` holds the canonical tables as DataFrames with every time column as naive UTC
``datetime64[us]``. Features never read the clock: ``exported_at`` (the latest event stamped in
the data) is what "now" means for the export, and every feature takes ``as_of`` explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import duckdb
import numpy as np
import pandas as pd

from salesml.errors import SalesmlError
from salesml.schemas import ATTRIBUTE_PREFIX, TABLES, TableSchema
from salesml.warehouse import DataSpan, attribute_columns, data_span

AttributeKind = Literal["numeric", "categorical"]
HISTORY_TABLES = ("deals", "stage_history", "activities", "reps", "accounts", "products")
# Event timestamps: what "the latest thing that happened" is made of (forecasts such as
# expected_close_date and dates such as hired_at are not events).
EVENT_COLUMNS = (
    ("deals", "created_at"),
    ("deals", "closed_at"),
    ("stage_history", "changed_at"),
    ("activities", "occurred_at"),
)


class EmptyHistoryError(SalesmlError):
    """There are no deals to compute features from."""


@dataclass(frozen=True, eq=False)
class History:
    """Every table a feature may read, as exported.

    The ``deals`` table holds export-time values: its amount, stage, expected close date, status
    and closing are what they were at ``exported_at``, not at an earlier as-of date.
    """

    deals: pd.DataFrame
    stage_history: pd.DataFrame
    activities: pd.DataFrame
    reps: pd.DataFrame
    accounts: pd.DataFrame
    products: pd.DataFrame
    attributes: dict[str, str]  # attribute name (without attr_) -> "numeric" | "categorical"
    exported_at: pd.Timestamp  # latest event timestamp in the data (the export time)
    # Set by ``training.data.truncate_history``: deals-table columns that the leakage screen
    # leaves out on the whole export (``{column: why}``). A truncated history cannot judge them
    # alone: the deals open at the earlier date show values written after it (the stage a lost
    # deal left at, the closing date), which look like creation-time values among them.
    export_excluded: Mapping[str, str] = field(default_factory=dict)


# The tables with many rows per deal: with ``compact``, their text columns (deal ids, stage
# names, activity types, owners) are loaded as categoricals, a small code a row.
EVENT_TABLES = ("stage_history", "activities")


def load_history(
    con: duckdb.DuckDBPyConnection, span: DataSpan | None = None, *, compact: bool = False
) -> History:
    """Read the deal-related warehouse tables into a :class:`History`.

    With ``compact`` (the nightly batch: ``serving.batch.run_batch`` reads it and nothing
    else), the text columns of the stage history and the activities are pandas categoricals
    instead of strings: the same values (features, input hashes) in a fraction of the memory,
    as their values repeat (a deal's id once per activity).

    ``exported_at`` is the data's as-of, ``span.end`` (``salesml.warehouse.data_span``: the
    latest event in any table, capped at the clock by the caller) — the same date every command
    defaults to; without ``span`` it is computed here, uncapped.

    Raises:
        EmptyHistoryError: If the warehouse holds no deals.
    """
    frames = {}
    for name in HISTORY_TABLES:
        # activity_id is a surrogate key no feature reads; millions of unique strings are
        # the costliest column to load, so it is left out.
        drop = "_row_hash, activity_id" if name == "activities" else "_row_hash"
        table = con.sql(f"SELECT * EXCLUDE ({drop}) FROM {name}").to_arrow_table()
        categorical = compact and name in EVENT_TABLES
        frames[name] = table.to_pandas(date_as_object=False, strings_to_categorical=categorical)
        del table
    kinds = attribute_columns(con, "deals")
    attributes = {col.removeprefix(ATTRIBUTE_PREFIX): kind for col, kind in kinds.items()}
    return make_history(
        frames["deals"],
        stage_history=frames["stage_history"],
        activities=frames["activities"],
        reps=frames["reps"],
        accounts=frames["accounts"],
        products=frames["products"],
        attributes=attributes,
        exported_at=_as_timestamp((span or data_span(con)).end),
        categorical_events=compact,
    )


def _as_timestamp(value: datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)


def make_history(
    deals: pd.DataFrame,
    *,
    stage_history: pd.DataFrame | None = None,
    activities: pd.DataFrame | None = None,
    reps: pd.DataFrame | None = None,
    accounts: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    attributes: Mapping[str, str] | None = None,
    exported_at: pd.Timestamp | None = None,
    categorical_events: bool = False,
) -> History:
    """Build a :class:`History` from canonical DataFrames (missing tables become empty).

    Canonical columns an input lacks are added as nulls, time columns become naive UTC
    ``datetime64[us]``. Custom attributes are the ``attr_<name>`` columns of ``deals``; their
    kind comes from ``attributes`` or, when not given, from the column's dtype. ``exported_at``
    defaults to the latest event timestamp (creation, closing, stage change, activity). With
    ``categorical_events``, categorical text columns of the stage history and activities stay
    categorical (``load_history(compact=True)``); otherwise every text column becomes ``str``.

    Raises:
        EmptyHistoryError: If ``deals`` has no rows.
    """
    if len(deals) == 0:
        raise EmptyHistoryError(
            "the history has no deals; import an export first: salesml import PATH --format ..."
        )
    given = {"stage_history": stage_history, "activities": activities, "reps": reps}
    given |= {"accounts": accounts, "products": products}
    attr_cols = [c for c in deals.columns if str(c).startswith(ATTRIBUTE_PREFIX)]
    kinds = dict(attributes or {})
    for col in attr_cols:
        name = str(col).removeprefix(ATTRIBUTE_PREFIX)
        if name not in kinds:
            numeric = pd.api.types.is_numeric_dtype(deals[col].dtype)
            kinds[name] = "numeric" if numeric else "categorical"
    tables = {"deals": _canonical(deals, TABLES["deals"], attr_cols)}
    for name, frame in given.items():
        keep = categorical_events and name in EVENT_TABLES
        tables[name] = _canonical(frame, TABLES[name], [], keep_categories=keep)
    for name, kind in kinds.items():
        col = ATTRIBUTE_PREFIX + name
        values = tables["deals"].get(col)
        if values is None:
            tables["deals"][col] = pd.Series(np.nan, index=tables["deals"].index).astype(
                "float64" if kind == "numeric" else "str"
            )
        elif kind == "numeric":
            tables["deals"][col] = pd.to_numeric(values, errors="coerce").astype("float64")
        else:
            tables["deals"][col] = values.astype("str")
    if exported_at is None:
        stamps = [tables[t][c].max() for t, c in EVENT_COLUMNS]
        exported_at = pd.Timestamp(max(s for s in stamps if pd.notna(s)))
    return History(
        deals=tables["deals"],
        stage_history=tables["stage_history"],
        activities=tables["activities"],
        reps=tables["reps"],
        accounts=tables["accounts"],
        products=tables["products"],
        attributes={name: kinds[name] for name in sorted(kinds)},
        exported_at=pd.Timestamp(exported_at),
    )


def _canonical(
    frame: pd.DataFrame | None,
    table: TableSchema,
    extra: list[str],
    *,
    keep_categories: bool = False,
) -> pd.DataFrame:
    """The table's canonical columns (then ``extra``), with normalised dtypes (text columns:
    ``str``, or with ``keep_categories`` categoricals kept as they are)."""
    source = frame.reset_index(drop=True) if frame is not None else pd.DataFrame()
    out = pd.DataFrame(index=pd.RangeIndex(len(source)))
    for column in table.columns:
        if column.name not in source.columns and table.derived_key and column.name in table.key:
            continue  # an id derived from the row's content: nothing reads it
        if column.name in source.columns:
            values = source[column.name]
        else:
            values = pd.Series(np.full(len(source), None), dtype=object)
        if column.kind in ("timestamp", "date"):
            out[column.name] = to_naive_utc(values)
        elif column.kind in ("float", "int"):
            out[column.name] = pd.to_numeric(values, errors="coerce").astype("float64")
        elif column.kind == "bool":
            out[column.name] = values.astype(object)
        elif keep_categories and isinstance(values.dtype, pd.CategoricalDtype):
            out[column.name] = values
        else:
            out[column.name] = values.astype("str")
    for col in extra:
        out[col] = source[col]
    return out


def to_naive_utc(values: pd.Series) -> pd.Series:
    """Timestamps as naive UTC ``datetime64[us]`` (zone-aware input is converted to UTC)."""
    stamps = pd.to_datetime(values, utc=True, errors="coerce")
    return stamps.dt.tz_convert(None).astype("datetime64[us]")

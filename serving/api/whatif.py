"""Feature rows for the deals of a score request.

The server keeps the history in memory with the features of every deal open at its as_of
(``DataIndex``, built once per score run). A known deal without overrides reads its row from
there — exactly what ``build_features(history, as_of)`` gives it. A what-if (a known deal with
overrides) or a new deal is computed by the real feature code on the history with the deal
changed or added: ``build_features(history', as_of, deal_ids=…)``. Two things make that cheaper
without changing a value: only the requested deals' activities are kept (activity features
read a deal's own activities only), and the feature list is fixed once per index.

Overrides of ``stage``, ``amount`` and ``expected_close_date`` become a stage change stamped at
as_of (the stage history is the only source of time-varying fields; see docs/features.md); the
other fields replace the deal's value. A new deal's stage / amount / close date enter the stage
history at its creation.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features
from features.history import History, to_naive_utc
from features.single import (
    DATETIME_COLUMNS,
    DealContext,
    FeatureRow,
    OwnRows,
    deal_context,
    deal_row,
    known_deal,
    rows_frame,
)
from features.spec import Feature, feature_spec
from salesml.schemas import ATTRIBUTE_PREFIX
from salesml.scoring.scorer import ListPrices
from serving.api.problems import ProblemError, Problems
from serving.api.schemas import DealOverrides, NewDeal

STAGE_FIELDS = ("stage", "amount", "expected_close_date")
STATIC_FIELDS = (
    "currency",
    "owner_id",
    "account_id",
    "product",
    "lead_source",
    "deal_type",
    "team",
    "region",
)
NEW_PREFIX = "\x00new-"  # internal ids of new deals: no real id can start with a control char


@dataclass(frozen=True)
class DataIndex:
    """The history the server scores from, and the features of its open deals at as_of."""

    history: History
    as_of: pd.Timestamp
    spec: list[Feature]
    features: pd.DataFrame  # index deal_id (str)
    deal_pos: pd.Index  # deal_id -> row of history.deals
    stage_rows: dict[Any, np.ndarray]
    activity_rows: dict[Any, np.ndarray]
    owner_team: dict[str, str]

    @property
    def deal_count(self) -> int:
        return len(self.deal_pos)

    @functools.cached_property
    def _teams(self) -> np.ndarray:
        """The deals' teams as a plain array (a column lookup per request costs ~100 us)."""
        return self.history.deals["team"].to_numpy(dtype=object)

    def team_of(self, deal_id: str) -> str | None:
        """The deal's team (None when the deal is unknown or has no team)."""
        loc = position(self.deal_pos, deal_id)
        if loc < 0:
            return None
        return _text(self._teams[loc])

    @functools.cached_property
    def stage_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """The stage history's ``changed_at`` (datetime64[us]) and ``stage`` (objects)."""
        sh = self.history.stage_history
        changed = sh["changed_at"].to_numpy().astype("datetime64[us]")
        return changed, sh["stage"].to_numpy(dtype=object)

    @functools.cached_property
    def stage_values(self) -> tuple[dict[str, np.ndarray], bool]:
        """The stage history's stage fields and ``changed_at`` as the values ``.iat`` reads
        (read once: four column lookups cost ~0.3 ms on every what-if), and whether its index
        is unique."""
        sh = self.history.stage_history
        columns = (*STAGE_FIELDS, "changed_at")
        return {c: sh[c].to_numpy(dtype=object) for c in columns}, bool(sh.index.is_unique)

    @functools.cached_property
    def owner_regions(self) -> dict[Any, object]:
        """Each rep's region, as the reps table's first row of the rep gives it."""
        reps = self.history.reps
        out: dict[Any, object] = {}
        for owner, region in zip(reps["owner_id"], reps["region"], strict=True):
            out.setdefault(owner, region)
        return out

    @functools.cached_property
    def list_prices(self) -> ListPrices:
        """The list prices of the data's products and deals (expected revenue's fallback)."""
        return ListPrices.of(self.history)

    @functools.cached_property
    def context(self) -> DealContext:
        """What a what-if's feature row reads from the rest of the history (built once)."""
        return deal_context(self.history, self.as_of, self.spec)

    @functools.cached_property
    def _owners(self) -> frozenset[str]:
        reps = self.history.reps["owner_id"].dropna().astype(str)
        return frozenset(reps) | frozenset(self.history.deals["owner_id"].dropna().astype(str))

    def knows_owner(self, owner_id: str) -> bool:
        """Whether the data knows the rep (in the reps table or owning a deal)."""
        return owner_id in self._owners

    @functools.cached_property
    def stages(self) -> tuple[str, ...]:
        """The stages the data knows (a what-if's or a new deal's stage must be one): those of
        the stage history and of the deals table (an export without stage history, like
        Maven's, still has stages)."""
        known = set(self.history.stage_history["stage"].dropna().astype(str))
        if "stage" in self.history.deals:
            known |= set(self.history.deals["stage"].dropna().astype(str))
        return tuple(sorted(known))

    def knows(self, deal_id: str) -> bool:
        return bool(position(self.deal_pos, deal_id) >= 0)

    def status_of(self, deal_id: str) -> str:
        loc = position(self.deal_pos, deal_id)
        return str(self.history.deals["status"].iat[loc])


def _rows_by_deal(frame: pd.DataFrame) -> dict[Any, np.ndarray]:
    groups = frame.groupby("deal_id", sort=False).indices
    return {k: np.asarray(v, dtype=np.int64) for k, v in groups.items()}


def build_index(history: History, as_of: pd.Timestamp | None = None) -> DataIndex:
    when = pd.Timestamp(as_of) if as_of is not None else history.exported_at
    spec = feature_spec(history)
    features = build_features(history, when, features=spec)
    features.index = features.index.astype(str)
    deals = history.deals
    reps = history.reps.dropna(subset=["owner_id"]).drop_duplicates("owner_id")
    return DataIndex(
        history=history,
        as_of=when,
        spec=spec,
        features=features,
        deal_pos=pd.Index(deals["deal_id"].astype(str)),
        stage_rows=_rows_by_deal(history.stage_history),
        activity_rows=_rows_by_deal(history.activities),
        owner_team={
            str(o): str(t)
            for o, t in zip(reps["owner_id"], reps["team"], strict=True)
            if _text(t) is not None
        },
    )


def position(index: pd.Index, key: Any) -> int:
    """Row of ``key`` in a unique index, -1 when absent."""
    try:
        loc = index.get_loc(key)
    except KeyError:
        return -1
    return loc if isinstance(loc, int) else -1


def _text(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return None if text in ("nan", "None", "<NA>") else text


@dataclass(frozen=True)
class Change:
    """A deal to score: known (``overrides`` may be empty) or new (``new`` set)."""

    key: str  # the id scored under (internal id for new deals)
    client_id: str
    where: str  # request location, for error messages
    overrides: DealOverrides | None = None
    new: NewDeal | None = None


def effective_team(index: DataIndex, change: Change) -> str | None:
    """The team the deal has once the change applies."""
    if change.new is not None:
        if change.new.team is not None:
            return change.new.team
        return index.owner_team.get(change.new.owner_id or "")
    if change.overrides is not None and change.overrides.team is not None:
        return change.overrides.team
    return index.team_of(change.key)


def plain_rows(index: DataIndex, deal_ids: list[str]) -> pd.DataFrame:
    """Feature rows of known open deals, unchanged."""
    return index.features.loc[deal_ids]


LiveRows = pd.DataFrame | list[FeatureRow]
"""A request's feature rows: a one-deal row not framed yet (framed together with the other
requests' rows of its scoring batch, ``framed``), or a frame."""


def whatif_rows(index: DataIndex, changes: list[Change]) -> pd.DataFrame:
    """Feature rows of changed or new deals, from the history with the changes applied."""
    return framed([live_rows(index, changes)])


def live_rows(index: DataIndex, changes: list[Change]) -> LiveRows:
    """``whatif_rows`` before the frame: a one-deal change gives its ``FeatureRow``."""
    if len(changes) == 1:
        row = _one_deal_row(index, changes[0])
        if row is not None:
            return [row]
    return _rows_on_changed_history(index, changes)


def framed(parts: list[LiveRows]) -> pd.DataFrame:
    """The parts' rows as one frame, in order (``pd.concat`` of their frames; one-deal rows of
    one context framed at once, ``features.single.rows_frame``)."""
    unframed = [p for p in parts if not isinstance(p, pd.DataFrame)]
    if len(unframed) == len(parts):
        rows = rows_frame([r for p in unframed for r in p])
        rows.index = rows.index.astype(str)
        return rows
    frames = [p if isinstance(p, pd.DataFrame) else framed([p]) for p in parts]
    return pd.concat(frames) if len(frames) > 1 else frames[0]


def _one_deal_row(index: DataIndex, change: Change) -> FeatureRow | None:
    """The row ``_rows_on_changed_history`` gives for one change, without rebuilding the whole
    history: ``features.single.deal_row`` gives the same row from the deal's plain values and
    own rows and the index's context (see its docstring); None when the deal is not open at
    as_of (the general path gives the (empty) answer)."""
    context = index.context
    if change.new is not None:
        values, stage_row = _new_deal_values(index, change)
        replaced = None
        fields = {k: _us(v) if k in DATETIME_COLUMNS else v for k, v in values.items()}
        own = OwnRows([], _NONE, np.zeros(0), _NONE, _NONE, np.zeros(0, dtype=bool))
    else:
        assert change.overrides is not None
        fields, own = known_deal(context, change.key)
        given = change.overrides.model_dump(exclude_none=True)
        fields |= {name: given[name] for name in STATIC_FIELDS if name in given}
        for name, value in (given.get("attributes") or {}).items():
            column = _attribute_column(index, name, value, f"{change.where}.overrides")
            fields[column] = _attribute_value(index, name, value)
        stage_row, replaced = None, None
        if any(name in given for name in STAGE_FIELDS):
            stage_row, replaced = _stage_change(index, change.key, given, change.where)
    if stage_row is not None:
        at, ecd = _us(stage_row["changed_at"]), _us(stage_row["expected_close_date"])
        own = own.with_stage_row(str(stage_row["stage"]), at, stage_row["amount"], ecd, replaced)
    return deal_row(context, fields, own)


_NONE = np.zeros(0, dtype=np.int64)


def _us(value: object) -> int:
    """A time in microseconds since the epoch (``NAT`` when missing), as feature rows read it."""
    return int(_naive_utc(value).astype(np.int64))


def _stage_frame(stage_history: pd.DataFrame, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Stage-history rows as a frame with the history's columns and dtypes."""
    if len(rows) == 1:
        return _one_stage_frame(stage_history, rows[0])
    added = pd.DataFrame(rows, columns=stage_history.columns)
    added["changed_at"] = to_naive_utc(added["changed_at"])
    added["expected_close_date"] = to_naive_utc(added["expected_close_date"])
    return _as_dtypes(added, stage_history)


def _one_stage_frame(stage_history: pd.DataFrame, row: dict[str, Any]) -> pd.DataFrame:
    """``_stage_frame`` of one row, built column by column in the history's dtypes (the
    general path's frame inference, UTC conversion and casts cost ~1 ms on a live request)."""
    columns: dict[str, Any] = {}
    for name, dtype in stage_history.dtypes.items():
        column = str(name)
        value = row.get(column)
        if column in ("changed_at", "expected_close_date"):
            columns[column] = np.array([_naive_utc(value)], dtype="datetime64[us]")
        else:
            columns[column] = pd.array([None if _missing(value) else value], dtype=dtype)
    out = pd.DataFrame(columns)
    return _as_dtypes(out, stage_history)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NaT


def _naive_utc(value: object) -> Any:
    """``to_naive_utc`` of one value: naive UTC ``datetime64[us]``, NaT when missing."""
    if _missing(value):
        return np.datetime64("NaT", "us")
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_datetime64().astype("datetime64[us]")


def _as_dtypes(frame: pd.DataFrame, like: pd.DataFrame) -> pd.DataFrame:
    """``frame.astype(like.dtypes.to_dict())``, converting only the columns whose dtype differs
    (the others would be copied as they are, at ~0.1 ms a column on every live request)."""
    wanted = {c: t for c, t in like.dtypes.items() if frame[c].dtype != t}
    return frame.astype(wanted) if wanted else frame


def _rows_on_changed_history(index: DataIndex, changes: list[Change]) -> pd.DataFrame:
    """The rows of ``build_features`` on the whole history with every change applied."""
    history = index.history
    deals = history.deals.copy()
    stage_history = history.stage_history
    extra_deals: list[pd.DataFrame] = []
    extra_stages: list[dict[str, Any]] = []
    drop_stage_rows: list[int] = []
    keys = []
    for change in changes:
        keys.append(change.key)
        if change.new is not None:
            new_row, stage_row = _new_deal(index, change)
            extra_deals.append(new_row)
            if stage_row is not None:
                extra_stages.append(stage_row)
            continue
        assert change.overrides is not None
        loc = position(index.deal_pos, change.key)
        fields = change.overrides.model_dump(exclude_none=True)
        for name in STATIC_FIELDS:
            if name in fields:
                deals.iat[loc, _column(deals, name)] = fields[name]
        for name, value in (fields.get("attributes") or {}).items():
            column = _attribute_column(index, name, value, f"{change.where}.overrides")
            deals.iat[loc, _column(deals, column)] = _attribute_value(index, name, value)
        if any(name in fields for name in STAGE_FIELDS):
            stage_change, replaced = _stage_change(index, change.key, fields, change.where)
            extra_stages.append(stage_change)
            if replaced is not None:
                drop_stage_rows.append(replaced)
    if extra_deals:
        new_rows = pd.concat(extra_deals, ignore_index=True)
        deals = pd.concat([deals, new_rows.astype(deals.dtypes.to_dict())], ignore_index=True)
    if drop_stage_rows:
        stage_history = stage_history.drop(index=stage_history.index[drop_stage_rows])
    if extra_stages:
        added = _stage_frame(stage_history, extra_stages)
        stage_history = pd.concat([stage_history, added], ignore_index=True)
    wanted = [index.activity_rows.get(k) for k in keys]
    picked = np.concatenate([w for w in wanted if w is not None] or [np.zeros(0, np.int64)])
    activities = history.activities.iloc[np.sort(picked)]
    changed = replace(history, deals=deals, stage_history=stage_history, activities=activities)
    rows = build_features(changed, index.as_of, deal_ids=keys, features=index.spec)
    rows.index = rows.index.astype(str)
    return rows


def _column(frame: pd.DataFrame, name: str) -> int:
    return int(list(frame.columns).index(name))


def _attribute_column(index: DataIndex, name: str, value: object, where: str) -> str:
    kind = index.history.attributes.get(name)
    if kind is None:
        known = ", ".join(sorted(index.history.attributes)) or "none"
        raise ProblemError(
            422,
            f"unknown custom attribute {name!r} (known: {known})",
            field=f"{where}.attributes.{name}",
        )
    if kind == "numeric" and value is not None and not isinstance(value, int | float):
        raise ProblemError(
            422, f"custom attribute {name!r} is numeric", field=f"{where}.attributes.{name}"
        )
    return ATTRIBUTE_PREFIX + name


def _attribute_value(index: DataIndex, name: str, value: object) -> Any:
    if index.history.attributes.get(name) == "numeric":
        return np.nan if value is None else float(value)  # type: ignore[arg-type]
    return None if value is None else str(value)


def _stage_change(
    index: DataIndex, deal_id: str, fields: dict[str, Any], where: str
) -> tuple[dict[str, Any], int | None]:
    """A stage-history row at as_of with the overrides; replaces a row already at as_of."""
    rows = index.stage_rows.get(deal_id)
    as_of = index.as_of
    current: dict[str, Any] = {"stage": None, "amount": np.nan, "expected_close_date": pd.NaT}
    replaced = None
    last = _last_stage_row(index, rows) if rows is not None else None
    if last is not None:
        values, unique = index.stage_values
        current = {k: values[k][last] for k in STAGE_FIELDS}
        if values["changed_at"][last] == as_of:
            replaced = last if unique else -1
    merged = {**current, **{k: fields[k] for k in STAGE_FIELDS if k in fields}}
    if _text(merged["stage"]) is None:
        raise ProblemError(
            422,
            "the deal has no stage yet; give overrides.stage with amount or expected_close_date",
            field=f"{where}.overrides.stage",
        )
    row = {
        "deal_id": deal_id,
        "stage": str(merged["stage"]),
        "changed_at": as_of,
        "amount": merged["amount"],
        "expected_close_date": merged["expected_close_date"],
    }
    return row, replaced


def _last_stage_row(index: DataIndex, rows: np.ndarray) -> int | None:
    """Position of the deal's last stage row at or before as_of (``rows``: its positions in
    the stage history), as sorting them by (changed_at, stage) stably gives it (a row
    without a stage name sorts after the named ones of its time); None when there is none."""
    changed, stage = index.stage_columns
    at = index.as_of.to_datetime64().astype("datetime64[us]")
    mine = [int(r) for r in rows if changed[r] <= at]  # NaT compares False: never kept
    if not mine:
        return None

    def key(r: int) -> tuple[np.datetime64, bool, str]:
        name = stage[r]
        missing = name is None or (isinstance(name, float) and np.isnan(name))
        return changed[r], missing, "" if missing else str(name)

    return max(reversed(mine), key=key)  # max keeps the first of equals: the stable last


def _new_deal(index: DataIndex, change: Change) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    history = index.history
    values, stage_row = _new_deal_values(index, change)
    row = pd.DataFrame([values], columns=history.deals.columns)
    for column in history.deals.columns:
        if pd.api.types.is_datetime64_any_dtype(history.deals[column].dtype):
            row[column] = to_naive_utc(row[column])
    return row, stage_row


def _new_deal_created(index: DataIndex, change: Change) -> pd.Timestamp:
    """A new deal's created_at in naive UTC; 422 when it is after the scoring time."""
    assert change.new is not None
    created = pd.Timestamp(change.new.created_at)
    created = created.tz_convert("UTC").tz_localize(None) if created.tzinfo else created
    if created > index.as_of:
        raise ProblemError(
            422,
            f"created_at {created.isoformat()} is after the scoring time {index.as_of.isoformat()}",
            field=f"{change.where}.deal.created_at",
        )
    return created


def _new_deal_stage(change: Change) -> None:
    """422 for a new deal with an amount or expected close date and no stage."""
    deal = change.new
    assert deal is not None
    if deal.stage is None and any(getattr(deal, n) is not None for n in STAGE_FIELDS):
        raise ProblemError(
            422,
            "a new deal with an amount or expected_close_date needs its stage",
            field=f"{change.where}.deal.stage",
        )


def change_problems(index: DataIndex, change: Change) -> list[ProblemError]:
    """Every problem ``live_rows`` would raise on ``change`` (the first one), checked before
    scoring so that one answer names every bad deal and field of a request."""
    problems = Problems()
    attempt = problems.check
    if change.new is not None:
        attempt(_new_deal_created, index, change)
        for name, value in (change.new.attributes or {}).items():
            attempt(_attribute_column, index, name, value, f"{change.where}.deal")
        attempt(_new_deal_stage, change)
        return problems.found
    assert change.overrides is not None
    given = change.overrides.model_dump(exclude_none=True)
    for name, value in (given.get("attributes") or {}).items():
        attempt(_attribute_column, index, name, value, f"{change.where}.overrides")
    if any(name in given for name in STAGE_FIELDS):
        attempt(_stage_change, index, change.key, given, change.where)
    return problems.found


def _new_deal_values(
    index: DataIndex, change: Change
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A new deal's row of the deals table (a value per column) and its stage row."""
    deal = change.new
    assert deal is not None
    history = index.history
    created = _new_deal_created(index, change)
    values: dict[str, Any] = {c: None for c in history.deals.columns}
    for column in history.deals.columns:
        if column.startswith(ATTRIBUTE_PREFIX):
            values[column] = (
                np.nan
                if history.attributes.get(column.removeprefix(ATTRIBUTE_PREFIX)) == "numeric"
                else None
            )
    fields = deal.model_dump(exclude_none=True, exclude={"attributes", "deal_id"})
    for name, value in fields.items():
        if name in values:
            values[name] = value
    values["team"] = effective_team(index, change)
    if values.get("region") is None and deal.owner_id is not None:
        values["region"] = _text(index.owner_regions.get(deal.owner_id))
    values["deal_id"] = change.key
    values["status"] = "open"
    values["created_at"] = created
    values["closed_at"] = pd.NaT
    for name, value in (deal.attributes or {}).items():
        column = _attribute_column(index, name, value, f"{change.where}.deal")
        values[column] = _attribute_value(index, name, value)
    stage_row = None
    if any(getattr(deal, name) is not None for name in STAGE_FIELDS):
        _new_deal_stage(change)
        stage_row = {
            "deal_id": change.key,
            "stage": deal.stage,
            "changed_at": created,
            "amount": deal.amount if deal.amount is not None else np.nan,
            "expected_close_date": deal.expected_close_date,
        }
    return values, stage_row

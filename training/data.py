"""What the win model learns from: history as known at a date, and an honest temporal split.

The split never shuffles and never lets a deal's future leak into the past:

- **holdout**: snapshots dated in the latest window ``[holdout_start, holdout_end]``, labelled
  with what happened by the export. ``holdout_end`` stops ``maturity_days`` before the export
  so that most holdout deals have had time to close.
- **validation** (early stopping and calibration): snapshots dated in
  ``[validation_start, holdout_start - maturity_days]`` whose outcome was known by
  ``holdout_start``.
- **train**: snapshots dated up to ``validation_start - maturity_days`` whose outcome was known
  by ``validation_start``.

Every period thus leaves its deals at least ``maturity_days`` to close before their labels are
read, so no period's labels are skewed towards quickly closed (often lost) deals more than
another's.

A deal still open at ``holdout_start`` can only be in the holdout, so no deal is scored in the
holdout after being learnt from with its label.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from features.history import History
from features.spec import excluded_flat_columns
from salesml.errors import SalesmlError

MIN_CLOSED_DEALS = 200
MIN_PER_CLASS = 20


class NotEnoughDataError(SalesmlError):
    """Too little closed history to train and evaluate honestly."""


def truncate_history(history: History, as_of: pd.Timestamp) -> History:
    """The history as it was known at ``as_of``: later events removed, later closings undone.

    The deals table keeps its export-time values, so a deal whose closing is undone shows the
    stage and expected close date it closed with; the leakage screen of flat exports would take
    them for creation-time values. The deals-table columns the screen leaves out on the whole
    export stay out (``History.export_excluded``)."""
    export_excluded = {**history.export_excluded, **excluded_flat_columns(history)}
    deals = history.deals[history.deals["created_at"] <= as_of].copy()
    later = deals["closed_at"] > as_of
    deals.loc[later, "status"] = "open"
    deals.loc[later, "closed_at"] = pd.NaT
    known = set(deals["deal_id"])
    stages = history.stage_history
    stages = stages[(stages["changed_at"] <= as_of) & stages["deal_id"].isin(known)]
    acts = history.activities
    acts = acts[(acts["occurred_at"] <= as_of) & acts["deal_id"].isin(known)]
    return replace(
        history,
        deals=deals,
        stage_history=stages,
        activities=acts,
        exported_at=as_of,
        export_excluded=export_excluded,
    )


@dataclass(frozen=True)
class TemporalSplit:
    """Labelled snapshots split in time (see the module docstring)."""

    train: pd.DataFrame
    validation: pd.DataFrame
    holdout: pd.DataFrame
    validation_start: pd.Timestamp
    holdout_start: pd.Timestamp
    holdout_end: pd.Timestamp
    maturity_days: int
    gap_days: int = 0

    def window(self) -> dict[str, str]:
        """The data window, for the model card and MLflow."""

        def span(frame: pd.DataFrame) -> str:
            if frame.empty:
                return "empty"
            return f"{frame['as_of'].min():%Y-%m-%d} – {frame['as_of'].max():%Y-%m-%d}"

        return {
            "train": span(self.train),
            "validation": span(self.validation),
            "holdout": span(self.holdout),
            "maturity_days": str(self.maturity_days),
            "gap_days": str(self.gap_days),
        }


def maturity_days(history: History) -> int:
    """Days after which most deals have closed: p75 of won cycles, between 14 and 180."""
    won = history.deals[history.deals["status"] == "won"]
    if won.empty:
        return 90
    cycle = (won["closed_at"] - won["created_at"]).dt.days
    return int(np.clip(np.nanpercentile(cycle, 75), 14, 180))


def temporal_split(
    snapshots: pd.DataFrame,
    history: History,
    holdout_fraction: float = 0.2,
    validation_fraction: float = 0.2,
) -> TemporalSplit:
    """Split labelled snapshots in time; raise ``NotEnoughDataError`` when too little is closed."""
    _check_enough(history)
    maturity = maturity_days(history)
    holdout_end = history.exported_at - pd.Timedelta(days=maturity)
    labelled = snapshots[snapshots["label_won"].notna() & (snapshots["as_of"] <= holdout_end)]
    if labelled.empty:
        raise NotEnoughDataError(
            f"no snapshot is older than {maturity} days with a known outcome; import a longer "
            "history (at least a few months of closed deals)"
        )
    # Leave each period `maturity` days for its deals to close before its labels are read, as
    # the holdout has before the export; a history too short for that gets no gap (the model
    # card says so).
    gap_days = maturity
    try:
        parts = _cut(labelled, holdout_fraction, validation_fraction, gap_days)
    except NotEnoughDataError:
        gap_days = 0
        parts = _cut(labelled, holdout_fraction, validation_fraction, gap_days)
    train, validation, holdout, validation_start, holdout_start = parts
    return TemporalSplit(
        train=train,
        validation=validation,
        holdout=holdout,
        validation_start=validation_start,
        holdout_start=holdout_start,
        holdout_end=holdout_end,
        maturity_days=maturity,
        gap_days=gap_days,
    )


def _quantile_date(dates: pd.Series, q: float) -> pd.Timestamp:
    """The snapshot date below which a share ``q`` of the rows fall."""
    ordered = np.sort(dates.to_numpy())
    return pd.Timestamp(ordered[min(int(len(ordered) * q), len(ordered) - 1)])


def _cut(
    labelled: pd.DataFrame, holdout_fraction: float, validation_fraction: float, gap_days: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    gap = pd.Timedelta(days=gap_days)
    as_of, closed_at = labelled["as_of"], labelled["closed_at"]
    holdout_start = _quantile_date(as_of, 1 - holdout_fraction)
    holdout = labelled[as_of >= holdout_start]
    before = as_of[as_of <= holdout_start - gap] if gap_days else as_of[as_of < holdout_start]
    if before.empty:
        raise NotEnoughDataError("no snapshot before the holdout; import a longer history")
    share = validation_fraction / (1 - holdout_fraction)
    validation_start = _quantile_date(before, 1 - share)
    validation = labelled[
        (as_of >= validation_start) & (as_of <= before.max()) & (closed_at <= holdout_start)
    ]
    train_end = validation_start - gap
    train = labelled[
        ((as_of <= train_end) if gap_days else (as_of < validation_start))
        & (closed_at <= validation_start)
    ]
    for name, part in (("train", train), ("validation", validation), ("holdout", holdout)):
        won = int(part["label_won"].sum())
        if won < 5 or len(part) - won < 5:
            raise NotEnoughDataError(
                f"the {name} period has {won} won and {len(part) - won} lost snapshots; each "
                "period needs both outcomes — import more history"
            )
    return train, validation, holdout, validation_start, holdout_start


def _check_enough(history: History) -> None:
    status = history.deals["status"]
    won, lost = int((status == "won").sum()), int((status == "lost").sum())
    if won + lost < MIN_CLOSED_DEALS or min(won, lost) < MIN_PER_CLASS:
        raise NotEnoughDataError(
            f"training needs at least {MIN_CLOSED_DEALS} closed deals with at least "
            f"{MIN_PER_CLASS} won and {MIN_PER_CLASS} lost; the history has {won + lost} "
            f"({won} won, {lost} lost). Import more history, or train on a later --as-of."
        )

"""Time on the synthetic timeline: float days since the history start, and their conversions.

The simulation runs on "raw" time ``t``: float days since ``start``, uniform within each day.
On export every time goes through one monotone office clock, which squeezes each day into
08:00-18:00 (``floor(t) + (8 + 10 * frac(t)) / 24``): CRM users work in office hours, and as the
clock never reorders two times, every "before/after" of the simulation holds in the files.

The export is taken at midnight at the start of ``end``: every event is stamped strictly
before ``end`` (so it is on or before ``end_date`` under any reading).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from salesml.synth import effects

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

SECONDS_PER_DAY = 86_400
_EPOCH = date(1970, 1, 1)


@dataclass(frozen=True)
class Timeline:
    """The history window ``[start, end)`` and conversions from float days to Arrow values."""

    start: date
    end: date

    @classmethod
    def ending(cls, end: date, days: int = effects.HISTORY_DAYS) -> Timeline:
        """The window of ``days`` days that ends (exclusive) at midnight starting ``end``."""
        return cls(start=end - timedelta(days=days), end=end)

    @property
    def n_days(self) -> int:
        """Length of the window in days; ``t < n_days`` is inside the export."""
        return (self.end - self.start).days

    @property
    def start_epoch_day(self) -> int:
        """Days from 1970-01-01 to ``start``."""
        return (self.start - _EPOCH).days

    def weekday(self, day: IntArray) -> IntArray:
        """Weekday (0 = Monday) of whole day indices."""
        return np.asarray((day + self.start.weekday()) % 7, dtype=np.int64)

    def calendar(self, day: IntArray) -> npt.NDArray[Any]:
        """``datetime64[D]`` of whole day indices."""
        return np.datetime64(self.start, "D") + day

    def month(self, day: IntArray) -> IntArray:
        """Calendar month (1-12) of whole day indices."""
        months = self.calendar(day).astype("datetime64[M]").astype(np.int64)
        return np.asarray(months % 12 + 1, dtype=np.int64)

    def month_start_index(self, day: IntArray, months_ahead: IntArray) -> IntArray:
        """Day index of the first day of the month ``months_ahead`` after the one of ``day``."""
        month = self.calendar(day).astype("datetime64[M]") + months_ahead
        first = month.astype("datetime64[D]") - np.datetime64(self.start, "D")
        return np.asarray(first.astype(np.int64), dtype=np.int64)

    def creation_weights(self) -> FloatArray:
        """Relative creation intensity per day: yearly growth x month factor x weekday."""
        day = np.arange(self.n_days, dtype=np.int64)
        growth = np.exp(np.log1p(effects.GROWTH_PER_YEAR) * day / 365.0)
        month_factor = np.asarray(effects.CREATION_MONTH_FACTOR)[self.month(day) - 1]
        weekend = np.where(self.weekday(day) >= 5, effects.CREATION_WEEKEND_FACTOR, 1.0)
        return np.asarray(growth * month_factor * weekend, dtype=np.float64)

    def sample_creation(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` sorted raw creation times following :meth:`creation_weights`."""
        cdf = np.cumsum(self.creation_weights())
        cdf /= cdf[-1]
        day = np.searchsorted(cdf, rng.random(n), side="right").astype(np.float64)
        t = day + rng.random(n)
        t.sort()
        return t

    @staticmethod
    def office(t: FloatArray) -> FloatArray:
        """The office clock: raw time to exported time, each day squeezed into 08:00-18:00."""
        day = np.floor(t)
        return np.asarray(day + (8.0 + 10.0 * (t - day)) / 24.0, dtype=np.float64)

    def seconds(self, t: FloatArray) -> IntArray:
        """Exported whole seconds since the start of the history (monotone in ``t``)."""
        return np.floor(self.office(t) * SECONDS_PER_DAY).astype(np.int64)

    def timestamps(self, t: FloatArray, mask: BoolArray | None = None) -> pa.Array:
        """Raw times as a ``timestamp[us]`` Arrow array on the office clock; ``mask`` = nulls."""
        secs = self.seconds(np.where(mask, 0.0, t) if mask is not None else t)
        return self.timestamps_from_seconds(secs, mask)

    def timestamps_from_seconds(self, secs: IntArray, mask: BoolArray | None = None) -> pa.Array:
        """Exported seconds since the start of the history as a ``timestamp[us]`` array."""
        micros = (secs + self.start_epoch_day * SECONDS_PER_DAY) * 1_000_000
        return pa.array(micros, type=pa.int64(), mask=mask).cast(pa.timestamp("us"))

    def dates(self, day: IntArray, mask: BoolArray | None = None) -> pa.Array:
        """A ``date32`` Arrow array of whole day indices; ``mask`` marks nulls."""
        epoch_days = (day + self.start_epoch_day).astype(np.int32)
        return pa.array(epoch_days, type=pa.int32(), mask=mask).cast(pa.date32())

    def next_weekday(self, day: IntArray) -> IntArray:
        """Move Saturdays and Sundays to the following Monday."""
        wd = self.weekday(day)
        return np.asarray(day + np.where(wd >= 5, 7 - wd, 0), dtype=np.int64)

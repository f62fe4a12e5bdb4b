"""The close-timing model: when an open deal closes, as a competing-risks distribution.

A discrete-time hazard model. Time after as_of is cut into bins (``EDGES`` days); for a deal
still open at the start of bin ``k`` the LightGBM multiclass booster gives the probability that
it closes won in the bin, closes lost in it, or is still open at its end. Chaining the bins
gives the cumulative incidence of closing won by any day (``cif_won``); dividing by its total
gives the distribution of the time to close *given the deal is won*, from which the expected
close date and an interval for days to close are read.

Training (``training.timing.fit``) uses only bins that were fully observed before the training
cut-off, so deals still open are censored, not dropped, and never bias the model toward short
cycles. The interval is conformalised: ``pit_levels`` maps a nominal quantile level to the level
that held on a calibration period (weighted for censoring), so the 80 % interval covers 80 % of
won deals' actual days to close.

No pickles: ``timing.json`` (edges, feature contract, conformal levels, metadata) and
``timing_model.txt`` (LightGBM text).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy.special import softmax

from salesml.jsonio import dumps_exact
from salesml.models.contract import FeatureContract, codes_match, float_column, read_document

# 2: the bin features are listed (format 1 had the original six); 3: per-bin starting scores
# and calendar weights (both optional when reading).
TIMING_FORMAT = 3
TIMING_READS = (1, 2, 3)
TIMING_JSON = "timing.json"
TIMING_TXT = "timing_model.txt"
# Bin edges in days after as_of: fine where most deals close, coarse in the tail.
EDGES: tuple[int, ...] = (0, 7, 14, 30, 45, 60, 90, 120, 180, 270, 365, 540, 730)
# Features the bins add to the deal's own (see ``expand_bins``). The calendar ones place the
# bin in the year: quarter-end and year-end pushes move closings into a quarter's last month.
BIN_FEATURES: tuple[str, ...] = (
    "bin_start",
    "bin_width",
    "bin_age_days",
    "bin_month",
    "bin_quarter_ends",
    "bin_days_to_expected_close",
    "bin_quarter_last_month_share",
    "bin_days_to_quarter_end",
    "bin_year_last_month_share",
    "bin_days_to_year_end",
    "bin_calendar_intensity",
)
# What bundles saved before the calendar features were added were trained on.
LEGACY_BIN_FEATURES: tuple[str, ...] = BIN_FEATURES[:6]
NONE, WON, LOST = 0, 1, 2
SUPPORT_SLACK = 1.25  # how far past the oldest won age a close date is still given
SINGLE_THREAD_DEALS = 8  # deals below which the booster predicts on one thread
LEVELS = np.linspace(0.0, 1.0, 101)
# Another contract (``features``, ``kinds``, ``vocabularies``: the win model's) and its model
# matrix of the same rows.
Encoded = tuple[Any, np.ndarray]


@dataclass
class TimingBundle:
    """A trained close-timing model and the feature contract it was trained on.

    Attributes:
        features: deal feature names (the bin features are appended to these).
        kinds: feature name → "numeric" | "categorical".
        vocabularies: categorical feature → categories in training order.
        booster: LightGBM multiclass booster over (deal, bin) rows: none / won / lost.
        edges: bin edges in days after as_of.
        tail_win_share: share of deals still open at the last edge that end up won.
        tail_days: mean days to close past the last edge (for the tail of the distribution).
        pit_levels: conformal map, ``pit_levels[i]`` = the level of the model's conditional
            won-time distribution that held with frequency ``LEVELS[i]`` on calibration.
        metadata: data window, holdout metrics, flags.
        bin_log_priors: (bins, 3) per-bin starting scores the booster's trees add to: the log
            class shares of the bin, recalibrated on held-out deals (``training.timing.fit.
            recalibrated_offsets``). Without it (bundles before format 3) the booster's raw
            scores alone, which overstate short bins' rare closings.
        calendar_in_start: the won score also starts from log(``bin_calendar_intensity``), so
            a bin in a quiet (busy) stretch of the calendar starts with proportionally fewer
            (more) won closings, and the trees learn what differs from that.
        calendar_weights: relative won-closing intensity per calendar ``month`` (12) and
            ``weekday`` (7, Monday first), learnt from the history. A bin's won mass is spread
            over its days in proportion to them (not evenly), so a 30-day bin from mid-October
            puts its year-end slips in December, not half in November. ``None``: evenly.
    """

    features: list[str]
    kinds: Mapping[str, str]
    vocabularies: dict[str, list[str]]
    booster: lgb.Booster | None
    edges: tuple[int, ...] = EDGES
    tail_win_share: float = 0.0
    tail_days: float = 180.0
    pit_levels: list[float] = field(default_factory=LEVELS.tolist)
    constant_hazards: list[list[float]] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    bin_features: tuple[str, ...] = BIN_FEATURES
    bin_log_priors: list[list[float]] | None = None
    calendar_in_start: bool = False
    calendar_weights: dict[str, list[float]] | None = None

    @property
    def model_features(self) -> list[str]:
        return [*self.features, *self.bin_features]

    def feature_contract(self) -> FeatureContract:
        """The booster's contract: the deal's features, then the bin features."""
        kinds = dict(self.kinds) | dict.fromkeys(self.bin_features, "numeric")
        return FeatureContract(self.model_features, kinds, self.vocabularies)

    # --- prediction -----------------------------------------------------------------------

    def hazards(
        self,
        features: pd.DataFrame,
        as_of: pd.Series | pd.Timestamp,
        encoded: Encoded | None = None,
    ) -> np.ndarray:
        """(n, bins, 3): probability of none / won / lost in each bin, given open at its start.

        ``encoded``: another contract's model matrix of the same rows (the win model's), whose
        columns of the features both encode alike are used instead of encoding them again."""
        n, k = len(features), len(self.edges) - 1
        if n == 0:
            return np.zeros((0, k, 3))
        if self.booster is None:
            table = np.asarray(self.constant_hazards or [[1.0, 0.0, 0.0]] * k, dtype=float)
            return np.broadcast_to(table, (n, k, 3)).copy()
        matrix, intensity = self._bin_matrix(features, as_of, encoded)
        # A few rows (the API's what-ifs): one thread saves the OpenMP wake-up.
        threads: dict[str, Any] = {"num_threads": 1} if n <= SINGLE_THREAD_DEALS else {}
        if self.bin_log_priors is None:
            flat = np.asarray(self.booster.predict(matrix, **threads), dtype=np.float64)
            return flat.reshape(n, k, 3)
        raw = np.asarray(self.booster.predict(matrix, raw_score=True, **threads), dtype=np.float64)
        if self.calendar_in_start:
            raw = raw + calendar_score(intensity)
        return np.asarray(
            softmax(raw.reshape(n, k, 3) + np.asarray(self.bin_log_priors)[None, :, :], axis=-1)
        )

    @functools.cached_property
    def _deal_contract(self) -> FeatureContract:
        """The deal features' contract (the booster's without the bin features)."""
        return FeatureContract(self.features, self.kinds, self.vocabularies)

    @functools.cached_property
    def _codes_match(self) -> bool:
        return codes_match(self.booster, self.feature_contract())

    def _bin_matrix(
        self,
        features: pd.DataFrame,
        as_of: pd.Series | pd.Timestamp,
        encoded: Encoded | None = None,
    ) -> tuple[np.ndarray | pd.DataFrame, np.ndarray]:
        """The booster's input over (deal, bin) rows, and the rows' calendar intensities.

        When the booster codes categoricals as the contract does (``codes_match``), a float
        matrix: the deals' rows encoded once and repeated per bin, beside the bin columns
        (no frame of n × bins rows; LightGBM skips its pandas conversion). Else the frame of
        ``expand_bins`` through the contract, as LightGBM was trained on it."""
        if self._codes_match:
            row, extra = bin_columns(features, as_of, self.edges, calendar=self.calendar_weights)
            bins = np.column_stack([extra[name] for name in self.bin_features])
            matrix = np.hstack([self._deal_matrix(features, encoded)[row], bins])
            return matrix, extra["bin_calendar_intensity"]
        rows = expand_bins(features, as_of, self.edges, calendar=self.calendar_weights)
        intensity = rows["bin_calendar_intensity"].to_numpy(dtype=float)
        return self.feature_contract().matrix(rows), intensity

    def _deal_matrix(self, features: pd.DataFrame, encoded: Encoded | None) -> np.ndarray:
        """``_deal_contract.model_matrix(features)``, with the columns ``encoded`` holds taken
        from it: a feature both contracts encode alike (numeric in both, or categorical on
        the same vocabulary) has the same column, so ``encode`` would give the same numbers."""
        contract = self._deal_contract
        if encoded is None:
            return contract.model_matrix(features)
        other, given = encoded
        same = self._shared_columns(other)
        missing = [f for f in self.features if f not in same and f not in features.columns]
        if missing:
            contract.matrix(features)  # raises the BundleError naming them
        out = np.empty((len(features), len(self.features)), dtype=np.float64)
        for i, name in enumerate(self.features):
            j = same.get(name)
            out[:, i] = given[:, j] if j is not None else contract.encode(name, features[name])
        return out

    def _shared_columns(self, other: Any) -> dict[str, int]:
        """Feature → its column in ``other``'s model matrix, for the features ``other``
        (a contract: ``features``, ``kinds``, ``vocabularies``) encodes as this model does."""
        key = id(other)
        hit = self._shared.get(key)
        if hit is not None and hit[0] is other:
            return hit[1]
        position = {name: j for j, name in enumerate(other.features)}
        same: dict[str, int] = {}
        for name in self.features:
            j = position.get(name)
            if j is None:
                continue
            mine, theirs = self.kinds.get(name), other.kinds.get(name)
            numeric = mine != "categorical" and theirs != "categorical"
            if numeric or (
                mine == theirs == "categorical"
                and list(self.vocabularies[name]) == list(other.vocabularies[name])
            ):
                same[name] = j
        self._shared[key] = (other, same)
        return same

    @functools.cached_property
    def _shared(self) -> dict[int, tuple[Any, dict[str, int]]]:
        return {}

    def cif_won(self, hazards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cumulative probability of having closed won by each edge, and of still being open.

        Returns ``(cif, survival)``, both (n, bins + 1), at ``edges``; ``cif[:, 0] == 0``.
        """
        n, k = hazards.shape[:2]
        survival = np.ones((n, k + 1))
        survival[:, 1:] = np.cumprod(hazards[:, :, NONE], axis=1)
        won_in_bin = survival[:, :-1] * hazards[:, :, WON]
        cif = np.zeros((n, k + 1))
        cif[:, 1:] = np.cumsum(won_in_bin, axis=1)
        return cif, survival

    def won_mass(self, hazards: np.ndarray) -> np.ndarray:
        """The model's own probability of ever closing won (bins plus tail)."""
        cif, survival = self.cif_won(hazards)
        return np.asarray(cif[:, -1] + survival[:, -1] * self.tail_win_share)

    def conditional_cdf(self, hazards: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Days grid and the CDF of days to close given won, at each edge plus the tail end."""
        cif, survival = self.cif_won(hazards)
        total = cif[:, -1] + survival[:, -1] * self.tail_win_share
        safe = np.where(total > 0, total, 1.0)
        cdf = np.concatenate([cif / safe[:, None], np.ones((len(cif), 1))], axis=1)
        cdf[total <= 0] = np.linspace(0, 1, cdf.shape[1])  # no information: spread evenly
        grid = np.asarray([*self.edges, self.edges[-1] + 2 * self.tail_days], dtype=float)
        return grid, np.maximum.accumulate(np.clip(cdf, 0.0, 1.0), axis=1)

    def conformal_level(self, level: float | np.ndarray) -> np.ndarray:
        """The model level whose quantile held with frequency ``level`` on calibration."""
        return np.asarray(np.interp(level, LEVELS, np.asarray(self.pit_levels, dtype=float)))

    def quantile_days(self, hazards: np.ndarray, level: float) -> np.ndarray:
        """Conformalised ``level`` quantile of days to close given won, per deal."""
        grid, cdf = self.conditional_cdf(hazards)
        target = float(self.conformal_level(level))
        return _inverse_cdf_rows(grid, cdf, target)

    def pit(self, hazards: np.ndarray, days: np.ndarray) -> np.ndarray:
        """The model's conditional CDF evaluated at actual days to close (PIT values)."""
        grid, cdf = self.conditional_cdf(hazards)
        return _cdf_at(grid, cdf, np.asarray(days, dtype=float))

    def won_by(
        self, hazards: np.ndarray, days: np.ndarray, as_of: pd.Timestamp | None = None
    ) -> np.ndarray:
        """Conditional probability of having closed won by ``days`` (per deal), given won.

        With ``as_of``, each bin's mass is spread over its calendar days by
        ``calendar_weights``; without it, evenly."""
        grid, cdf = self.conditional_cdf(hazards)
        days = np.broadcast_to(np.asarray(days, dtype=float), (len(cdf),))
        warp = self._calendar_warp(as_of, grid[-1])
        if warp is not None:
            grid, days = warp(grid), warp(days)
        return _cdf_at(grid, cdf, days)

    def won_between(
        self,
        hazards: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        as_of: pd.Timestamp | None = None,
    ) -> np.ndarray:
        """(n, periods): conditional probability of closing won in [start, end) days, given won
        (with ``as_of``: each bin's mass spread over its days by ``calendar_weights``)."""
        return self._won_between_cdf(self.conditional_cdf(hazards), starts, ends, as_of)

    def _won_between_cdf(
        self,
        grid_cdf: tuple[np.ndarray, np.ndarray],
        starts: np.ndarray,
        ends: np.ndarray,
        as_of: pd.Timestamp | None,
    ) -> np.ndarray:
        """``won_between`` from the rows' ``conditional_cdf`` (computed once by the caller)."""
        grid, cdf = grid_cdf
        lo_days, hi_days = np.asarray(starts, dtype=float), np.asarray(ends, dtype=float)
        warp = self._calendar_warp(as_of, grid[-1])
        if warp is not None:
            grid, lo_days, hi_days = warp(grid), warp(lo_days), warp(hi_days)
        # Every row's CDF at the same days: one broadcast per side, not one call per window
        # (``_cdf_at`` elementwise, the same numbers).
        out = _cdf_at_days(grid, cdf, hi_days) - _cdf_at_days(grid, cdf, lo_days)
        return np.asarray(np.clip(out, 0.0, 1.0))

    def _calendar_warp(
        self, as_of: pd.Timestamp | None, last_day: float
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        """Days after ``as_of`` → cumulative calendar weight (a clock that runs fast on days
        when deals close more often): linear in it is proportional to the weights in days."""
        if as_of is None or not self.calendar_weights:
            return None
        start = pd.Timestamp(as_of).normalize()
        offset = (pd.Timestamp(as_of) - start) / pd.Timedelta(days=1)
        span = int(np.ceil(last_day + offset)) + 2
        key = _calendar_key(self.calendar_weights)
        clock = _calendar_clock_at(start, span, key, floor=1e-6)  # always moves
        axis = np.arange(len(clock), dtype=float) - offset

        def warp(x: np.ndarray) -> np.ndarray:
            return np.asarray(np.interp(np.asarray(x, dtype=float), axis, clock))

        return warp

    def predict(
        self,
        features: pd.DataFrame,
        as_of: pd.Timestamp,
        win_probability: np.ndarray,
        amount: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Timing columns for deals open at ``as_of`` whose win probability is known.

        ``p_close_*`` are probabilities of closing *won* within the window (win probability ×
        the conditional timing), ``expected_close_date`` the conformalised median date given
        won, ``days_to_close_low/high`` its 80 % interval, ``expected_revenue`` win probability
        × amount (NaN without an amount).
        """
        out = self.predict_columns(features, as_of, win_probability, amount)
        return pd.DataFrame(out, index=features.index)

    def predict_columns(
        self,
        features: pd.DataFrame,
        as_of: pd.Timestamp,
        win_probability: np.ndarray,
        amount: np.ndarray | None = None,
        encoded: Encoded | None = None,
    ) -> dict[str, Any]:
        """``predict``'s columns as arrays, without the frame (a live answer's one row pays
        ~0.5 ms for building it); ``encoded`` as in ``hazards``."""
        hz = self.hazards(features, as_of, encoded)
        p = np.asarray(win_probability, dtype=float)
        as_of = pd.Timestamp(as_of)
        out: dict[str, Any] = {}  # one frame at the end (column inserts cost ~1 ms each)
        windows = _windows(as_of)
        # one conditional CDF and one calendar clock for every window ([0, end) = by end) and
        # every quantile
        grid_cdf = self.conditional_cdf(hz)
        within = self._won_between_cdf(
            grid_cdf, np.zeros(len(windows)), np.array(list(windows.values())), as_of
        )
        for k, column in enumerate(windows):
            out[column] = p * within[:, k]
        grid, cdf = grid_cdf
        median = _inverse_cdf_rows(grid, cdf, float(self.conformal_level(0.5)))
        low = np.floor(_inverse_cdf_rows(grid, cdf, float(self.conformal_level(0.1))))
        high = np.ceil(_inverse_cdf_rows(grid, cdf, float(self.conformal_level(0.9))))
        # "When, if won" is unknown for a deal whose median close would make it older than
        # any deal the data saw won (Maven's open deals aged 150-420 days, won cycles <= 138):
        # the model's tail would date them two years out.
        unsupported = self.beyond_support(features, median)
        median = np.where(unsupported, np.nan, median)
        out["expected_close_date"] = (as_of + pd.to_timedelta(median, unit="D")).normalize()
        out["days_to_close_low"] = np.where(unsupported, np.nan, low)
        out["days_to_close_high"] = np.where(unsupported, np.nan, high)
        out["expected_revenue"] = (
            p * amount if amount is not None else np.full(len(features), np.nan)
        )
        return out

    def beyond_support(self, features: pd.DataFrame, days: np.ndarray) -> np.ndarray:
        """Rows whose age at close (age now + ``days``) would exceed, by a quarter, the oldest
        age at which a training deal closed won (``metadata["won_age_max_days"]``)."""
        limit = self.metadata.get("won_age_max_days")
        if limit is None or not np.isfinite(float(limit)):
            return np.zeros(len(features), dtype=bool)
        age = _column(features, "age_days")
        return np.asarray(np.nan_to_num(age, nan=0.0) + days > SUPPORT_SLACK * float(limit))

    # --- persistence ----------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": TIMING_FORMAT,
            "features": self.features,
            "kinds": dict(self.kinds),
            "vocabularies": self.vocabularies,
            "edges": list(self.edges),
            "tail_win_share": self.tail_win_share,
            "tail_days": self.tail_days,
            "pit_levels": list(self.pit_levels),
            "constant_hazards": self.constant_hazards,
            "bin_log_priors": self.bin_log_priors,
            "calendar_in_start": self.calendar_in_start,
            "calendar_weights": self.calendar_weights,
            "bin_features": list(self.bin_features),
            "has_booster": self.booster is not None,
            "metadata": self.metadata,
        }
        (path / TIMING_JSON).write_text(dumps_exact(doc, indent=2, default=str), encoding="utf-8")
        if self.booster is not None:
            self.booster.save_model(str(path / TIMING_TXT))
        return path

    @classmethod
    def load(cls, path: Path) -> TimingBundle:
        doc = read_document(path, TIMING_JSON, TIMING_READS, "timing model")
        booster = lgb.Booster(model_file=str(path / TIMING_TXT)) if doc["has_booster"] else None
        return cls(
            features=list(doc["features"]),
            kinds=dict(doc["kinds"]),
            vocabularies={k: list(v) for k, v in doc["vocabularies"].items()},
            booster=booster,
            edges=tuple(int(e) for e in doc["edges"]),
            tail_win_share=float(doc["tail_win_share"]),
            tail_days=float(doc["tail_days"]),
            pit_levels=[float(v) for v in doc["pit_levels"]],
            constant_hazards=doc.get("constant_hazards"),
            metadata=dict(doc["metadata"]),
            bin_features=tuple(doc.get("bin_features", LEGACY_BIN_FEATURES)),
            bin_log_priors=doc.get("bin_log_priors"),
            calendar_in_start=bool(doc.get("calendar_in_start", False)),
            calendar_weights=doc.get("calendar_weights"),
        )


def calendar_score(rows: pd.DataFrame | np.ndarray) -> np.ndarray:
    """(rows, 3) starting scores from the calendar: log of the bin's won-closing intensity on
    the won class, 0 elsewhere (rows from ``expand_bins``, or their intensities)."""
    intensity = (
        rows["bin_calendar_intensity"].to_numpy(dtype=float)
        if isinstance(rows, pd.DataFrame)
        else np.asarray(rows, dtype=float)
    )
    out = np.zeros((len(intensity), 3))
    out[:, WON] = np.log(np.clip(intensity, 1e-3, None))
    return out


def expand_bins(
    features: pd.DataFrame,
    as_of: pd.Series | pd.Timestamp,
    edges: tuple[int, ...] = EDGES,
    keep: np.ndarray | None = None,
    calendar: Mapping[str, list[float]] | None = None,
) -> pd.DataFrame:
    """One row per (deal row, bin), deal-major: the deal's features plus ``BIN_FEATURES``.

    ``as_of`` is one date for every row or a Series aligned with ``features``; ``keep`` (a mask
    over the deal-major (row, bin) pairs) builds only the rows needed. ``calendar`` (the
    bundle's ``calendar_weights``) gives ``bin_calendar_intensity``, the mean won-closing
    intensity of the bin's days (1 without it).
    """
    row, extra = bin_columns(features, as_of, edges, keep, calendar)
    rows = features.iloc[row].reset_index(drop=True)
    return pd.concat([rows, pd.DataFrame(extra)], axis=1)


def bin_columns(
    features: pd.DataFrame,
    as_of: pd.Series | pd.Timestamp,
    edges: tuple[int, ...] = EDGES,
    keep: np.ndarray | None = None,
    calendar: Mapping[str, list[float]] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """What ``expand_bins`` adds, as arrays: the row of ``features`` each (row, bin) pair
    comes from, and the ``BIN_FEATURES`` columns of the pairs."""
    k = len(edges) - 1
    n = len(features)
    pair = np.arange(n * k)
    if keep is not None:
        pair = pair[keep]
    row, bin_index = pair // k, pair % k
    if keep is None and n > 0 and not isinstance(as_of, pd.Series):
        # One as_of for every row and every bin kept: the calendar columns are the same for
        # every deal, computed once per (as_of, edges, calendar) on the k bins and repeated
        # (the same numbers: each is elementwise in the bin, and the calendar's span is the
        # bins' span either way). The API's one-row what-ifs pay for them once per snapshot.
        per_bin = _calendar_bins(pd.Timestamp(as_of), tuple(edges), _calendar_key(calendar))
        extra = {name: values[bin_index] for name, values in per_bin.items()}
        extra["bin_age_days"] = _column(features, "age_days")[row] + extra["bin_start"]
        extra["bin_days_to_expected_close"] = (
            _column(features, "days_to_expected_close")[row] - extra["bin_start"]
        )
        return row, {name: extra[name] for name in BIN_FEATURES}
    return row, _bin_extra(features, as_of, edges, calendar, row, bin_index)


_CalendarKey = tuple[tuple[str, tuple[float, ...]], ...] | None


def _calendar_key(calendar: Mapping[str, list[float]] | None) -> _CalendarKey:
    if not calendar:
        return None
    return tuple((name, tuple(float(v) for v in values)) for name, values in calendar.items())


@functools.lru_cache(maxsize=64)
def _calendar_bins(
    as_of: pd.Timestamp, edges: tuple[int, ...], calendar: _CalendarKey
) -> dict[str, np.ndarray]:
    """``bin_columns`` of one row at ``as_of`` (its row-dependent columns left as they come)."""
    k = len(edges) - 1
    one = pd.DataFrame({"age_days": [0.0], "days_to_expected_close": [0.0]})
    weights = {name: list(values) for name, values in calendar} if calendar else None
    out = _bin_extra(one, as_of, edges, weights, np.zeros(k, np.int64), np.arange(k))
    for values in out.values():
        values.flags.writeable = False
    return out


def _bin_extra(
    features: pd.DataFrame,
    as_of: pd.Series | pd.Timestamp,
    edges: tuple[int, ...],
    calendar: Mapping[str, list[float]] | None,
    row: np.ndarray,
    bin_index: np.ndarray,
) -> dict[str, np.ndarray]:
    starts = np.asarray(edges[:-1], dtype=float)[bin_index]
    widths = np.diff(np.asarray(edges, dtype=float))[bin_index]
    when = (
        pd.to_datetime(np.asarray(as_of)).to_numpy("datetime64[us]")[row]
        if isinstance(as_of, pd.Series)
        else np.full(len(row), pd.Timestamp(as_of).to_datetime64().astype("datetime64[us]"))
    )
    start = when + (starts * 86_400e6).astype("timedelta64[us]")
    start_at = pd.DatetimeIndex(start)
    # In numpy's datetime64 (the same instants: the edges are whole days), not pandas'
    # DatetimeIndex arithmetic, whose fixed cost is most of a one-row score's.
    mid = start + (widths / 2 * 86_400e6).astype("timedelta64[us]")
    extra = {
        "bin_start": starts,
        "bin_width": widths,
        "bin_age_days": _column(features, "age_days")[row] + starts,
        "bin_month": _month_of(mid),
        "bin_quarter_ends": _quarter_ends_between(start_at, widths),
        "bin_days_to_expected_close": _column(features, "days_to_expected_close")[row] - starts,
        "bin_quarter_last_month_share": _last_month_share(start_at, widths, 3),
        "bin_days_to_quarter_end": _days_to_period_end(start_at, 3),
        "bin_year_last_month_share": _last_month_share(start_at, widths, 12),
        "bin_days_to_year_end": _days_to_period_end(start_at, 12),
        "bin_calendar_intensity": _calendar_intensity(start_at, widths, calendar),
    }
    return extra


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    if name not in rows:
        return np.full(len(rows), np.nan)
    return float_column(rows, name)


def _quarter_ends_between(start_at: pd.DatetimeIndex, width: np.ndarray) -> np.ndarray:
    """Quarter ends (first day of Jan/Apr/Jul/Oct) falling in [start, start + width)."""
    # Quarters since 1970 (a quarter start): floor(months since 1970-01 / 3).
    start = start_at.to_numpy("datetime64[us]")
    end = start + (np.asarray(width, dtype=float) * 86_400e6).astype("timedelta64[us]")
    start_q = start.astype("datetime64[M]").astype(np.int64) // 3
    end_q = end.astype("datetime64[M]").astype(np.int64) // 3
    return np.where(np.isnat(start), np.nan, (end_q - start_q).astype(float))


def _month_of(at: np.ndarray) -> np.ndarray:
    """``DatetimeIndex(at).month`` as floats (NaN where ``at`` is NaT), in numpy."""
    month = at.astype("datetime64[M]").astype(np.int64) % 12 + 1
    return np.where(np.isnat(at), np.nan, month.astype(float))


def _last_month_share(start_at: pd.DatetimeIndex, width: np.ndarray, months: int) -> np.ndarray:
    """Share of the bin's days [start, start + width) in the last month of a calendar period
    of ``months`` months: a quarter's (Mar/Jun/Sep/Dec, 3) or the year's (December, 12)."""
    day = np.timedelta64(1, "D")
    start = start_at.to_numpy("datetime64[us]")
    end = start + (np.asarray(width, dtype=float) * 86_400e6).astype("timedelta64[us]")
    inside = np.zeros(len(start))
    # A bin is at most a few months long: walk the months it touches.
    month = start.astype("datetime64[M]")
    last = end.astype("datetime64[M]")
    while True:
        active = month <= last
        if not active.any():
            break
        lo = np.maximum(month.astype("datetime64[us]"), start)
        hi = np.minimum((month + 1).astype("datetime64[us]"), end)
        last_of_period = (month.astype(np.int64) % 12) % months == months - 1
        inside += np.where(active & last_of_period, np.maximum((hi - lo) / day, 0.0), 0.0)
        month = month + 1
    return np.asarray(inside / np.maximum(np.asarray(width, dtype=float), 1e-9))


def _days_to_period_end(start_at: pd.DatetimeIndex, months: int) -> np.ndarray:
    """Days from the bin's start to the end of its calendar quarter (3) or year (12)."""
    start = start_at.to_numpy("datetime64[us]")
    month = start.astype("datetime64[M]")
    end = (month - (month.astype(np.int64) % 12) % months + months).astype("datetime64[us]")
    return np.asarray((end - start) / np.timedelta64(1, "D"), dtype=float)


def _calendar_clock(
    first: pd.Timestamp, days: int, calendar: Mapping[str, list[float]], floor: float = 0.0
) -> np.ndarray:
    """Cumulative won-closing intensity at the start of each of ``days`` + 1 days from
    ``first`` (0 at ``first``); a day's intensity is its month's weight × its weekday's, at
    least ``floor``."""
    dates = pd.date_range(first, periods=days, freq="D")
    month = np.asarray(calendar["month"], dtype=float)[dates.month - 1]
    weekday = np.asarray(calendar["weekday"], dtype=float)[dates.day_of_week]
    return np.concatenate([[0.0], np.cumsum(np.maximum(month * weekday, floor))])


@functools.lru_cache(maxsize=64)
def _calendar_clock_at(
    first: pd.Timestamp, days: int, calendar: _CalendarKey, floor: float
) -> np.ndarray:
    """``_calendar_clock``, kept per (first day, span, weights): every deal scored as of one
    time reads the same clock."""
    assert calendar is not None
    clock = _calendar_clock(first, days, {name: list(v) for name, v in calendar}, floor)
    clock.flags.writeable = False
    return clock


def _calendar_intensity(
    start_at: pd.DatetimeIndex, width: np.ndarray, calendar: Mapping[str, list[float]] | None
) -> np.ndarray:
    """Mean calendar weight over the bin's days [start, start + width) (1 without weights)."""
    if not calendar or len(start_at) == 0:
        return np.ones(len(start_at))
    first = start_at.min().normalize()
    span = int(np.ceil(((start_at.max() - first) / pd.Timedelta(days=1)) + width.max())) + 2
    clock = _calendar_clock(first, span, calendar)
    axis = np.arange(len(clock), dtype=float)
    lo = np.asarray((start_at - first) / pd.Timedelta(days=1), dtype=float)
    hi = lo + np.asarray(width, dtype=float)
    return np.asarray((np.interp(hi, axis, clock) - np.interp(lo, axis, clock)) / width)


@functools.lru_cache(maxsize=8)
def _windows(as_of: pd.Timestamp) -> dict[str, float]:
    """The ``p_close_*`` windows in days after ``as_of`` (30, 60, 90 days, to the end of the
    month and of the quarter): the date offsets once per snapshot, not per request."""
    month_end = (as_of + pd.offsets.MonthBegin(1)).normalize()
    quarter_end = (as_of + pd.offsets.QuarterBegin(1, startingMonth=1)).normalize()
    return {f"p_close_{days}d": float(days) for days in (30, 60, 90)} | {
        f"p_close_this_{name}": (end - as_of) / pd.Timedelta(days=1)
        for name, end in (("month", month_end), ("quarter", quarter_end))
    }


def _cdf_at(grid: np.ndarray, cdf: np.ndarray, days: np.ndarray) -> np.ndarray:
    """Each row's piecewise-linear CDF (on the shared ``grid``) at its own ``days``."""
    x = np.clip(days, grid[0], grid[-1])
    j = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
    rows = np.arange(len(cdf))
    lo, hi = cdf[rows, j], cdf[rows, j + 1]
    frac = (x - grid[j]) / (grid[j + 1] - grid[j])
    return np.asarray(lo + frac * (hi - lo))


def _cdf_at_days(grid: np.ndarray, cdf: np.ndarray, days: np.ndarray) -> np.ndarray:
    """(rows, len(days)): ``_cdf_at`` of every row at each of ``days`` (the same days for
    every row), the same operations elementwise."""
    x = np.clip(np.asarray(days, dtype=float), grid[0], grid[-1])
    j = np.clip(np.searchsorted(grid, x, side="right") - 1, 0, len(grid) - 2)
    lo, hi = cdf[:, j], cdf[:, j + 1]
    frac = (x - grid[j]) / (grid[j + 1] - grid[j])
    return np.asarray(lo + frac * (hi - lo))


def _inverse_cdf_rows(grid: np.ndarray, cdf: np.ndarray, level: float) -> np.ndarray:
    """Per row, the smallest day at which its piecewise-linear CDF reaches ``level``."""
    if len(cdf) == 0:
        return np.zeros(0)
    index = (cdf < level).sum(axis=1)  # first grid point with cdf >= level (cdf is monotone)
    j = np.clip(index, 1, len(grid) - 1)
    rows = np.arange(len(cdf))
    lo, hi = cdf[rows, j - 1], cdf[rows, j]
    frac = np.where(hi > lo, (level - lo) / np.where(hi > lo, hi - lo, 1.0), 0.0)
    days = grid[j - 1] + frac * (grid[j] - grid[j - 1])
    days = np.where(index <= 0, grid[0], days)
    return np.asarray(np.where(index >= len(grid), grid[-1], days))

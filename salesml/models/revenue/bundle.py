"""The revenue-forecast bundle: per-segment series models, blend weights, interval widths.

``ForecastBundle.forecast`` turns the two components into the rows managers read:

- **series** (``salesml.models.revenue``): tuned Prophet per segment (a flagged baseline where
  Prophet cannot be fitted), for the full periods after training;
- **pipeline** (``salesml.models.revenue.pipeline``): open deals × win probability × timing ×
  amount;
- **new deals**: the share of a period's won revenue that, historically, came from deals created
  at most h periods before it (``new_shares``) × the series forecast — the part of the h-th
  period ahead that the pipeline cannot see because those deals do not exist yet;
- **blend**: ``forecast = w_pipeline[h] × pipeline + w_new[h] × new_deals + w_series[h] ×
  series`` for the h-th period ahead, with non-negative weights learned on rolling-origin
  backtests (bundles saved before the new-deals component blend pipeline and series only);
- **intervals**: the blend's log error ``log((actual + c) / (forecast + c))`` on the same
  backtests gives the 80 % and 95 % bounds (per freq, separately for the total and for
  segments, widening with the horizon), centred on the forecast so they always contain it. A
  period length without backtests of its own (too little history) borrows the log errors of
  the nearest period length that has them (``c`` scaled by the periods' lengths), else
  ``DEFAULT_LOG_ERRORS``: a range is zero-width only when nothing is left to forecast;
- **current period**: revenue already won in it is known; only the rest is forecast (the
  series' share of the period still to come, the pipeline from as_of to the period's end), so
  the forecast and every bound are at least what is already won;
- **coherence**: per dimension, segment forecasts are reconciled so they add up to the total
  to the cent (``salesml.models.revenue.reconcile``); only the part not yet won is
  reconciled, so no segment is moved below what it has already won.

No pickles: ``forecast.json`` holds everything, Prophet models as Prophet JSON inside each
series model's JSON document.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesml.errors import ConfigError, SalesmlError
from salesml.jsonio import dumps_exact
from salesml.models.contract import read_document
from salesml.models.revenue.intervals import LEVELS, noise_and_drift
from salesml.models.revenue.periods import check_freq, period_range, period_start, periods_ahead
from salesml.models.revenue.pipeline import DIMENSIONS, PipelineForecast
from salesml.models.revenue.prophet_model import SeriesModel
from salesml.models.revenue.reconcile import reconcile, to_cents

FORECAST_FORMAT = 3  # 3: the served method per freq; 2: blend components; 1: pipeline, series
FORECAST_READS = (1, 2, 3)
FORECAST_JSON = "forecast.json"
OUTPUT_COLUMNS = (
    "period_start",
    "segment",
    "forecast",
    "lower_80",
    "upper_80",
    "lower_95",
    "upper_95",
)
BOUNDS = ("lower_80", "upper_80", "lower_95", "upper_95")
# Log-error quantiles when no period length has backtests: the part still to forecast may turn
# out half to double (80 %), a third to three times (95 %) what is forecast.
DEFAULT_LOG_ERRORS = {
    "lower_95": -math.log(3.0),
    "lower_80": -math.log(2.0),
    "upper_80": math.log(2.0),
    "upper_95": math.log(3.0),
}
PERIOD_DAYS = {"week": 7.0, "month": 30.44, "quarter": 91.31}
# The blend's components, in the order of each step's weights.
COMPONENTS: tuple[str, ...] = ("pipeline", "new_deals", "series")
BLEND = "blend"
LEGACY_COMPONENTS: tuple[str, ...] = ("pipeline", "series")


class ForecastBundleError(SalesmlError):
    """A forecast bundle cannot be loaded or cannot answer the question asked."""


class MissingFrequencyError(ForecastBundleError):
    """The bundle has no model for the asked period length (it was trained without it)."""


def key(dimension: str, segment: str) -> str:
    return f"{dimension}|{segment}"


@dataclass
class Served:
    """A standard forecaster carrying the company total from ``from_step`` periods ahead on
    (``method == "blend"``: the blend does). ``path`` is its forecast per period from
    ``path_from`` (the period holding the training date); ``errors`` the conformal log-error
    bounds of its own backtest per step ahead (widened past the table), ``offset`` their
    ``c``."""

    method: str
    from_step: int = 0
    path: list[float] = field(default_factory=list)
    path_from: str | None = None
    errors: list[dict[str, float]] = field(default_factory=list)
    offset: float = 0.0

    def values(self, periods: pd.DatetimeIndex, freq: str) -> np.ndarray:
        """The path's values for ``periods`` (the last value past its end)."""
        first = pd.Timestamp(self.path_from) if self.path_from else periods[0]
        path = np.asarray(self.path, dtype=float)
        idx = [periods_ahead(first, p, freq) for p in periods]
        return np.array([path[min(max(i, 0), len(path) - 1)] for i in idx], dtype=float)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> Served:
        return cls(
            method=str(doc["method"]),
            from_step=int(doc.get("from_step", 0)),
            path=[float(x) for x in doc.get("path") or []],
            path_from=doc.get("path_from"),
            errors=[{k: float(v) for k, v in row.items()} for row in doc.get("errors") or []],
            offset=float(doc.get("offset", 0.0)),
        )


@dataclass
class FreqModel:
    """Everything for one period length (week, month or quarter)."""

    freq: str
    series: dict[str, SeriesModel]  # key(dimension, segment) → model
    weights: list[list[float]]  # per step ahead: one weight per component
    # level → log-error quantile, per group ("total" / "segment") and step ahead
    log_errors: dict[str, list[dict[str, float]]]
    offset: dict[str, float]  # group → c in log((actual + c) / (forecast + c))
    components: tuple[str, ...] = LEGACY_COMPONENTS
    # key(dimension, segment) → per step ahead, the share of won revenue from new deals
    new_shares: dict[str, list[float]] = field(default_factory=dict)
    # What the backtests chose to serve for the total, by steps ahead (``Served``; empty: the
    # blend everywhere); segments are reconciled to it. Why, in words, and the evidence.
    served: list[Served] = field(default_factory=list)
    champion_note: str = ""
    candidates: dict[str, dict[str, float | None]] = field(default_factory=dict)

    def weights_at(self, step: int) -> dict[str, float]:
        """Component → weight for the ``step``-th period ahead (the series alone without any)."""
        if not self.weights:
            return {c: float(c == "series") for c in self.components}
        w = self.weights[min(step, len(self.weights) - 1)]
        return {c: float(x) for c, x in zip(self.components, w, strict=True)}

    def new_share_at(self, name: str, step: int) -> float:
        shares = self.new_shares.get(name) or self.new_shares.get(key("total", "total")) or []
        return float(shares[min(step, len(shares) - 1)]) if shares else 0.0

    def errors_at(self, group: str, step: int) -> dict[str, float]:
        table = self.log_errors.get(group) or self.log_errors.get("total") or []
        return widened(table, step)

    @property
    def champion(self) -> str:
        """What carries the total one step ahead ("blend" unless a forecaster replaced it)."""
        return self.served[0].method if self.served else BLEND

    def served_at(self, step: int) -> Served | None:
        """The standard forecaster carrying the total ``step`` periods ahead (None: the blend)."""
        chosen = None
        for part in self.served:
            if part.from_step <= step:
                chosen = part
        return chosen if chosen is not None and chosen.method != BLEND and chosen.path else None

    def to_doc(self) -> dict[str, Any]:
        return {
            "freq": self.freq,
            "series": {k: json.loads(m.to_json()) for k, m in self.series.items()},
            "weights": self.weights,
            "log_errors": self.log_errors,
            "offset": self.offset,
            "components": list(self.components),
            "new_shares": self.new_shares,
            "served": [asdict(part) for part in self.served],
            "champion_note": self.champion_note,
            "candidates": self.candidates,
        }

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> FreqModel:
        return cls(
            freq=doc["freq"],
            series={k: SeriesModel.from_json(json.dumps(v)) for k, v in doc["series"].items()},
            weights=[[float(x) for x in w] for w in doc["weights"]],
            log_errors={
                g: [{k: float(v) for k, v in row.items()} for row in rows]
                for g, rows in doc["log_errors"].items()
            },
            offset={g: float(v) for g, v in doc["offset"].items()},
            components=tuple(doc.get("components", LEGACY_COMPONENTS)),
            new_shares={k: [float(x) for x in v] for k, v in (doc.get("new_shares") or {}).items()},
            served=[Served.from_doc(part) for part in doc.get("served") or []],
            champion_note=str(doc.get("champion_note", "")),
            candidates=dict(doc.get("candidates") or {}),
        )


@dataclass
class ForecastBundle:
    """Revenue forecast models for every period length, plus what the pipeline needs."""

    freqs: dict[str, FreqModel]
    list_prices: dict[str, float] = field(default_factory=dict)
    fallback_amount: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)

    def model(self, freq: str) -> FreqModel:
        freq = check_freq(freq)
        if freq not in self.freqs:
            raise MissingFrequencyError(
                f"the forecast bundle has no {freq!r} model (it has "
                f"{', '.join(sorted(self.freqs))}); retrain with salesml train"
            )
        return self.freqs[freq]

    def segments(self, freq: str, dimension: str) -> list[str]:
        prefix = f"{dimension}|"
        return sorted(k[len(prefix) :] for k in self.model(freq).series if k.startswith(prefix))

    def forecast(
        self,
        freq: str,
        horizon: int,
        as_of: pd.Timestamp,
        pipeline: PipelineForecast,
        won_so_far: dict[str, float],
        by: str | None = None,
    ) -> pd.DataFrame:
        """Rows of ``OUTPUT_COLUMNS`` for the ``horizon`` periods from the one holding as_of.

        Args:
            pipeline: the pipeline component for exactly those periods (from as_of on).
            won_so_far: revenue already won in the current period before as_of, per
                ``key(dimension, segment)`` (missing keys count 0).
            by: None for the total only; "team", "region" or "product" for the total and
                that dimension's segments, reconciled to the total.
        """
        if horizon < 1:
            raise ConfigError("--horizon must be at least 1")
        if by is not None and by not in DIMENSIONS:
            raise ConfigError(f"--by must be one of {', '.join(DIMENSIONS)}, got {by!r}")
        fm = self.with_widths(freq)
        first = period_start(as_of, freq)
        periods = period_range(first, horizon, freq)
        total = self._one(fm, "total", "total", periods, as_of, pipeline, won_so_far)
        if by is None:
            return total[list(OUTPUT_COLUMNS)]
        parts = [
            self._one(fm, by, segment, periods, as_of, pipeline, won_so_far)
            for segment in self.segments(freq, by)
        ]
        if not parts:
            return total[list(OUTPUT_COLUMNS)]
        segments = reconcile_rest(total, pd.concat(parts, ignore_index=True))
        out = pd.concat([total, segments[list(OUTPUT_COLUMNS)]], ignore_index=True)
        return out[list(OUTPUT_COLUMNS)]

    def with_widths(self, freq: str) -> FreqModel:
        """The model of ``freq``, with the interval widths of the nearest period length that
        has backtests when it has none (``c`` scaled by the periods' lengths), else with
        ``DEFAULT_LOG_ERRORS`` (no offset)."""
        fm = self.model(freq)
        if fm.log_errors:
            return fm
        others = sorted(
            (f for f, m in self.freqs.items() if f != freq and m.log_errors),
            key=lambda f: abs(math.log(PERIOD_DAYS[f] / PERIOD_DAYS[freq])),
        )
        if not others:
            return replace(fm, log_errors={"total": [dict(DEFAULT_LOG_ERRORS)]}, offset={})
        near = self.freqs[others[0]]
        scale = PERIOD_DAYS[freq] / PERIOD_DAYS[near.freq]
        offset = {g: c * scale for g, c in near.offset.items()}
        return replace(fm, log_errors=near.log_errors, offset=offset)

    def _one(
        self,
        fm: FreqModel,
        dimension: str,
        segment: str,
        periods: pd.DatetimeIndex,
        as_of: pd.Timestamp,
        pipeline: PipelineForecast,
        won_so_far: dict[str, float],
    ) -> pd.DataFrame:
        model = fm.series.get(key(dimension, segment))
        series = series_values(model, periods) if model is not None else np.zeros(len(periods))
        pipe_rows = pipeline.lookup(dimension, segment)
        pipe = (
            pipe_rows.set_index("period_start")["expected"]
            .reindex(periods, fill_value=0.0)
            .to_numpy(dtype=float)
        )
        # The current period: what is already won is known; forecast only the rest of it.
        # CRM dates are days: an as_of at midnight covers its whole day (the KPIs' rule, a
        # period is complete when as_of falls on its last day), so a month whose last day is
        # the as_of has nothing left to forecast.
        ends = period_range(periods[0], 2, fm.freq)
        covered = as_of + pd.Timedelta(days=1) if as_of == as_of.normalize() else as_of
        remaining = float(np.clip((ends[1] - covered) / (ends[1] - ends[0]), 0.0, 1.0))
        known = np.zeros(len(periods))
        known[0] = to_cents(max(float(won_so_far.get(key(dimension, segment), 0.0)), 0.0)) / 100
        series = series.copy()
        series[0] *= remaining
        name = key(dimension, segment)
        new_deals = np.array([fm.new_share_at(name, k) for k in range(len(periods))]) * series
        values = {"pipeline": pipe, "series": series, "new_deals": new_deals}
        group = "total" if dimension == "total" else "segment"
        rows: dict[str, Any] = {"period_start": periods, "segment": segment}
        point = np.zeros(len(periods))
        bounds = {name: np.zeros(len(periods)) for name in LEVELS}
        for step in range(len(periods)):
            part = fm.served_at(step) if dimension == "total" else None
            if part is None:
                weights = fm.weights_at(step)
                uncertain = max(sum(w * values[k][step] for k, w in weights.items()), 0.0)
                errors, c = fm.errors_at(group, step), fm.offset.get(group, 0.0)
            else:  # a standard forecaster carries the total: its forecast of what is to come
                share = remaining if step == 0 else 1.0
                uncertain = max(float(part.values(periods[step : step + 1], fm.freq)[0]), 0.0)
                uncertain *= share
                errors, c = widened(part.errors, step), part.offset
            if step == 0 and remaining == 0.0:  # complete: the period is what was won
                point[step] = known[step]
                for name in LEVELS:
                    bounds[name][step] = known[step]
                continue
            point[step] = known[step] + uncertain
            for name in LEVELS:
                bound = (uncertain + c) * np.exp(errors.get(name, 0.0)) - c
                bounds[name][step] = known[step] + max(bound, 0.0)
        rows["forecast"] = to_cents(point) / 100.0
        for name in LEVELS:
            rows[name] = to_cents(bounds[name]) / 100.0
        frame = pd.DataFrame(rows)
        frame["lower_80"] = np.minimum(frame["lower_80"], frame["forecast"])
        frame["lower_95"] = np.minimum(frame["lower_95"], frame["lower_80"])
        frame["upper_80"] = np.maximum(frame["upper_80"], frame["forecast"])
        frame["upper_95"] = np.maximum(frame["upper_95"], frame["upper_80"])
        frame["known"] = known
        return frame

    # --- persistence ----------------------------------------------------------------------

    def save(self, path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        doc = {
            "format": FORECAST_FORMAT,
            "freqs": {f: m.to_doc() for f, m in self.freqs.items()},
            "list_prices": self.list_prices,
            "fallback_amount": self.fallback_amount,
            "metadata": self.metadata,
        }
        (path / FORECAST_JSON).write_text(dumps_exact(doc, default=str), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> ForecastBundle:
        doc = read_document(
            path, FORECAST_JSON, FORECAST_READS, "forecast bundle", ForecastBundleError
        )
        return cls(
            freqs={f: FreqModel.from_doc(m) for f, m in doc["freqs"].items()},
            list_prices={k: float(v) for k, v in doc["list_prices"].items()},
            fallback_amount=float(doc["fallback_amount"]),
            metadata=dict(doc["metadata"]),
        )


def widened(table: list[dict[str, float]], step: int) -> dict[str, float]:
    """The log-error bounds of ``step``: the table's row, and past the backtested horizon the
    bounds of a noise + drift error, ``q(k)² = a + b·k`` for step ``k`` (1-based), with
    ``a, b ≥ 0`` fitted to the table's rows by least squares.

    A period's error is its own noise (which does not grow with the steps ahead) plus the
    level's drift (which grows like a random walk's). Growing the whole width as
    √(steps ahead / steps backtested), as if it were all drift, made the 80 % bounds of a
    year ahead cover 92–98 % on weeks and months whose near-step errors are mostly noise.
    The extrapolation is never narrower than the last backtested row, nor wider than √
    growth."""
    if not table:
        return dict.fromkeys(LEVELS, 0.0)
    row = table[min(step, len(table) - 1)]
    if step < len(table):
        return row
    n = len(table)
    out = {}
    for name, value in row.items():
        squares = np.array([float(r.get(name, 0.0)) ** 2 for r in table])
        a, b = noise_and_drift(squares)
        grown = math.sqrt(max(a + b * (step + 1), 0.0))
        grown = min(max(grown, abs(value)), abs(value) * math.sqrt((step + 1) / n))
        out[name] = math.copysign(grown, value)
    return out


def reconcile_rest(total: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """``reconcile`` applied to what is not yet won: per period, each segment keeps its
    ``known`` revenue and the segments' forecasts of the rest add up to the total's rest, so
    they still add up to the total to the cent and none ends below what it has won."""
    known = to_cents(segments["known"].to_numpy(dtype=float))
    won = pd.Series(known, index=segments.index).groupby(segments["period_start"]).sum()
    total_c = to_cents(total["forecast"].to_numpy(dtype=float))
    won_c = total["period_start"].map(won).fillna(0).to_numpy(dtype=np.int64)
    rest_total = total.assign(forecast=np.maximum(total_c - won_c, 0) / 100.0)
    rest = segments.copy()
    for column in ("forecast", *BOUNDS):
        rest[column] = np.maximum(segments[column].to_numpy(dtype=float) - known / 100.0, 0.0)
    out = reconcile(rest_total, rest)
    for column in ("forecast", *BOUNDS):
        out[column] = (to_cents(out[column].to_numpy(dtype=float)) + known) / 100.0
    return out


def series_values(model: SeriesModel, periods: pd.DatetimeIndex) -> np.ndarray:
    """The series model's point forecast for ``periods`` (which follow its last period).

    Periods before the model's first forecast period (as_of long after training) are read
    from the nearest forecast; that only happens when serving a stale bundle."""
    if len(periods) == 0:
        return np.zeros(0)
    first_future = model.future_periods(1)[0]
    h = max(1, periods_ahead(first_future, periods[-1], model.freq) + 1)
    result = model.predict(h)
    values = pd.Series(result.forecast, index=result.period_start)
    return np.maximum(values.reindex(periods).bfill().ffill().fillna(0.0).to_numpy(), 0.0)

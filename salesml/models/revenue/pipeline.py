"""The pipeline component of the revenue forecast: what today's open deals will bring in.

For each open deal and forecast period, the probability that the deal closes *won* inside the
period is its win probability × the timing model's probability of closing in that window given
a win. The expectation is the sum over deals of that probability × amount (the product's list
price where an open deal has no amount, else the median won amount). Its distribution comes from
simulating every deal's fate (won in period 1 … H, or not in the horizon) ``draws`` times.

Deals not yet created are not in the pipeline: the time-series component carries them, and the
blend learns on backtests how much of each to trust at each horizon.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from salesml.models.timing.bundle import TimingBundle

QUANTILES = (0.025, 0.1, 0.9, 0.975)
DIMENSIONS = ("team", "region", "product")
# Where a deal's segment is read from in a feature frame (build_features output).
SEGMENT_COLUMNS: Mapping[str, str] = {"team": "team", "region": "region", "product": "product"}
NONE_SEGMENT = "(none)"


@dataclass(frozen=True)
class PipelineForecast:
    """Expected won revenue from open deals per (dimension, segment, period), with quantiles.

    ``frame`` columns: dimension ("total", "team", …), segment, period_start, expected, and one
    column per quantile (``q0.025`` …).
    """

    frame: pd.DataFrame

    def lookup(self, dimension: str, segment: str) -> pd.DataFrame:
        mask = (self.frame["dimension"] == dimension) & (self.frame["segment"] == segment)
        return self.frame[mask].sort_values("period_start")


def period_probabilities(
    timing: TimingBundle,
    features: pd.DataFrame,
    as_of: pd.Timestamp,
    starts: pd.DatetimeIndex,
    ends: pd.DatetimeIndex,
    win_probability: np.ndarray | None = None,
    hazards: np.ndarray | None = None,
) -> np.ndarray:
    """(deals, periods): probability of closing won inside each [start, end) period.

    Without ``win_probability`` the timing model's own won mass is used (backtests, where no win
    model was trained at the origin). ``hazards`` (``timing.hazards(features, as_of)``) may be
    passed in when several period grids are scored at the same as_of."""
    if hazards is None:
        hazards = timing.hazards(features, as_of)
    p = timing.won_mass(hazards) if win_probability is None else np.asarray(win_probability)
    day = pd.Timedelta(days=1)
    lo = np.maximum(np.asarray((starts - as_of) / day, dtype=float), 0.0)
    hi = np.maximum(np.asarray((ends - as_of) / day, dtype=float), 0.0)
    return np.asarray(p[:, None] * timing.won_between(hazards, lo, hi, pd.Timestamp(as_of)))


def deal_amounts(
    features: pd.DataFrame, list_prices: Mapping[str, float], fallback: float
) -> np.ndarray:
    """Amount at as_of; else the product's list price; else ``fallback`` (median won amount)."""
    if "amount" in features:
        amount = pd.to_numeric(features["amount"], errors="coerce").astype("float64")
    else:
        amount = pd.Series(np.nan, index=features.index)
    product = features["product"].astype("object") if "product" in features else None
    if product is not None:
        price = product.map(lambda p: list_prices.get(str(p), np.nan) if pd.notna(p) else np.nan)
        amount = amount.fillna(pd.to_numeric(price, errors="coerce"))
    return np.asarray(amount.fillna(fallback).clip(lower=0).to_numpy(dtype=float))


def segment_labels(features: pd.DataFrame, dimension: str) -> np.ndarray:
    column = SEGMENT_COLUMNS[dimension]
    if column not in features:
        return np.full(len(features), NONE_SEGMENT, dtype=object)
    values = features[column].astype("object")
    return np.asarray(values.where(values.notna(), NONE_SEGMENT).astype(str), dtype=object)


def simulate(
    probabilities: np.ndarray,
    amounts: np.ndarray,
    segments: Mapping[str, np.ndarray],
    periods: pd.DatetimeIndex,
    draws: int = 1000,
    seed: int = 0,
    chunk: int = 4000,
) -> PipelineForecast:
    """Expected revenue and simulated quantiles per (dimension, segment, period).

    Each deal closes won in at most one period: in draw ``s`` it lands in period ``k`` with
    probability ``probabilities[i, k]`` (independently of other deals). ``draws=0`` skips the
    simulation (quantile columns NaN): backtests only need the expectation.
    """
    n, h = probabilities.shape
    if draws <= 0:
        return _expected_only(probabilities, amounts, segments, periods)
    rng = np.random.default_rng(seed)
    cum = np.cumsum(np.clip(probabilities, 0.0, 1.0), axis=1)
    cum = np.minimum(cum, 1.0)
    groups = {"total": np.zeros(n, dtype=np.int64)}
    names: dict[str, list[str]] = {"total": ["total"]}
    for dim, labels in segments.items():
        uniq, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        groups[dim], names[dim] = codes.astype(np.int64), [str(u) for u in uniq]
    sums = {dim: np.zeros((len(names[dim]), h + 1, draws)) for dim in groups}
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        u = rng.random((hi - lo, draws))
        landed = (u[:, :, None] >= cum[lo:hi, None, :]).sum(axis=2)  # h = "not in horizon"
        weight = np.repeat(amounts[lo:hi], draws)
        draw_index = np.tile(np.arange(draws), hi - lo)
        flat_landed = landed.ravel()
        for dim, codes in groups.items():
            seg = np.repeat(codes[lo:hi], draws)
            key = (seg * (h + 1) + flat_landed) * draws + draw_index
            sums[dim] += np.bincount(key, weights=weight, minlength=sums[dim].size).reshape(
                sums[dim].shape
            )
    rows = []
    for dim, codes in groups.items():
        expected = np.zeros((len(names[dim]), h))
        np.add.at(expected, codes, probabilities * amounts[:, None])
        q = np.quantile(sums[dim][:, :h, :], QUANTILES, axis=2)  # (quantiles, segments, h)
        for s, name in enumerate(names[dim]):
            for k in range(h):
                row = {
                    "dimension": dim,
                    "segment": name,
                    "period_start": periods[k],
                    "expected": float(expected[s, k]),
                }
                row |= {f"q{level}": float(q[j, s, k]) for j, level in enumerate(QUANTILES)}
                rows.append(row)
    columns = ["dimension", "segment", "period_start", "expected"] + [f"q{x}" for x in QUANTILES]
    return PipelineForecast(pd.DataFrame(rows, columns=columns))


def _expected_only(
    probabilities: np.ndarray,
    amounts: np.ndarray,
    segments: Mapping[str, np.ndarray],
    periods: pd.DatetimeIndex,
) -> PipelineForecast:
    h = probabilities.shape[1]
    frames = []
    labelled = {"total": np.full(len(amounts), "total", dtype=object), **segments}
    for dim, labels in labelled.items():
        uniq, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
        expected = np.zeros((len(uniq), h))
        np.add.at(expected, codes, probabilities * amounts[:, None])
        frames.append(
            pd.DataFrame(
                {
                    "dimension": dim,
                    "segment": np.repeat(uniq.astype(object), h),
                    "period_start": np.tile(np.asarray(periods), len(uniq)),
                    "expected": expected.reshape(-1),
                }
            )
        )
    columns = ["dimension", "segment", "period_start", "expected"] + [f"q{x}" for x in QUANTILES]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return PipelineForecast(frame.reindex(columns=columns))


def pipeline_forecast(
    timing: TimingBundle | None,
    features: pd.DataFrame,
    as_of: pd.Timestamp,
    starts: pd.DatetimeIndex,
    ends: pd.DatetimeIndex,
    list_prices: Mapping[str, float],
    fallback_amount: float,
    win_probability: np.ndarray | None = None,
    draws: int = 1000,
    seed: int = 0,
    hazards: np.ndarray | None = None,
) -> PipelineForecast:
    """The whole component: probabilities, amounts, segments, simulation (zeros without a
    timing model or without open deals — a won-only order history has no pipeline)."""
    if timing is None or features.empty:
        probabilities = np.zeros((len(features), len(starts)))
    else:
        probabilities = period_probabilities(
            timing, features, as_of, starts, ends, win_probability, hazards
        )
    amounts = deal_amounts(features, list_prices, fallback_amount)
    segments = {dim: segment_labels(features, dim) for dim in DIMENSIONS}
    return simulate(probabilities, amounts, segments, starts, draws=draws, seed=seed)

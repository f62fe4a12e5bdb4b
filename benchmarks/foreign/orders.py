"""A won-only order history that salesml.synth did not make: a shop's orders as won deals.

Written separately from ``salesml.synth`` with other functional forms, so the revenue forecast
is judged on a history whose shape nobody here tuned it to:

- **growth**: linear in time (not compounding), ``level · (1 + g · years)``;
- **yearly season**: a smooth cosine swing (peak on a random day of the year) plus a
  Gaussian holiday bump in late November / December — no quarter-end or month-end pushes;
- **week**: fixed weekday multipliers (weekends quieter), nothing like a B2B calendar;
- **orders**: a negative-binomial count per day (gamma-mixed Poisson, extra day-to-day
  noise), order values gamma-distributed around a per-category mean.

Every order is a won deal created and closed on the same day (an order export has no
pipeline). ``write_orders`` writes a canonical ``deals.csv`` that the product imports through
its normal path (``salesml import DIR --format canonical``). ``SEEDS`` were fixed before any
result was seen; each seed draws its own growth, amplitude, peak and size.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

SEEDS = (101, 202, 303)  # fixed up front (issue 17); not chosen on results
CATEGORIES = (("Home", 38.0), ("Garden", 72.0), ("Kitchen", 24.0))
REGIONS = ("North", "South")
WEEKDAY = (1.05, 1.0, 1.0, 1.05, 1.15, 0.8, 0.65)  # Monday … Sunday


@dataclass(frozen=True)
class OrderShape:
    """The parameters one seed draws (printed with the benchmark for the record)."""

    orders_per_day: float
    growth_per_year: float
    amplitude: float
    peak_day: int
    holiday_lift: float
    dispersion: float


def draw_shape(rng: np.random.Generator) -> OrderShape:
    return OrderShape(
        orders_per_day=float(rng.uniform(20, 45)),
        growth_per_year=float(rng.uniform(0.05, 0.45)),
        amplitude=float(rng.uniform(0.1, 0.35)),
        peak_day=int(rng.integers(0, 365)),
        holiday_lift=float(rng.uniform(0.2, 0.8)),
        dispersion=float(rng.uniform(4.0, 12.0)),
    )


def daily_intensity(days: pd.DatetimeIndex, shape: OrderShape) -> np.ndarray:
    """Expected orders per day: growth × yearly swing × holiday bump × weekday."""
    years = np.asarray((days - days[0]) / pd.Timedelta(days=365.25), dtype=float)
    doy = days.dayofyear.to_numpy(dtype=float)
    swing = 1.0 + shape.amplitude * np.cos(2 * np.pi * (doy - shape.peak_day) / 365.25)
    holiday = 1.0 + shape.holiday_lift * np.exp(-0.5 * ((doy - 340.0) / 12.0) ** 2)
    week = np.asarray(WEEKDAY)[days.dayofweek.to_numpy()]
    growth = 1.0 + shape.growth_per_year * years
    return shape.orders_per_day * growth * swing * holiday * week


def make_orders(
    seed: int, start: date, end: date, scale: float = 1.0
) -> tuple[pd.DataFrame, OrderShape]:
    """The canonical deals table of every order in [start, end), and the seed's shape
    (``scale`` multiplies the orders per day: small histories for tests)."""
    rng = np.random.default_rng(seed)
    shape = draw_shape(rng)
    shape = replace(shape, orders_per_day=shape.orders_per_day * scale)
    days = pd.date_range(start, end, freq="D", inclusive="left")
    mean = daily_intensity(days, shape)
    counts = rng.poisson(rng.gamma(shape.dispersion, mean / shape.dispersion))
    day = np.repeat(days.to_numpy(), counts)
    n = len(day)
    seconds = rng.integers(8 * 3600, 22 * 3600, n)
    stamp = pd.to_datetime(day) + pd.to_timedelta(seconds, unit="s")
    category = rng.choice(len(CATEGORIES), n, p=[0.5, 0.2, 0.3])
    price = np.asarray([c[1] for c in CATEGORIES])[category]
    amount = np.round(rng.gamma(2.0, price / 2.0), 2) + 1.0
    iso = stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    deals = pd.DataFrame(
        {
            "deal_id": [f"O{seed}-{i:07d}" for i in range(n)],
            "created_at": iso,
            "status": "won",
            "closed_at": iso,
            "amount": amount,
            "currency": "USD",
            "owner_id": "shop",
            "stage": "Closed Won",
            "product": np.asarray([c[0] for c in CATEGORIES])[category],
            "team": "Online",
            "region": np.asarray(REGIONS)[rng.integers(0, len(REGIONS), n)],
        }
    )
    return deals, shape


def write_orders(
    out_dir: Path, seed: int, start: date, end: date, scale: float = 1.0
) -> OrderShape:
    """Write ``out_dir/deals.csv`` (canonical format) for ``seed``; return its shape."""
    out_dir.mkdir(parents=True, exist_ok=True)
    deals, shape = make_orders(seed, start, end, scale)
    deals.to_csv(out_dir / "deals.csv", index=False)
    return shape

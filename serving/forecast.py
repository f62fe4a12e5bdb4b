"""Revenue forecast rows at a date: the registered forecast bundle plus today's pipeline.

The bundle (``salesml.models.revenue.bundle``) holds the per-segment series models and the
blend; this module adds what only the warehouse knows at ``as_of``: the deals open then, scored
by the win
model with its timing model (the pipeline component), and the revenue already won in the
current period.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pandas as pd

from features.build import build_features
from features.history import History
from salesml.models.registry import (
    FORECAST_MODEL_NAME,
    LoadedForecast,
    NoModelError,
    load_forecast_bundle,
    registered_version,
    tracking_uri,
)
from salesml.models.revenue.bundle import ForecastBundle, key
from salesml.models.revenue.coherence import (
    COHERENT_QUARTERS,
    months_needed,
    quarters_from_months,
)
from salesml.models.revenue.periods import period_range, period_start
from salesml.models.revenue.pipeline import DIMENSIONS, pipeline_forecast
from salesml.models.timing.bundle import TimingBundle
from salesml.scoring import Scorer


def won_so_far(history: History, freq: str, as_of: pd.Timestamp) -> dict[str, float]:
    """Revenue won in the period holding ``as_of``, up to and including ``as_of`` (a deal
    closed at as_of is no longer open, so it counts as won), per segment key."""
    deals = history.deals
    start = period_start(as_of, freq)
    won = deals[
        (deals["status"] == "won") & (deals["closed_at"] >= start) & (deals["closed_at"] <= as_of)
    ]
    amount = pd.to_numeric(won["amount"], errors="coerce").fillna(0.0)
    out = {key("total", "total"): float(amount.sum())}
    for dim in DIMENSIONS:
        if dim not in won:
            continue
        labels = won[dim].astype("object").where(won[dim].notna(), "(none)").astype(str)
        for segment, value in amount.groupby(labels.to_numpy()).sum().items():
            out[key(dim, str(segment))] = float(value)
    return out


def forecast_rows(
    history: History,
    win: Scorer | None,
    bundle: ForecastBundle,
    freq: str,
    horizon: int,
    as_of: pd.Timestamp,
    by: str | None = None,
    draws: int = 1000,
) -> pd.DataFrame:
    """Rows of period_start, segment, forecast, lower/upper 80 and 95 (see ``ForecastBundle``).

    Without a win model (a won-only history) the pipeline component is empty and the series
    models carry the forecast alone. Quarters agree with months: when the bundle has both, the
    current and next quarter are the sums of their months
    (``salesml.models.revenue.coherence``), so a quarter is never below a month inside it."""
    bundle.model(freq)  # a clear error for a frequency the bundle lacks, before any work
    scored = _scored_pipeline(history, win, as_of)
    won = won_so_far(history, freq, as_of)
    rows = _rows(bundle, scored, freq, horizon, as_of, by, draws, won)
    if freq != "quarter" or "month" not in bundle.freqs:
        return rows
    steps = min(horizon, COHERENT_QUARTERS)
    n_months = months_needed(as_of, steps)
    quarter_won, month_won = won, won_so_far(history, "month", as_of)
    months = _rows(bundle, scored, "month", n_months, as_of, by, draws, month_won)
    parts = []
    for level, (q_rows, m_rows) in enumerate(
        [
            (rows.iloc[:horizon], months.iloc[:n_months]),
            (rows.iloc[horizon:], months.iloc[n_months:]),
        ]
    ):
        for segment, q_seg in q_rows.groupby("segment", sort=False):
            name = key("total", "total") if level == 0 else key(str(by), str(segment))
            parts.append(
                quarters_from_months(
                    q_seg,
                    m_rows[m_rows["segment"] == segment],
                    quarter_won.get(name, 0.0),
                    month_won.get(name, 0.0),
                    as_of,
                    steps,
                )
            )
    return pd.concat(parts, ignore_index=True)[list(rows.columns)]


Scored = tuple[TimingBundle | None, pd.DataFrame, np.ndarray | None, np.ndarray | None]


def _scored_pipeline(history: History, win: Scorer | None, as_of: pd.Timestamp) -> Scored:
    """The open deals at as_of, their win probabilities and timing hazards (computed once for
    every period grid asked at that as_of)."""
    timing = win.timing if win is not None else None
    if win is None or timing is None:
        return None, pd.DataFrame(), None, None
    features = build_features(history, as_of)
    probability = win.bundle.predict(features)["win_probability"].to_numpy()
    hazards = timing.hazards(features, as_of) if not features.empty else None
    return timing, features, probability, hazards


def _rows(
    bundle: ForecastBundle,
    scored: Scored,
    freq: str,
    horizon: int,
    as_of: pd.Timestamp,
    by: str | None,
    draws: int,
    won: dict[str, float],
) -> pd.DataFrame:
    """``ForecastBundle.forecast`` of one period length, with its pipeline component (``won``:
    ``won_so_far`` of that period length)."""
    timing, features, probability, hazards = scored
    periods = period_range(as_of, horizon + 1, freq)
    pipeline = pipeline_forecast(
        timing,
        features,
        as_of,
        periods[:-1],
        periods[1:],
        bundle.list_prices,
        bundle.fallback_amount,
        win_probability=probability,
        draws=draws,
        hazards=hazards,
    )
    return bundle.forecast(freq, horizon, as_of, pipeline, won, by)


_CACHE: dict[tuple[str, str], tuple[float, LoadedForecast]] = {}
_CACHE_LOCK = threading.Lock()
RELOAD_SECONDS = 60.0


def current_forecast(alias: str = "champion") -> LoadedForecast:
    """The forecast bundle behind ``alias``, reloaded when the alias moves (checked at most
    once a minute); the bundle in hand is kept when the registry cannot be reached."""
    now = time.monotonic()
    cache_key = (tracking_uri(), alias)
    with _CACHE_LOCK:
        hit = _CACHE.get(cache_key)
        if hit is not None and now - hit[0] < RELOAD_SECONDS:
            return hit[1]
    try:
        version = registered_version(FORECAST_MODEL_NAME, alias)
        if hit is not None and hit[1].version == version:
            loaded = hit[1]
        else:
            loaded = load_forecast_bundle(alias)
    except NoModelError:
        raise
    except Exception:
        if hit is None:
            raise
        loaded = hit[1]  # registry unreachable: keep serving what we have
    with _CACHE_LOCK:
        _CACHE[cache_key] = (now, loaded)
    return loaded


def forecast_for_api(
    history: History,
    win: Scorer | None,
    freq: str,
    horizon: int,
    as_of: pd.Timestamp,
    by: str | None = None,
    team: str | None = None,
    alias: str = "champion",
) -> pd.DataFrame:
    """``forecast_rows`` for the API, from the forecast bundle behind ``alias`` (the API's
    serving alias). A team-scoped caller gets its own team's rows only, with a ``team`` column
    (forecast by team, the segment that is theirs)."""
    loaded = current_forecast(alias)
    if team is not None:
        rows = forecast_rows(history, win, loaded.bundle, freq, horizon, as_of, by="team")
        rows = rows[rows["segment"] == team].copy()
        rows["team"] = team
        return rows
    return forecast_rows(history, win, loaded.bundle, freq, horizon, as_of, by=by)

"""The newest creation cohort's level, read from what is already observable about it.

A calibrator fitted at the as-of learns its level from deals whose outcome is known: the
newest of them were created a maturity or more before the as-of. Where the win rate drifts,
the deals created since then (and the ones scored next) sit at another level, and most of them
are still open at the as-of: censored, not missing. Their early closes still tell something:
how many have closed by their age, and how many of those were won, against how fast won and
lost deals close (won ones usually take longer).

The estimate is a cure-model likelihood over the newest cohort, with the cycle law of older,
matured cohorts (``CycleLaw``): a deal with calibrated logit ``z`` wins with
``p = expit(z + shift)``; at the as-of it is

- won (closed by then): ``p``;
- lost: ``1 - p``;
- open at age ``a``: ``p * S_won(a) + (1 - p) * S_lost(a)``, ``S`` the share of won / lost
  deals of the older cohorts still open at that age.

``fit_shift`` maximises it over the one ``shift`` (the calibrator's intercept moved to the
cohort's level), with its standard error from the curvature. ``censored_log_loss`` is the
same likelihood per deal, used to judge candidates on deals whose outcome is partly unknown
without dropping the open ones (dropping them keeps the quick closers, mostly lost).

Only information visible at the as-of enters: the states are read at the as-of
(``states_at``), the cycle law from deals created at least ``horizon`` days before it and
closed by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit

# The cycle law is read from deals created between ``horizon`` and ``horizon + REFERENCE_DAYS``
# days before the as-of (most of them closed by then: ``horizon`` is twice the maturity).
REFERENCE_DAYS = 365
# Fewer reference deals of either outcome than this and there is no cycle law to lean on.
MIN_REFERENCE = 50
# The shift is searched within this many log-odds of the calibrator's level.
MAX_SHIFT = 3.0
WON, LOST, OPEN = 1, 0, -1


@dataclass(frozen=True)
class CycleLaw:
    """Days from creation to close of the won and of the lost deals of older cohorts."""

    won: np.ndarray  # sorted
    lost: np.ndarray  # sorted

    @classmethod
    def at(cls, deals: pd.DataFrame, as_of: pd.Timestamp, horizon_days: float) -> CycleLaw | None:
        """The law visible at ``as_of``: deals created between ``horizon_days`` and
        ``horizon_days + REFERENCE_DAYS`` before it and closed by it. None when either outcome
        has fewer than ``MIN_REFERENCE`` deals."""
        end = as_of - pd.Timedelta(days=horizon_days)
        start = end - pd.Timedelta(days=REFERENCE_DAYS)
        ref = deals[
            (deals["created_at"] >= start)
            & (deals["created_at"] <= end)
            & (deals["closed_at"] <= as_of)
        ]
        cycle = (ref["closed_at"] - ref["created_at"]).dt.total_seconds().to_numpy() / 86400
        won = np.sort(cycle[(ref["status"] == "won").to_numpy()])
        lost = np.sort(cycle[(ref["status"] == "lost").to_numpy()])
        if min(len(won), len(lost)) < MIN_REFERENCE:
            return None
        return cls(won, lost)

    def survival(self, age_days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Shares of won and of lost deals still open at ``age_days``."""
        age = np.asarray(age_days, dtype=float)
        s_won = 1.0 - np.searchsorted(self.won, age, side="right") / len(self.won)
        s_lost = 1.0 - np.searchsorted(self.lost, age, side="right") / len(self.lost)
        return s_won, s_lost


@dataclass(frozen=True)
class States:
    """Each deal's state at an as-of: ``WON``, ``LOST`` or ``OPEN`` at ``age_days``."""

    state: np.ndarray
    age_days: np.ndarray

    def __len__(self) -> int:
        return len(self.state)


def states_at(deals: pd.DataFrame, as_of: pd.Timestamp) -> States:
    """``deals`` (created by ``as_of``) as known at ``as_of``: closes after it are undone."""
    closed = (deals["closed_at"] <= as_of).to_numpy()
    won = (deals["status"] == "won").to_numpy()
    state = np.where(closed, np.where(won, WON, LOST), OPEN)
    age = (as_of - deals["created_at"]).dt.total_seconds().to_numpy() / 86400
    return States(state.astype(int), np.asarray(age, dtype=float))


def censored_log_loss(p: np.ndarray, states: States, law: CycleLaw) -> np.ndarray:
    """Per deal: minus the log likelihood of its state under win probability ``p``."""
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    s_won, s_lost = law.survival(states.age_days)
    still_open = np.maximum(p * s_won + (1 - p) * s_lost, 1e-12)
    like = np.where(states.state == WON, p, np.where(states.state == LOST, 1 - p, still_open))
    return np.asarray(-np.log(like), dtype=float)


@dataclass(frozen=True)
class Shift:
    """The cohort's level relative to a calibrator: add ``shift`` to its logits."""

    shift: float
    se: float | None
    deals: int
    closed: int


def fit_shift(z: np.ndarray, states: States, law: CycleLaw) -> Shift | None:
    """The shift of the calibrated logits ``z`` that best explains the cohort's states (module
    docstring). None when none of the cohort's deals has closed (nothing to read)."""
    z = np.asarray(z, dtype=float)
    closed = int((states.state != OPEN).sum())
    if closed == 0 or len(z) == 0:
        return None

    def loss(shift: float) -> float:
        return float(censored_log_loss(expit(z + shift), states, law).sum())

    best = minimize_scalar(loss, bounds=(-MAX_SHIFT, MAX_SHIFT), method="bounded")
    shift = float(best.x)
    h = 1e-3
    curvature = (loss(shift + h) - 2 * loss(shift) + loss(shift - h)) / h**2
    se = float(1 / np.sqrt(curvature)) if curvature > 0 else None
    return Shift(shift, se, len(z), closed)

"""The observable oracle of the foreign-data benchmark: salesml/synth's true probability with
the latent engagement inferred from what the data shows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.foreign.flat import NOISE_ATTRIBUTES
from benchmarks.foreign_win import flat_case, observable_oracle
from salesml.synth import effects


def _latent(rest: float, n: int = 1) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "deal_id": [f"D{i}" for i in range(n)],
            "win_logit": [rest + effects.ENGAGEMENT_COEF * 1.5] * n,  # engagement z = 1.5
            "engagement_z": [1.5] * n,
            "exit_stage": ["Qualification"] * n,
            "eventual_status": ["lost"] * n,
            "cycle_median_days": [40.0 * effects.CYCLE_LOST_EXIT_FACTOR[0]] * n,
        }
    )


def test_at_creation_the_engagement_is_integrated_out() -> None:
    """Nothing seen yet (age 0, no activity): the latent's prior, not its drawn value."""
    rest = -0.5
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    expected = float(
        np.sum(weights / (1 + np.exp(-(rest + effects.ENGAGEMENT_COEF * nodes)))) / np.sum(weights)
    )
    p = observable_oracle(_latent(rest), np.array(["D0"]), np.zeros(1), np.zeros(1), draws=40_000)
    assert p[0] == pytest.approx(expected, abs=0.01)
    truth = 1 / (1 + np.exp(-(rest + effects.ENGAGEMENT_COEF * 1.5)))
    assert abs(p[0] - truth) > 0.2  # the true probability knows the latent; the data does not


def test_a_busy_first_week_lowers_the_observable_chance() -> None:
    """salesml/synth front-loads a lost deal's activities (density 2(1 - s) over its life) and
    spreads a won deal's towards signature: many activities in the first week are more likely
    a short lost deal than a highly engaged one. The true probability does not move (it knew
    the engagement all along); what the data shows does."""
    latent = _latent(-0.5, 2)
    ids = latent["deal_id"].to_numpy()
    p = observable_oracle(latent, ids, np.full(2, 7.0), np.array([0, 4]))
    assert p[1] < p[0] - 0.1


def test_a_flat_case_names_its_noise_and_has_no_latent(tmp_path: Path) -> None:
    """The flat generator has no latent the data hides: its oracle is its truth."""
    case = flat_case(tmp_path, 101, 300)
    assert case.noise == NOISE_ATTRIBUTES
    assert case.latent is None
    assert case.truth is not None and len(case.truth) == 300

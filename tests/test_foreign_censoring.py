"""The foreign benchmark's censoring-weighted ECE (``benchmarks.foreign_win``): scored deals
are those closed by the export, so their outcomes lean to the quick closers (mostly lost);
the weights undo that."""

from __future__ import annotations

import numpy as np
import pandas as pd

from benchmarks.foreign_win import censoring_weights, weighted_ece
from salesml.models.evaluation import expected_calibration_error


def _deals(seed: int) -> tuple[pd.DataFrame, pd.Timestamp, pd.Timestamp]:
    rng = np.random.default_rng(seed)
    n = 40_000
    start = pd.Timestamp("2024-01-01")
    created = start + pd.to_timedelta(np.sort(rng.uniform(0, 900, n)), unit="D")
    won = rng.random(n) < 0.5
    cycle = rng.lognormal(np.log(40), 0.5, n) * np.where(won, 1.6, 0.7)
    export = start + pd.Timedelta(days=900)
    closed_at = created + pd.to_timedelta(cycle, unit="D")
    deals = pd.DataFrame(
        {"created_at": created, "closed_at": closed_at, "status": np.where(won, "won", "lost")}
    )
    closed = deals[deals["closed_at"] <= export].sort_values("created_at", kind="stable")
    return closed, start + pd.Timedelta(days=700), export


def test_weights_undo_the_lean_to_quick_losses() -> None:
    closed, cut, export = _deals(1)
    newest = closed[closed["created_at"] >= cut]
    y = (newest["status"] == "won").to_numpy(dtype=float)
    w, keep = censoring_weights(closed, cut, newest, export)
    assert 0 < keep.sum() < len(newest) and w[keep].max() <= 1 / 0.8 + 1e-9
    assert y.mean() < 0.47  # closed by the export: quick (lost) deals over-represented
    assert abs(np.average(y[keep], weights=w[keep]) - 0.5) < 0.02
    truth = np.full(len(newest), 0.5)
    assert expected_calibration_error(y, truth) > 0.03
    assert weighted_ece(y[keep], truth[keep], w[keep]) < 0.02

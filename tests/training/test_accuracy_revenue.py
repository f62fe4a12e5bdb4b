"""Issue 4's revenue-forecast targets, on every seed of the 20,000-deal table in
docs/forecast.md (11, 5, 23, 37): the blend's company-total WAPE at most 0.8 × seasonal naive's
and below default Prophet's, per week and per month, with 80 % intervals covering 72–88 % of
the backtest points (company total, and every series).

About a minute per seed on one core; the timing targets are in test_accuracy_timing.py, a file
of their own so that ``--dist loadfile`` runs the two on both workers at once."""

from __future__ import annotations

import pytest

from tests.reference.accuracy import SEEDS, documented_study, revenue_metrics


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_revenue_blend_beats_seasonal_naive_and_default_prophet_with_intervals_that_hold(
    tmp_path_factory: pytest.TempPathFactory, seed: int
) -> None:
    study = documented_study(tmp_path_factory, seed)
    for freq, m in revenue_metrics(study.history, study.snapshots).items():
        blend = m["blend"]["wape_total"]
        naive = m["seasonal_naive"]["wape_total"]
        prophet = m["prophet_default"]["wape_total"]
        assert blend is not None and naive is not None and prophet is not None
        assert blend <= 0.8 * naive, (freq, blend, naive)
        assert blend < prophet, (freq, blend, prophet)
        for name in ("coverage_80_total", "coverage_80_all"):
            coverage = m["blend"][name]
            assert coverage is not None and 0.72 <= coverage <= 0.88, (freq, name, coverage)

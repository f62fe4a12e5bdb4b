"""Issue 4's accuracy targets, as docs/forecast.md and docs/timing.md claim them at 20,000
deals on every seed of their tables (11, 5, 23, 37).

``test_seed_<n>.py`` checks both on seed n: one file per seed, because ``--dist loadfile``
sends a whole file to one worker and each seed costs about a minute per model on one core, so
the four seeds spread over both workers."""

from __future__ import annotations

from collections.abc import Callable

from tests.reference.accuracy import Study, revenue_metrics, timing_study


def revenue_targets_hold(study: Study) -> None:
    """The blend's company-total WAPE at most 0.8 × seasonal naive's and below default
    Prophet's, per week and per month, with 80 % intervals covering 72–88 % of the backtest
    points (company total, and every series)."""
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


def timing_targets_hold(study: Study) -> None:
    """The 80 % days-to-close interval covers 77–83 % of the generator's true close dates, and
    on long-cycle deals (what ``salesml train`` reports, and the deals the generator planted a
    long cycle on) the mean error of the median is at least 30 % smaller than that of a model
    trained on closed deals only."""
    result = timing_study(study.history, study.snapshots, study.truth, short=False)
    assert abs(result.coverage - 0.8) <= 0.03, result.coverage
    for name, (ours, closed_only) in (("holdout", result.holdout), ("planted", result.planted)):
        assert closed_only < 0, (name, closed_only)  # closed-only training is biased short
        assert abs(ours) <= 0.7 * abs(closed_only), (name, ours, closed_only)


TARGETS: dict[str, Callable[[Study], None]] = {
    "revenue": revenue_targets_hold,
    "timing": timing_targets_hold,
}

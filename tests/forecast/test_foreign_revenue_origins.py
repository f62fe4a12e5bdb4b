"""The foreign revenue benchmark over several cut-offs (``--origins``): every method's WAPE and
salesml's 80 % coverage pooled over all origins' periods with one rule, the bar's own figures
still the first cut-off's."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.foreign_revenue import Judged, Row, pooled_scores, table


def _judged(actual: list[float], forecast: list[float], inside: list[bool]) -> Judged:
    a, f = np.array(actual), np.array(forecast)
    width = np.where(inside, np.abs(a - f) + 1.0, np.abs(a - f) / 2)
    return Judged(
        a,
        f,
        f - width,
        f + width,
        {"seasonal_naive": a * 1.2, "prophet_default": a * 0.9, "auto_ets": a * 1.5},
        "ensemble",
        None,
    )


def test_pooled_scores_count_every_period_of_every_origin_once() -> None:
    first = _judged([100, 100, 100, 100], [110, 90, 120, 80], [True, True, False, False])
    second = _judged([200, 200], [200, 260], [True, True])
    pooled = pooled_scores([first, second])
    assert pooled["periods"] == 6
    assert pooled["coverage_80"] == pytest.approx(4 / 6)  # not the mean of 0.5 and 1.0
    assert pooled["salesml"] == pytest.approx((10 + 10 + 20 + 20 + 60) / 800)
    assert pooled["prophet_default"] == pytest.approx(0.1)  # the best peer, pooled alike
    assert pooled["ratio"] == pytest.approx(pooled["salesml"] / 0.1)


def test_the_table_shows_pooled_columns_only_with_several_origins() -> None:
    one = Row("orders-1", "month", 12, 0.1, "ensemble", 0.2, 0.12, 0.3, 0.1 / 0.12, 0.8)
    assert "pooled" not in table([one])
    pooled = pooled_scores([_judged([100, 100], [100, 110], [True, False])] * 3)
    many = Row("orders-1", "month", 12, 0.1, "ensemble", 0.2, 0.12, 0.3, 0.83, 0.8, None, 3, pooled)
    text = table([one, many])
    assert "pooled cov80" in text
    assert "| 3 | 0.50 | 0.50 (6) |" in text  # WAPE 0.05 ÷ 0.10; 3 of 6 inside
    assert "| 1 | — | — |" in text

"""The report's model health says what the forecast serves, and flags a blend that lost."""

from __future__ import annotations

from serving.report import format as fmt
from serving.report.baselines import forecast_flags
from serving.report.sections.freshness import candidate_rows

SERVED = {
    "month": {
        "champion": "seasonal_naive",
        "note": "every other candidate lost to seasonal naive on this history's backtest",
        "candidates": {
            "blend": {"wape_total": 0.31, "coverage_80_total": 0.8},
            "seasonal_naive": {"wape_total": 0.26, "coverage_80_total": 0.75},
        },
        "far": [
            {
                "from_step": 3,
                "champion": "ets",
                "candidates": {"ets": {"wape_total": 0.2, "coverage_80_total": 0.8}},
            }
        ],
    }
}


def test_every_candidate_is_listed_best_first_with_the_served_one_marked() -> None:
    rows = candidate_rows(SERVED, defined=True)
    assert [r[1] for r in rows] == ["seasonal naive (served)", "blend", "ets (served)"]
    assert rows[2][0] == "month, from step 4"
    assert rows[0][2] == "26.0%"


def test_a_simple_method_served_instead_of_the_blend_is_a_warning() -> None:
    flags = forecast_flags({"month": {}}, True, SERVED)
    assert len(flags) == 1
    assert flags[0].tone == "warn"
    assert "every other candidate lost to seasonal naive" in flags[0].text


def test_without_won_amounts_nothing_is_compared() -> None:
    assert forecast_flags({"month": {}}, False, SERVED) == []
    cells = {r[2] for r in candidate_rows(SERVED, defined=False)}
    assert cells == {fmt.pct(None, 1)} and "26.0%" not in cells


def test_old_export_is_flagged_against_when_the_report_is_generated() -> None:
    """An export whose last event is years before the report was generated is flagged, even
    when the report is dated (as of) that last event."""
    from datetime import UTC, datetime
    from types import SimpleNamespace

    import pandas as pd

    from serving.report.sections.freshness import freshness

    def rows(generated: datetime) -> list[dict[str, object]]:
        ctx = SimpleNamespace(
            history=SimpleNamespace(exported_at=pd.Timestamp("2017-12-31")),
            as_of=pd.Timestamp("2017-12-31"),
            generated_at=generated,
            win=None,
            forecast=None,
            scores=SimpleNamespace(source="run r1"),
        )
        return freshness(ctx)  # type: ignore[arg-type]

    old = rows(datetime(2026, 12, 7, tzinfo=UTC))[0]
    assert old["flag"] is True
    assert "before this report was generated" in str(old["note"])
    fresh = rows(datetime(2018, 1, 2, tzinfo=UTC))[0]
    assert fresh["flag"] is False
    assert "generated" not in str(fresh["note"])

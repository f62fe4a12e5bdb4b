"""The report's sections: each a function of the gathered ``Context`` returning a ``Section``,
the plain data its template (``serving/report/templates/<id>.html``) renders."""

from __future__ import annotations

from typing import Any

from serving.report.data import Context
from serving.report.sections.base import SECTIONS, TITLES, Section
from serving.report.sections.changes import what_changed
from serving.report.sections.coverage import coverage
from serving.report.sections.forecast import forecast_vs_actual
from serving.report.sections.headline import headline
from serving.report.sections.health import health
from serving.report.sections.kpis import kpis
from serving.report.sections.risk import at_risk
from serving.report.sections.stages import stages

__all__ = [
    "SECTIONS",
    "TITLES",
    "Section",
    "at_risk",
    "coverage",
    "forecast_vs_actual",
    "gather_sections",
    "headline",
    "health",
    "kpis",
    "stages",
    "what_changed",
]


def gather_sections(ctx: Context) -> tuple[list[Section], dict[str, Any]]:
    """Every section in page order, and the headline to keep for the next report."""
    head, saved = headline(ctx)
    rest = [
        forecast_vs_actual(ctx),
        coverage(ctx),
        stages(ctx),
        at_risk(ctx),
        what_changed(ctx),
        kpis(ctx),
        health(ctx),
    ]
    return [head, *rest], saved

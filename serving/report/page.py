"""The page around the sections (``templates/page.html``): header, contents, screen and print
CSS (``templates/report.css``), inlined plotly.js."""

from __future__ import annotations

from collections.abc import Sequence

from serving.report.charts import plotly_js
from serving.report.data import Context
from serving.report.sections import SECTIONS, Section
from serving.report.templating import render


def page(ctx: Context, sections: Sequence[Section]) -> str:
    """The whole report: each section's template with its view, in the page."""
    return render(
        "page.html",
        title=f"Sales forecast — {ctx.team}" if ctx.team else "Sales forecast",
        team=ctx.team,
        team_known=ctx.team_known,
        as_of=ctx.as_of,
        currency=ctx.currency,
        generated_at=f"{ctx.generated_at:%d %b %Y %H:%M}",
        toc=SECTIONS,
        sections=sections,
        plotly_js=plotly_js(),
    )

"""The report's Jinja2 environment: one template per section in ``serving/report/templates``,
autoescaped, with undefined names as errors and the ``format`` helpers as filters.

Python gathers plain data (text and formatted numbers) and the templates do the markup, so
text from the CRM is escaped by default; the only HTML passed in as safe is plotly's
(``serving.report.charts``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from serving.report import format as fmt

FILTERS = {
    "text": fmt.text,
    "money": fmt.money,
    "money_short": fmt.money_short,
    "signed_money": fmt.signed_money,
    "pct": fmt.pct,
    "signed_pct": fmt.signed_pct,
    "points": fmt.points,
    "days": fmt.days,
    "number": fmt.number,
    "ratio": fmt.ratio,
    "date": fmt.date,
    "month_label": fmt.month_label,
    "quarter_label": fmt.quarter_label,
}


@cache
def environment() -> Environment:
    """The environment (built once): ``.html`` templates autoescape; ``report.css`` is the
    page's own style sheet, included as it is."""
    env = Environment(
        loader=PackageLoader("serving.report", "templates"),
        autoescape=select_autoescape(
            enabled_extensions=("html", "j2"), default_for_string=True, default=False
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(FILTERS)
    return env


def render(template: str, **data: Any) -> str:
    return environment().get_template(template).render(**data)

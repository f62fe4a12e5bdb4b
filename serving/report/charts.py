"""Plotly figures as ``<div>``s; plotly.js itself is inlined once per page (``plotly_js``)."""

from __future__ import annotations

from functools import cache
from typing import Any

import plotly.graph_objects as go

CONFIG: dict[str, Any] = {"displayModeBar": False, "responsive": True}
INK, MUTED, GRID = "#1f2933", "#7b8794", "#e4e7eb"
BLUE, BLUE_LIGHT, GREEN, RED, AMBER = "#2563eb", "#93c5fd", "#16a34a", "#dc2626", "#d97706"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, Helvetica, Arial, sans-serif"


@cache
def plotly_js() -> str:
    """The plotly.js bundle (no CDN: the report opens offline)."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def layout(fig: go.Figure, *, height: int = 320, money_axis: str | None = None) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 30, "b": 40},
        font={"family": FONT, "size": 12, "color": INK},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0},
        hoverlabel={"font": {"family": FONT}},
    )
    if money_axis is not None:
        fig.update_yaxes(tickprefix=money_axis, separatethousands=True, tickformat="~s")
    return fig


def chart(fig: go.Figure, div_id: str, caption: str) -> str:
    """A figure as a ``<figure>`` with a caption; the div carries ``div_id`` and class ``chart``."""
    body = fig.to_html(
        full_html=False,
        include_plotlyjs=False,
        config=CONFIG,
        div_id=div_id,
        default_width="100%",
        default_height=f"{fig.layout.height or 320}px",
        validate=True,
    )
    return (
        f'<figure class="chart" data-chart="{div_id}">{body}'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def currency_prefix(currency: str) -> str:
    from serving.report.format import SYMBOLS

    return SYMBOLS.get(currency.upper(), "")

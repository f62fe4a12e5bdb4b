"""Small HTML building blocks shared by the sections (no templating engine)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from serving.report.format import esc


def section(section_id: str, title: str, body: str, lead: str = "") -> str:
    intro = f'<p class="lead">{lead}</p>' if lead else ""
    return (
        f'<section id="{section_id}" class="report-section" data-section="{section_id}">'
        f"<h2>{esc(title)}</h2>{intro}{body}</section>"
    )


def empty(message: str) -> str:
    """The empty state of a section or a part of it."""
    return f'<div class="empty-state" role="note">{message}</div>'


def card(label: str, value: str, lines: Sequence[str] = (), tone: str = "") -> str:
    extra = "".join(f'<div class="card-line">{line}</div>' for line in lines if line)
    cls = f"card {tone}".strip()
    return (
        f'<div class="{cls}"><div class="card-label">{label}</div>'
        f'<div class="card-value">{value}</div>{extra}</div>'
    )


def cards(items: Iterable[str]) -> str:
    return f'<div class="cards">{"".join(items)}</div>'


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    numeric: Sequence[int] = (),
    caption: str = "",
    cls: str = "",
) -> str:
    """Cells are HTML already (escape text with ``esc``); ``numeric`` columns align right."""
    num = set(numeric)

    def cell(tag: str, i: int, value: str) -> str:
        return f'<{tag} class="num">{value}</{tag}>' if i in num else f"<{tag}>{value}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    cap = f"<caption>{caption}</caption>" if caption else ""
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def pill(text: str, tone: str = "") -> str:
    return f'<span class="pill {tone}">{text}</span>'


def bullets(items: Iterable[str], cls: str = "") -> str:
    klass = f' class="{cls}"' if cls else ""
    return f"<ul{klass}>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"

"""Numbers for people: currency, percentages, days, dates; ``—`` for what is not defined."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from markupsafe import escape

DASH = "—"
SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹"}


def missing(value: Any) -> bool:
    """None, NaN, NaT and non-numbers count as missing."""
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def text(value: Any) -> str:
    """A value as text for a template (``—`` when missing); the template escapes it."""
    return DASH if missing(value) else str(value)


def esc(value: Any) -> str:
    """Text escaped for HTML as the report's templates escape it (``—`` when missing)."""
    return DASH if missing(value) else str(escape(str(value)))


def _symbol(currency: str) -> tuple[str, str]:
    sym = SYMBOLS.get(currency.upper())
    return (sym, "") if sym else ("", f" {currency.upper()}" if currency else "")


def money(value: Any, currency: str = "USD") -> str:
    """``$1,234,568`` (whole units; cents only below 100)."""
    if missing(value):
        return DASH
    v = float(value)
    prefix, suffix = _symbol(currency)
    sign = "−" if v < 0 else ""
    body = f"{abs(v):,.2f}" if 0 < abs(v) < 100 and abs(v) != round(abs(v)) else f"{abs(v):,.0f}"
    return f"{sign}{prefix}{body}{suffix}"


def money_short(value: Any, currency: str = "USD") -> str:
    """``$1.23M``, ``$45.6k``, ``$950``: headline figures."""
    if missing(value):
        return DASH
    v = float(value)
    prefix, suffix = _symbol(currency)
    sign = "−" if v < 0 else ""
    a = abs(v)
    for limit, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= limit:
            scaled = a / limit
            digits = 2 if scaled < 10 else 1 if scaled < 100 else 0
            return f"{sign}{prefix}{scaled:.{digits}f}{unit}{suffix}"
    return f"{sign}{prefix}{a:,.0f}{suffix}"


def signed_money(value: Any, currency: str = "USD") -> str:
    """``+$1.2k`` / ``−$300`` / ``±$0``: a change."""
    if missing(value):
        return DASH
    v = float(value)
    if v == 0:
        return "±" + money_short(0, currency)
    return ("+" if v > 0 else "") + money_short(v, currency)


def pct(value: Any, digits: int = 0) -> str:
    """A fraction as a percentage: 0.634 → ``63%``."""
    if missing(value):
        return DASH
    return f"{100 * float(value):.{digits}f}%"


def signed_pct(value: Any, digits: int = 1) -> str:
    """A growth fraction: 0.123 → ``+12.3%``, −0.05 → ``−5.0%``."""
    if missing(value):
        return DASH
    v = 100 * float(value)
    text = f"{abs(v):.{digits}f}%"
    return ("+" if v > 0 else "−" if v < 0 else "±") + text


def points(value: Any, digits: int = 0) -> str:
    """Probability points: ``+12 pts`` / ``−3 pts``."""
    if missing(value):
        return DASH
    v = float(value)
    text = f"{abs(v):.{digits}f} pts"
    return ("+" if v > 0 else "−" if v < 0 else "±") + text


def days(value: Any) -> str:
    """``57 days`` (``1 day``)."""
    if missing(value):
        return DASH
    v = float(value)
    n = round(v)
    return f"{n:,} day" if n == 1 else f"{n:,} days"


def number(value: Any, digits: int = 0) -> str:
    if missing(value):
        return DASH
    v = float(value)
    if math.isinf(v):
        return DASH
    return f"{v:,.{digits}f}"


def ratio(value: Any) -> str:
    """A coverage ratio: ``2.4×``."""
    if missing(value):
        return DASH
    return f"{float(value):.1f}×"


def date(value: Any) -> str:
    """``31 Mar 2026``."""
    if missing(value):
        return DASH
    return f"{pd.Timestamp(value):%d %b %Y}"


def month_label(value: Any) -> str:
    """``Mar 2026``."""
    if missing(value):
        return DASH
    return f"{pd.Timestamp(value):%b %Y}"


def quarter_label(value: Any) -> str:
    """``Q1 2026``."""
    if missing(value):
        return DASH
    ts = pd.Timestamp(value)
    return f"Q{ts.quarter} {ts.year}"


def period_label(value: Any, freq: str) -> str:
    return quarter_label(value) if freq == "quarter" else month_label(value)

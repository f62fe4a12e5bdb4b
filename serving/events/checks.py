"""An event's rows checked by the import rules, one row at a time, in microseconds.

The canonical importer validates in DuckDB (``salesml.importers.validate``): the right tool
for a million-row export, but a couple of hundred milliseconds per call — too slow to answer
an event within the second. ``check_row`` applies the same rules from the same sources — the
schema's columns (kind, required, nullable, minimum, choices), ``Limits`` (absurd dates,
amounts, text lengths, control characters, the settings that move them) and the deal rules
(closed deals have ``closed_at``, open ones do not, closing follows creation, ISO currency) —
with the importer's messages, except how to fix an unreadable value: an event is told the
form to send (``EVENT_HINTS``), not an import option. tests/serving/test_events_checks.py runs
both validators over the same good and bad rows and requires the same verdict per field, so
they cannot drift apart unnoticed. The warehouse fold then imports the events' rows through
the importer itself (``serving.events.fold``): it is the last word.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import pandas as pd

from salesml.importers.validate import Limits
from salesml.schemas import ATTRIBUTE_PREFIX, TABLES, Column, TableSchema

ID_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
TEXT_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
THOUSANDS = re.compile(r"-?[0-9]{1,3}(,[0-9]{3})+(\.[0-9]+)?")
MONEY_NOISE = re.compile(r"[\s$€£¥]")
CURRENCY = re.compile(r"[A-Z]{3}")
TRUE_TEXT = ("true", "t", "1", "yes", "y")
FALSE_TEXT = ("false", "f", "0", "no", "n")
EXCEL_SERIAL = re.compile(r"[0-9]{5}(\.[0-9]+)?")
DECIMAL_COMMA = re.compile(r"-?[0-9][0-9.]*,[0-9]+")
UNIX_NUMBER = re.compile(r"[0-9]{9,13}(\.[0-9]+)?")
EPOCH_PLAUSIBLE = (315_532_800.0, 4_102_444_800.0)  # 1980-01-01 .. 2100-01-01, in seconds
EVENT_HINTS = {
    "timestamp": "send ISO 8601 such as 2026-04-01T10:00:00Z (an offset such as +02:00 is "
    "honoured)",
    "date": "send ISO 8601 such as 2026-04-01",
    "float": 'send a JSON number such as 1234.5, or a string such as "1234.50"',
    "int": "send a whole number such as 3",
    "bool": "send true or false",
}
"""How to send a value an event field cannot read: the accepted form (an event has no
--mapping or --decimal to declare another)."""


@dataclass(frozen=True)
class Problem:
    """A broken rule: the field and the importer's reason."""

    field: str
    reason: str


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    text = str(value).strip()
    return text or None


def parse_timestamp(text: str) -> datetime | None:
    """ISO 8601 (offsets honoured, stored as naive UTC), as the importer reads it."""
    candidate = re.sub(r"[Zz]$", "+00:00", text)
    if re.search(r"[T ]\d{2}:\d{2}.*[+-]\d{2}:?\d{2}$", candidate):
        candidate = re.sub(r"\s*([+-]\d{2}):?(\d{2})$", r"\1:\2", candidate)
    try:
        stamp = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return stamp


def parse_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond a double: not a finite number
            return math.inf if value > 0 else -math.inf
    cleaned = MONEY_NOISE.sub("", str(value))
    if THOUSANDS.fullmatch(cleaned):
        cleaned = cleaned.replace(",", "")
    try:
        return float(cleaned)
    except ValueError:
        return None


def parse_value(col: Column, value: Any) -> tuple[Any, bool]:
    """``(parsed, ok)``: the value in the column's kind (``None`` when empty)."""
    if col.kind == "str":
        text = None if value is None else str(value) if not isinstance(value, str) else value
        text = None if text is None else text.strip() or None
        return text, True
    text = _text(value)
    if text is None:
        return None, True
    if col.kind in ("timestamp", "date"):
        stamp = parse_timestamp(text)
        if stamp is None:
            return None, False
        return (stamp.date() if col.kind == "date" else stamp), True
    if col.kind in ("float", "int"):
        number = parse_number(value)
        if number is None:
            return None, False
        if col.kind == "int":
            whole = math.isfinite(number) and number == round(number)
            return (int(number), True) if whole else (None, False)
        return number, True
    lowered = text.lower()
    if lowered in TRUE_TEXT:
        return True, True
    if lowered in FALSE_TEXT:
        return False, True
    return None, False


def _absurd(table: TableSchema, col: Column, value: Any, raw: str, limits: Limits) -> str | None:
    name = col.name
    if col.kind in ("timestamp", "date") and value is not None:
        latest = limits.latest(name)
        stamp = (
            value if isinstance(value, datetime) else datetime.combine(value, datetime.min.time())
        )
        too_late = stamp.date() > latest.date() if col.kind == "date" else stamp > latest
        if stamp < limits.earliest or too_late:
            after = (
                "a year from now"
                if name != "expected_close_date"
                else f"{limits.max_expected_years} years from now"
            )
            return (
                f"{name} {raw} is not a plausible date (before {limits.earliest.date()} or after "
                f"{latest.date()}, {after}); fix the date, or change the bounds with "
                "SALESML_IMPORT_MIN_YEAR / SALESML_IMPORT_MAX_FUTURE_DAYS"
            )
    if col.kind == "float" and value is not None:
        if not math.isfinite(value):
            return (
                f"{name} {raw} is not a finite number; write it as a plain number such as 1234.50"
            )
        if abs(value) > limits.max_amount:
            return (
                f"{name} {raw} is above the ceiling of {limits.max_amount:,.0f}; fix the value (a "
                "unit or decimal-separator mix-up?) or raise SALESML_IMPORT_MAX_AMOUNT"
            )
    if col.kind == "str" and value is not None:
        is_id = name in table.key or name.endswith("_id")
        longest = limits.max_id_chars if is_id else limits.max_text_chars
        if len(value) > longest:
            return f"{name} is {len(value)} characters long; it holds at most {longest:,}"
        if (ID_CONTROL if is_id else TEXT_CONTROL).search(value):
            return f"{name} contains control characters; remove them"
    return None


def epoch_reading(text: str) -> str | None:
    """What a bare number in a date field is when it is a plausible Unix timestamp (seconds
    or milliseconds since 1970-01-01 giving a date from 1980 to 2100): ``None`` otherwise."""
    if not UNIX_NUMBER.fullmatch(text):
        return None
    number = float(text)
    for unit, scale in (("seconds", 1.0), ("milliseconds", 1000.0)):
        seconds = number / scale
        if EPOCH_PLAUSIBLE[0] <= seconds < EPOCH_PLAUSIBLE[1]:
            stamp = datetime.fromtimestamp(seconds, tz=UTC).replace(tzinfo=None)
            return (
                f"{text} looks like a Unix timestamp in {unit} (it would be "
                f"{stamp.isoformat(timespec='seconds')}Z)"
            )
    return None


def event_hint(kind: str, raw: str) -> str:
    """The accepted form of a ``kind`` field, naming what the value looks like when that
    explains it (a Unix timestamp or an Excel serial date, with the date it would be; a
    decimal comma)."""
    text = raw.strip()
    epoch = epoch_reading(text) if kind in ("timestamp", "date") else None
    if epoch is not None:
        return f"{epoch}; {EVENT_HINTS[kind]}"
    if kind in ("timestamp", "date") and EXCEL_SERIAL.fullmatch(text):
        days = float(text)
        would_be = (pd.Timestamp("1899-12-30") + pd.Timedelta(days=days)).date()
        unix_day = (pd.Timestamp("1970-01-01") + pd.Timedelta(days=days)).date()
        return (
            f"{text} looks like an Excel serial date (days since 1899-12-30: {text} would be "
            f"{would_be}) or a Unix day number (days since 1970-01-01: {unix_day}); "
            + (EVENT_HINTS[kind])
        )
    if kind in ("float", "int") and DECIMAL_COMMA.fullmatch(MONEY_NOISE.sub("", text)):
        return (
            f"{text} has ',' as the decimal separator, which an event does not take; "
            + (EVENT_HINTS[kind])
        )
    return EVENT_HINTS[kind]


def _column_problems(
    table: TableSchema, col: Column, raw_value: Any, limits: Limits
) -> tuple[Any, Problem | None]:
    value, ok = parse_value(col, raw_value)
    raw = "" if raw_value is None else str(raw_value)
    if isinstance(raw_value, bool):  # as the sender wrote it (JSON), not Python's True
        raw = "true" if raw_value else "false"
    if not ok:
        shown = raw if isinstance(raw_value, bool) else repr(raw)
        return None, Problem(
            col.name, f"could not read {shown} as {col.kind}; {event_hint(col.kind, raw)}"
        )
    absurd = _absurd(table, col, value, raw, limits)
    if absurd is not None:
        return value, Problem(col.name, absurd)
    if value is None and not col.nullable and not (table.derived_key and col.name in table.key):
        return value, Problem(col.name, f"{col.name} is empty; every {table.name} row needs one")
    if col.minimum is not None and value is not None and value < col.minimum:
        return value, Problem(
            col.name,
            f"{col.name} is negative ({raw}); {col.name} must be ≥ {col.minimum:g}: fix the sign, "
            "or leave it empty if unknown",
        )
    if col.choices is not None and value is not None and value not in col.choices:
        return value, Problem(
            col.name,
            f"{col.name} {raw!r} is not one of {', '.join(col.choices)}; map the export's values "
            "to these",
        )
    return value, None


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, datetime.min.time())
    return None


def _deal_rules(row: dict[str, Any], raw: dict[str, Any]) -> Problem | None:
    status, closed, created = row.get("status"), row.get("closed_at"), row.get("created_at")
    if status in ("won", "lost") and closed is None:
        return Problem(
            "closed_at", f"deal is {status} but has no closed_at; fill in the date it closed"
        )
    if status == "open" and closed is not None:
        return Problem(
            "closed_at",
            f"deal is open but has closed_at {raw.get('closed_at')}; set status to won or lost, "
            "or clear closed_at",
        )
    if closed is not None and created is not None and _as_datetime(closed) < _as_datetime(created):  # type: ignore[operator]
        return Problem(
            "closed_at",
            f"closed_at {raw.get('closed_at')} is before created_at {raw.get('created_at')}; fix "
            "whichever date is wrong",
        )
    currency = row.get("currency")
    if currency is not None and not CURRENCY.fullmatch(currency):
        return Problem("currency", f"currency {currency!r} is not an ISO 4217 code such as USD")
    return None


def check_row(
    table_name: str,
    raw: dict[str, Any],
    limits: Limits,
    known_deals: Any = None,
    attributes: dict[str, str] | None = None,
) -> tuple[dict[str, Any], list[Problem]]:
    """``(typed row, problems)`` of one canonical row as an event sent it.

    ``known_deals`` (a container of deal ids) checks references to deals; ``attributes`` are
    the deals table's custom attributes and their kinds (an ``attr_<name>`` field of another
    kind is rejected like the importer rejects it).
    """
    table = TABLES[table_name]
    typed: dict[str, Any] = {}
    problems: list[Problem] = []
    for col in table.columns:
        value, problem = _column_problems(table, col, raw.get(col.name), limits)
        typed[col.name] = value
        if problem is not None:
            problems.append(problem)
    problems += _attribute_problems(table, raw, typed, attributes or {}, limits)
    if known_deals is not None:
        for column, _parent, _ in table.references:
            ref = typed.get(column)
            if ref is not None and ref not in known_deals:
                problems.append(
                    Problem(
                        column,
                        f"{column} {ref!r} is not in deals (neither in this import nor "
                        "in the warehouse); import it too or correct the id",
                    )
                )
    if table_name == "deals" and not problems:
        rule = _deal_rules(typed, raw)
        if rule is not None:
            problems.append(rule)
    if table_name == "leads" and not problems:
        for later in ("converted_at", "disqualified_at"):
            if typed.get(later) is not None and typed[later] < typed["created_at"]:
                problems.append(
                    Problem(
                        later,
                        f"{later} {raw.get(later)} is before created_at "
                        f"{raw.get('created_at')}; fix whichever date is wrong",
                    )
                )
    return typed, problems


def _attribute_problems(
    table: TableSchema,
    raw: dict[str, Any],
    typed: dict[str, Any],
    attributes: dict[str, str],
    limits: Limits,
) -> list[Problem]:
    problems = []
    for name, value in raw.items():
        if name in table.column_names:
            continue
        if table.name != "deals":
            problems.append(Problem(name, f"{name} is not a column of {table.name}"))
            continue
        attr = name.removeprefix(ATTRIBUTE_PREFIX)
        text = _text(value)
        kind = attributes.get(attr, "categorical")
        if kind == "numeric":
            number = None if text is None else parse_number(value)
            if text is not None and (number is None or not math.isfinite(number)):
                problems.append(
                    Problem(
                        attr,
                        f"custom attribute {attr} is numeric in the data, got {text!r}; "
                        "send a number such as 12.5",
                    )
                )
            typed[ATTRIBUTE_PREFIX + attr] = number
        else:
            if text is not None and (
                len(text) > limits.max_text_chars or TEXT_CONTROL.search(text)
            ):
                problems.append(
                    Problem(
                        attr,
                        f"custom attribute {attr} is longer than "
                        f"{limits.max_text_chars:,} characters or contains control "
                        "characters; fix the value",
                    )
                )
            typed[ATTRIBUTE_PREFIX + attr] = text
    return problems

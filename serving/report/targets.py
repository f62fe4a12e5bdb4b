"""Targets from a CSV file: ``period, team, target``.

``period`` is a month (``2026-03``, or a date ``2026-03-01`` meaning its month) or a quarter
(``2026-Q1``, ``2026Q1``, ``Q1 2026``); ``team`` is a team name, or empty / ``all`` / ``total``
for the company; ``target`` is the won revenue aimed at in that period (``1,250,000`` and
``$1.25M`` are not accepted: plain numbers only). Every problem is one ``TargetsError`` that
names the file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pandas as pd

from salesml.errors import ConfigError

COLUMNS = ("period", "team", "target")
COMPANY = ""  # the team value of company-wide targets
_COMPANY_WORDS = {"", "all", "total", "company", "*"}
_MONTH = re.compile(r"^(\d{4})-(\d{1,2})$")
_DATE = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})$")
_QUARTER = re.compile(r"^(?:(\d{4})\s*-?\s*Q([1-4])|Q([1-4])[\s-]*(\d{4}))$", re.IGNORECASE)


class TargetsError(ConfigError):
    """The targets file cannot be read; the message names the column to fix."""


def parse_period(text: str) -> tuple[str, pd.Timestamp] | None:
    """``("month" | "quarter", period start)`` or None when ``text`` is no period."""
    value = text.strip()
    if m := _QUARTER.match(value):
        year, quarter = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        return "quarter", pd.Timestamp(int(year), 3 * int(quarter) - 2, 1)
    m = _MONTH.match(value) or _DATE.match(value)
    if m:
        year, month = int(m.group(1)), int(m.group(2))
        if not 1 <= month <= 12:
            return None
        if m.re is _DATE:
            try:
                pd.Timestamp(year, month, int(m.group(3)))
            except ValueError:
                return None
        return "month", pd.Timestamp(year, month, 1)
    return None


def parse_targets(text: str, name: str = "targets") -> pd.DataFrame:
    """Rows of ``freq, period_start, team, target`` (team ``""`` = the company)."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = next(reader)
    except StopIteration:
        raise TargetsError(
            f"{name}: the file is empty; expected columns period, team, target"
        ) from None
    columns = [h.strip().lower() for h in header]
    for column in COLUMNS:
        if column not in columns:
            if column == "team" and "period" in columns and "target" in columns:
                continue  # company-wide targets only
            raise TargetsError(
                f"{name}: missing column '{column}' (the header must have period, team, target; "
                f"found {', '.join(repr(c) for c in columns) or 'nothing'})"
            )
    at = {c: columns.index(c) for c in COLUMNS if c in columns}
    rows = []
    seen: dict[tuple[str, pd.Timestamp, str], int] = {}
    for line, record in enumerate(reader, start=2):
        if not any(cell.strip() for cell in record):
            continue

        def cell(column: str, record: list[str] = record) -> str:
            i = at.get(column)
            return record[i].strip() if i is not None and i < len(record) else ""

        period = parse_period(cell("period"))
        if period is None:
            raise TargetsError(
                f"{name} line {line}: column 'period' must be a month (2026-03) or a quarter "
                f"(2026-Q1), got {cell('period')!r}"
            )
        raw = cell("target").replace("_", "")
        try:
            target = float(raw)
        except ValueError:
            raise TargetsError(
                f"{name} line {line}: column 'target' must be a plain number, got {raw!r}"
            ) from None
        if not pd.notna(target) or target < 0 or target == float("inf"):
            raise TargetsError(
                f"{name} line {line}: column 'target' must be a number ≥ 0, got {raw!r}"
            )
        team = cell("team")
        team = COMPANY if team.lower() in _COMPANY_WORDS else team
        ident = (period[0], period[1], team)
        if ident in seen:
            raise TargetsError(
                f"{name} line {line}: column 'period' repeats {cell('period')!r} for "
                f"{team or 'the company'} (first on line {seen[ident]})"
            )
        seen[ident] = line
        rows.append({"freq": period[0], "period_start": period[1], "team": team, "target": target})
    return pd.DataFrame(rows, columns=["freq", "period_start", "team", "target"])


def load_targets(path: Path) -> pd.DataFrame:
    """``parse_targets`` of a file; a missing or unreadable file is a ``TargetsError`` too."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TargetsError(f"targets file {path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TargetsError(f"targets file {path} cannot be read as UTF-8 text: {exc}") from None
    return parse_targets(text, path.name)


def target_for(
    targets: pd.DataFrame | None, freq: str, period_start: pd.Timestamp, team: str | None
) -> float | None:
    """The target of ``team`` (None: the company) for the period, if the file sets one.

    A quarter without its own row adds up its three months when all three are set."""
    if targets is None or targets.empty:
        return None
    who = team or COMPANY
    rows = targets[(targets["team"] == who) & (targets["period_start"] == period_start)]
    exact = rows[rows["freq"] == freq]
    if len(exact):
        return float(exact["target"].iloc[0])
    if freq == "quarter":
        months = pd.date_range(period_start, periods=3, freq="MS")
        parts = targets[
            (targets["team"] == who)
            & (targets["freq"] == "month")
            & targets["period_start"].isin(months)
        ]
        if len(parts) == 3:
            return float(parts["target"].sum())
    return None

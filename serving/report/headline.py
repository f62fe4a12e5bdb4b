"""The last report's headline, kept next to the report (``report.html`` → ``report.headline.json``)
so the next report can say what changed since. One entry per team (``""`` = the company)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from salesml import jsonio

FORMAT = 1


def headline_path(out: Path) -> Path:
    return out.with_name(out.stem + ".headline.json")


def read_last_headline(out: Path, team: str | None) -> dict[str, Any] | None:
    """The headline the last report written to ``out`` showed for ``team``; None if there is
    none (first report, another team, or an unreadable file: a report never fails for it)."""
    try:
        doc = json.loads(headline_path(out).read_text(encoding="utf-8"))
        entry = doc["reports"][team or ""]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry if isinstance(entry, dict) else None


def write_last_headline(out: Path, team: str | None, headline: dict[str, Any]) -> Path:
    """Store ``headline`` for ``team``, keeping the other teams' entries (atomic replace)."""
    path = headline_path(out)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        reports = doc["reports"] if isinstance(doc.get("reports"), dict) else {}
    except (OSError, ValueError, AttributeError):
        reports = {}
    reports[team or ""] = headline
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".headline-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(jsonio.dumps({"format": FORMAT, "reports": reports}, indent=2, default=str))
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

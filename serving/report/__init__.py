"""The manager's forecast report: one self-contained HTML file (see docs/report.md).

``build_report(history, con, win, forecast, team=..., targets=..., previous=..., as_of=...)``
returns the page; ``render_report`` also returns the headline to keep for the next report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from features.history import History
from salesml.models.registry import LoadedForecast
from salesml.scoring import Scorer
from serving.report.data import Context, ScoreSet, gather, load_scores, scores_from_model
from serving.report.headline import headline_path, read_last_headline, write_last_headline
from serving.report.page import page
from serving.report.sections import gather_sections
from serving.report.targets import TargetsError, load_targets, parse_targets
from serving.runs import RunStore

__all__ = [
    "Report",
    "ScoreSet",
    "TargetsError",
    "build_report",
    "headline_path",
    "load_scores",
    "load_targets",
    "parse_targets",
    "read_last_headline",
    "render_report",
    "scores_from_model",
    "write_last_headline",
]


@dataclass(frozen=True)
class Report:
    html: str
    headline: dict[str, Any]
    context: Context


def render_report(
    history: History,
    con: Any,
    win: Scorer | None,
    forecast: LoadedForecast | None,
    team: str | None = None,
    targets: pd.DataFrame | None = None,
    previous: dict[str, Any] | None = None,
    as_of: pd.Timestamp | None = None,
    *,
    scores: ScoreSet | None = None,
    store: RunStore | None = None,
) -> Report:
    """Gather everything once, then each section's data, then render the page's templates.

    Args:
        con: a warehouse connection (for the KPIs); None leaves the KPIs out.
        win / forecast: the registered models (None: the sections they feed show why not).
        team: filter everything to this team (an unknown team gives empty states).
        targets: rows from ``load_targets`` (or None).
        previous: the last report's headline (``read_last_headline``).
        as_of: the report date (default: the latest event in the data).
        scores: the scores to show (default: from ``store``'s score runs, else scored now).
        store: the workspace's score runs.
    """
    ctx = gather(
        history,
        con,
        win,
        forecast,
        team=team,
        targets=targets,
        previous=previous,
        as_of=as_of,
        scores=scores,
        store=store,
    )
    parts, saved = gather_sections(ctx)
    return Report(page(ctx, parts), saved, ctx)


def build_report(
    history: History,
    con: Any,
    win: Scorer | None,
    forecast: LoadedForecast | None,
    team: str | None = None,
    targets: pd.DataFrame | None = None,
    previous: dict[str, Any] | None = None,
    as_of: pd.Timestamp | None = None,
    *,
    scores: ScoreSet | None = None,
    store: RunStore | None = None,
) -> str:
    """The report as one self-contained HTML page (see ``render_report``)."""
    return render_report(
        history, con, win, forecast, team, targets, previous, as_of, scores=scores, store=store
    ).html

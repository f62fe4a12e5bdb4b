"""What the sections share: the section list, the view a template renders, the team check and
the figures more than one section reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from salesml.models.revenue.periods import period_start
from serving.report import format as fmt
from serving.report.baselines import Flag
from serving.report.data import Context

SECTIONS = (
    ("headline", "Headline"),
    ("forecast", "Forecast vs actual"),
    ("coverage", "Pipeline coverage"),
    ("stages", "Pipeline by stage"),
    ("risk", "Deals at risk"),
    ("changes", "What changed since the last run"),
    ("kpis", "Rep and team KPIs"),
    ("health", "Model health"),
)
TITLES = dict(SECTIONS)


@dataclass(frozen=True)
class Section:
    """One section as the page renders it: ``template`` with ``view`` (plain data: text,
    formatted numbers, ``charts.Chart``s), under its title."""

    id: str
    template: str
    view: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.id]


def no_team(ctx: Context, section_id: str) -> Section | None:
    """The empty state of a section when the team has no deals (None when it has)."""
    if ctx.team_known:
        return None
    return Section(
        section_id, "no_team.html", {"id": section_id, "team": ctx.team, "teams": ctx.teams}
    )


def money(ctx: Context, value: Any) -> str:
    return fmt.money(value, ctx.currency)


def short(ctx: Context, value: Any) -> str:
    return fmt.money_short(value, ctx.currency)


def rep_name(ctx: Context, owner: Any) -> str:
    """A rep's name (its id when the reps table has none; ``—`` for no owner)."""
    if fmt.missing(owner):
        return fmt.DASH
    return ctx.names.get(str(owner), str(owner))


def owner_teams(ctx: Context) -> dict[str, str]:
    """owner id → team, as the reps table has it."""
    return {
        str(o): str(t)
        for o, t in zip(
            ctx.history.reps.get("owner_id", []), ctx.history.reps.get("team", []), strict=False
        )
    }


def revenue_known(ctx: Context) -> bool:
    """Whether any won deal in the data has an amount (without, revenue is undefined)."""
    deals = ctx.history.deals
    if "amount" not in deals:
        return False
    won = deals[deals["status"] == "won"]
    return bool(pd.to_numeric(won["amount"], errors="coerce").notna().any())


def won_in_period(ctx: Context, freq: str) -> float:
    start = period_start(ctx.as_of, freq)
    deals = ctx.team_deals()
    won = deals[
        (deals["status"] == "won")
        & (deals["closed_at"] >= start)
        & (deals["closed_at"] <= ctx.as_of)
    ]
    return float(pd.to_numeric(won["amount"], errors="coerce").fillna(0.0).sum())


def estimated_mask(deals: pd.DataFrame) -> pd.Series:
    """The open deals whose amount is their product's list price (``salesml.kpis.pipeline``)."""
    if "amount_estimated" not in deals:
        return pd.Series(False, index=deals.index)
    return deals["amount_estimated"].fillna(False).astype(bool)


def estimated_note(ctx: Context, total: float, estimated: float) -> str | None:
    """``$X open, of which $Y estimated from list prices`` (None when nothing is estimated)."""
    if estimated <= 0:
        return None
    return (
        f"{short(ctx, total)} open, of which {short(ctx, estimated)} estimated from list prices "
        "(deals without an amount)"
    )


def flag_views(flags: list[Flag | None]) -> list[dict[str, str]]:
    """Flags as the templates' pills (``text``, ``tone``); None entries left out."""
    return [{"text": f.text, "tone": f.tone} for f in flags if f is not None]


def model_caveats(ctx: Context, *models: str) -> list[dict[str, str]]:
    """The pills of the models a section shows (``win``, ``timing``, ``forecast``)."""
    return flag_views(list(ctx.flags_of(*models)))

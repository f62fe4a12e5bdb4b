"""Coaching suggestions for reps and teams, from the rules fitted at training (docs/actions.md).

Each suggestion is plain data with a ``kind`` the KPI template words: ``coach``, ``rebalance``,
``spare``, ``stalled`` or ``process``."""

from __future__ import annotations

from typing import Any

import numpy as np

from serving.report import format as fmt
from serving.report.data import Context
from serving.report.sections.base import owner_teams, rep_name, short

STALE_ACTIONS = {"no_recent_activity", "stalled_in_stage"}


def _coach(ctx: Context, acts: dict[str, Any]) -> list[dict[str, Any]]:
    """Reps whose win rate on a product or from a stage is below their team's."""
    teams = owner_teams(ctx)
    out = []
    for kind, what in (("coaching_product", "{seg} deals"), ("coaching_stage", "the {seg} stage")):
        for key, v in sorted((acts.get(kind) or {}).items()):
            owner, _, segment = key.partition("|")
            if ctx.team is not None and teams.get(owner) != ctx.team:
                continue
            out.append(
                {
                    "kind": "coach",
                    "rep": rep_name(ctx, owner),
                    "what": what.format(seg=segment),
                    "rate": fmt.pct(v.get("rate")),
                    "team_rate": fmt.pct(v.get("team_rate")),
                    "deals": fmt.number(v.get("deals")),
                }
            )
    return out


def _load(ctx: Context, acts: dict[str, Any]) -> list[dict[str, Any]]:
    """Reps above or below their team's capacity in open deals now."""
    deals = ctx.open_deals
    capacity = acts.get("capacity") or {}
    load = deals.groupby(["owner_id", "team"]).size()
    out = []
    for (owner, team), n in zip(load.index.tolist(), load.tolist(), strict=True):
        cap = capacity.get(str(team))
        if not cap:
            continue
        if n > cap.get("high", np.inf):
            item = {"kind": "rebalance", "usual": fmt.number(cap.get("high"))}
        elif n < cap.get("low", -np.inf):
            item = {"kind": "spare", "usual": fmt.number(cap.get("median"))}
        else:
            continue
        out.append({**item, "rep": rep_name(ctx, owner), "open": n})
    return out


def _stalled(ctx: Context) -> list[dict[str, Any]]:
    """Reps with three or more open deals that are stalled or without recent activity."""
    deals = ctx.open_deals
    if "actions" not in deals:
        return []
    stale = deals[
        [
            any(isinstance(a, dict) and a.get("id") in STALE_ACTIONS for a in acts_)
            for acts_ in deals["actions"].map(lambda v: v if isinstance(v, list) else [])
        ]
    ]
    return [
        {
            "kind": "stalled",
            "rep": rep_name(ctx, owner),
            "open": len(g),
            "amount": short(ctx, g["amount"].sum()),
        }
        for owner, g in stale.groupby("owner_id")
        if len(g) >= 3
    ]


def coaching(ctx: Context) -> list[dict[str, Any]]:
    """Suggestions for reps and teams, in the order the report lists them."""
    if ctx.win is None:
        return []
    acts = ctx.win.bundle.explainer.get("actions", {}) or {}
    out = _coach(ctx, acts)
    if len(ctx.open_deals):
        out += _load(ctx, acts) + _stalled(ctx)
    process = acts.get("process") or {}
    if process.get("stage"):
        out.append(
            {
                "kind": "process",
                "stage": fmt.text(process["stage"]),
                "before": fmt.pct(process.get("before")),
                "recent": fmt.pct(process.get("recent")),
            }
        )
    return out

"""Model health, continued: the revenue forecast's backtests and how fresh data and models are."""

from __future__ import annotations

from typing import Any

import pandas as pd

from serving.report import format as fmt
from serving.report.data import Context

COMPONENTS = ("blend", "series", "pipeline", "seasonal_naive")


def forecast_health(ctx: Context) -> dict[str, Any] | None:
    """The forecast model's backtest rows, and the periods where the blend does not beat
    seasonal naive (None: no forecast model)."""
    if ctx.forecast is None:
        return None
    backtest = ctx.forecast.bundle.metadata.get("backtest") or {}
    rows = []
    for freq, comps in backtest.items():
        if not isinstance(comps, dict):
            continue
        for comp in COMPONENTS:
            m = comps.get(comp)
            if isinstance(m, dict):
                rows.append(
                    [
                        fmt.text(freq),
                        fmt.text(comp.replace("_", " ")),
                        fmt.pct(m.get("wape_total"), 1),
                        fmt.number(m.get("mase_total"), 2),
                        fmt.pct(m.get("coverage_80_all")),
                    ]
                )
    flags = []
    for freq, comps in backtest.items():
        blend = (comps or {}).get("blend") or {}
        naive = (comps or {}).get("seasonal_naive") or {}
        b, n = blend.get("wape_total"), naive.get("wape_total")
        if b is not None and n is not None and float(b) > float(n):
            flags.append({"freq": fmt.text(freq), "blend": fmt.pct(b), "naive": fmt.pct(n)})
    return {"version": fmt.text(ctx.forecast.version), "rows": rows, "flags": flags}


def freshness(ctx: Context) -> list[dict[str, Any]]:
    """Rows of what, when and a note (``flag``: the note is a warning pill)."""
    exported = pd.Timestamp(ctx.history.exported_at)
    age = (ctx.as_of - exported).days
    rows: list[dict[str, Any]] = [
        {
            "what": "latest event in the data",
            "when": fmt.date(exported),
            "note": f"{fmt.days(max(age, 0))} before the report date"
            if age >= 0
            else "after the report date (the report reads history up to its date)",
        }
    ]
    if ctx.win is not None:
        trained = ctx.win.bundle.metadata.get("trained_to")
        gap = (ctx.as_of - pd.Timestamp(trained)).days if trained else None
        stale = gap is not None and gap > 90
        rows.append(
            {
                "what": f"win model {fmt.text(ctx.win.version)} trained to",
                "when": fmt.date(trained),
                "note": f"{fmt.days(gap)} old: retrain"
                if stale
                else (f"{fmt.days(gap)} before the report date" if gap is not None else ""),
                "flag": stale,
            }
        )
    if ctx.forecast is not None:
        rows.append(
            {
                "what": f"forecast model {fmt.text(ctx.forecast.version)} trained to",
                "when": fmt.date(ctx.forecast.bundle.metadata.get("trained_to")),
                "note": "",
            }
        )
    rows.append({"what": "scores", "when": fmt.date(ctx.as_of), "note": ctx.scores.source})
    rows.append(
        {"what": "report generated", "when": f"{ctx.generated_at:%d %b %Y %H:%M} UTC", "note": ""}
    )
    return rows

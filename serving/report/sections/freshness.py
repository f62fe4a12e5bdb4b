"""Model health, continued: the revenue forecast's backtests and how fresh data and models are."""

from __future__ import annotations

from typing import Any

import pandas as pd

from serving.report import format as fmt
from serving.report.baselines import backtests_defined, forecast_flags
from serving.report.data import Context
from serving.report.sections.base import flag_views

COMPONENTS = ("blend", "series", "pipeline", "seasonal_naive")
STALE_DATA_DAYS = 30  # data older than this when the report is generated is flagged


def forecast_health(ctx: Context) -> dict[str, Any] | None:
    """The forecast model's backtest rows, and the periods where the blend does not beat
    seasonal naive (None: no forecast model). Without won revenue in the data every backtest
    error is 0 / 0: the figures show as undefined and nothing is compared."""
    if ctx.forecast is None:
        return None
    metadata = ctx.forecast.bundle.metadata
    backtest = metadata.get("backtest") or {}
    defined = backtests_defined(ctx.history)
    rows = []
    for freq, comps in backtest.items():
        if not isinstance(comps, dict):
            continue
        for comp in COMPONENTS:
            m = comps.get(comp)
            if isinstance(m, dict):
                shown = m if defined else {}
                rows.append(
                    [
                        fmt.text(freq),
                        fmt.text(comp.replace("_", " ")),
                        fmt.pct(shown.get("wape_total"), 1),
                        fmt.number(shown.get("mase_total"), 2),
                        fmt.pct(shown.get("coverage_80_all")),
                    ]
                )
    served = metadata.get("served") or {}
    flags = flag_views(list(forecast_flags(backtest, defined, served)))
    return {
        "version": fmt.text(ctx.forecast.version),
        "rows": rows,
        "candidates": candidate_rows(served, defined),
        "flags": flags,
        "undefined": not defined,
    }


def candidate_rows(served: dict[str, Any], defined: bool) -> list[list[Any]]:
    """Per period length, every candidate the backtests compared on the company total, best
    first (the served one marked): for the near steps, then for the steps past them."""
    rows = []
    for freq, choice in served.items():
        parts = [(freq, choice or {})]
        for far in (choice or {}).get("far") or []:
            parts.append((f"{freq}, from step {int(far.get('from_step', 0)) + 1}", far))
        for label, part in parts:
            scores = part.get("candidates") or {}
            champion = part.get("champion")
            ranked = sorted(
                scores.items(), key=lambda kv: (kv[1] or {}).get("wape_total") or float("inf")
            )
            for method, m in ranked:
                shown = (m or {}) if defined else {}
                name = method.replace("_", " ") + (" (served)" if method == champion else "")
                rows.append(
                    [
                        fmt.text(label),
                        fmt.text(name),
                        fmt.pct(shown.get("wape_total"), 1),
                        fmt.pct(shown.get("coverage_80_total")),
                    ]
                )
    return rows


def freshness(ctx: Context) -> list[dict[str, Any]]:
    """Rows of what, when and a note (``flag``: the note is a warning pill)."""
    exported = pd.Timestamp(ctx.history.exported_at)
    age = (ctx.as_of - exported).days
    generated = pd.Timestamp(ctx.generated_at)
    generated = generated.tz_convert(None) if generated.tzinfo else generated
    # How old the data is when the report is read, not only against the report's as-of date:
    # an old export reported "as of" its own last day would otherwise read as fresh.
    stale_days = (generated - exported).days
    note = (
        f"{fmt.days(max(age, 0))} before the report date"
        if age >= 0
        else "after the report date (the report reads history up to its date)"
    )
    stale = stale_days > STALE_DATA_DAYS
    if stale:
        note += (
            f"; {fmt.days(stale_days)} before this report was generated: "
            "import a newer export for current figures"
        )
    rows: list[dict[str, Any]] = [
        {
            "what": "latest event in the data",
            "when": fmt.date(exported),
            "note": note,
            "flag": stale,
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

"""``salesml explain DEAL_ID``: one deal's score, its drivers and the recommended actions."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer

from salesml.cli import console, err, handle_errors, now_utc, print_json, resolve_as_of
from salesml.errors import SalesmlError
from salesml.settings import Settings


class UnknownDealError(SalesmlError):
    """The deal id is not an open deal at the date asked."""


def register(app: typer.Typer) -> None:
    """Add ``explain`` to the salesml CLI."""
    app.command("explain")(explain)


@handle_errors
def explain(
    deal_id: Annotated[str, typer.Argument(help="The deal to explain (its CRM id).")],
    as_of: Annotated[
        datetime | None,
        typer.Option(
            formats=["%Y-%m-%d"],
            help="Explain the deal as it was at this date (default: the latest data).",
        ),
    ] = None,
    alias: Annotated[str, typer.Option(help="Registry alias of the model.")] = "champion",
    top: Annotated[int, typer.Option(min=1, help="How many drivers to show.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Why a deal scores what it does (drivers in probability points) and what to do next."""
    import pandas as pd

    from features.build import build_features
    from features.history import load_history
    from salesml.actions import recommend
    from salesml.explain import contributions
    from salesml.explain import explain as explain_drivers
    from salesml.scoring import load_scorer
    from salesml.warehouse import connect, data_span

    settings = Settings()
    with err.status("loading model and history…"):
        model = load_scorer(alias)
        con = connect(settings.warehouse_path, read_only=True)
        try:
            span = data_span(con, now_utc())
            history = load_history(con, span)
            when = pd.Timestamp(resolve_as_of(span, as_of))
        finally:
            con.close()
        known = history.deals["deal_id"].astype(str)
        if deal_id not in set(known):
            raise UnknownDealError(f"unknown deal id {deal_id!r}: no such deal in the warehouse")
        bundle = model.bundle
        features = build_features(history, when, deal_ids=[deal_id])
        if features.empty:
            raise UnknownDealError(
                f"deal {deal_id!r} is not open on {when:%Y-%m-%d}; only open deals are scored"
            )
        c = contributions(bundle, features)
        drivers = explain_drivers(bundle, features, top=top, contribution=c)[0]
        actions = recommend(bundle, features, probability=c.probability)[0]
    probability = float(c.probability[0])
    shown = sum(d["contribution"] for d in drivers)
    doc: dict[str, Any] = {
        "deal_id": deal_id,
        "as_of": when.isoformat(),
        "model_version": model.version,
        "win_probability": probability,
        "score": int(min(99, max(1, round(probability * 100)))),
        "base_points": c.base,
        "other_points": probability * 100 - c.base - shown,
        "drivers": drivers,
        "actions": actions,
    }
    if as_json:
        print_json(doc)
        return
    _print(doc)


def _print(doc: dict[str, Any]) -> None:
    console.print(
        f"[bold]{doc['deal_id']}[/]: win probability {doc['win_probability']:.1%} (score "
        f"{doc['score']}) as of {doc['as_of'][:10]}, model version {doc['model_version']}",
        highlight=False,
    )
    console.print(f"\nDrivers (a typical deal: {doc['base_points']:.1f} %):", highlight=False)
    for d in doc["drivers"]:
        console.print(f"  {d['concept']:<18} {d['text']}", highlight=False, soft_wrap=True)
    if abs(doc["other_points"]) >= 0.05:
        sign = "+" if doc["other_points"] >= 0 else "−"
        console.print(
            f"  {'Other drivers':<18} {sign}{abs(doc['other_points']):.1f} pts", highlight=False
        )
    console.print("\nRecommended actions:", highlight=False)
    if not doc["actions"]:
        console.print("  none: nothing in the catalogue applies", highlight=False)
    for a in doc["actions"]:
        impact = a["expected_impact"]
        extra = ""
        if impact is not None:
            extra = f" [{impact['win_probability_points']:+.1f} pts"
            if impact["revenue"] is not None:
                extra += f", {impact['revenue']:+,.0f} expected revenue"
            extra += "; model estimate]"
        console.print(
            f"  - {a['action']}{extra}\n    why: {a['reason']}", highlight=False, soft_wrap=True
        )

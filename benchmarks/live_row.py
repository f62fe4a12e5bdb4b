"""Micro-benchmark: the live one-deal feature row (what-if and new deal) against its peers.

    python -m benchmarks.live_row --home .salesml/demo [--deals 500] [--repeat 3]

Reads a workspace's warehouse, builds the one-deal context at the data's as_of once
(``features.single.deal_context``, timed), then for up to ``--deals`` open deals:

* ``whatif_row``: ``known_deal`` + an ``amount`` override as a stage row at as_of (what
  ``serving.api.whatif`` makes of ``overrides.amount``) + ``deal_row`` (numpy row, no frame);
* ``whatif_frame``: the same and ``FeatureRow.frame()`` (the row as ``build_features`` gives it);
* ``new_row`` / ``new_frame``: a new deal (plain fields: owner, product, stage, amount) likewise;
* ``frames_in``: ``deal_features`` called with frames (the entry the API used before);
* peer ``build_features``: the batch path on the history with the deal changed, on a few deals.

Every what-if and new-deal row of the first deals is checked against ``build_features`` on the
changed history (exact). Prints one JSON object: medians and p90 in ms per call, and ratios
against the peers measured in the same run. Quote medians and ratios (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.build import build_features, open_deal_ids
from features.history import History, load_history
from features.single import DealContext, OwnRows, deal_context, deal_row, known_deal
from features.spec import feature_spec

CHECKED = 20  # deals compared with build_features (and timed as its peer)


def _whatif(context: DealContext, deal_id: str, amount: float) -> tuple[dict[str, Any], OwnRows]:
    """``known_deal`` with ``overrides.amount``: a stage row at as_of carrying the last row's
    stage and close date (replacing a row already at as_of)."""
    fields, own = known_deal(context, deal_id)
    now = int(context.dates[0])
    seen = np.flatnonzero(own.changed_at <= now)
    last = int(seen[np.argmax(own.changed_at[seen])]) if len(seen) else -1
    stage = own.stage[last] if last >= 0 else None
    ecd = int(own.expected_close[last]) if last >= 0 else np.iinfo(np.int64).min
    drop = None
    if last >= 0 and own.rows is not None and own.changed_at[last] == now:
        drop = int(own.rows[last])
    return fields, own.with_stage_row(str(stage or "Prospecting"), now, amount, ecd, drop)


def _new_deal(
    context: DealContext, i: int, owners: list[str], products: list[str], stages: list[str]
) -> tuple[dict[str, Any], OwnRows]:
    now = int(context.dates[0])
    fields: dict[str, Any] = {c: None for c in context.columns}
    created = now - (i % 90) * 86_400_000_000
    fields |= {
        "deal_id": f"BENCH-NEW-{i:05d}",
        "status": "open",
        "created_at": created,
        "closed_at": np.iinfo(np.int64).min,
        "expected_close_date": np.iinfo(np.int64).min,
        "owner_id": owners[i % len(owners)],
        "product": products[i % len(products)],
        "amount": 5000.0 + 37 * i,
    }
    empty = np.zeros(0, np.int64)
    own = OwnRows([], empty, np.zeros(0), empty, empty, np.zeros(0, bool))
    stage = stages[i % len(stages)]
    return fields, own.with_stage_row(stage, created, 5000.0 + 37 * i, now + 86_400_000_000, None)


def _timed(fn: Callable[[int], object], n: int, repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        for i in range(n):
            start = time.perf_counter()
            fn(i)
            out.append(time.perf_counter() - start)
    return out


def _summary(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1e3
    return {
        "median_ms": round(float(np.median(ms)), 4),
        "p90_ms": round(float(np.quantile(ms, 0.9)), 4),
        "calls": len(ms),
    }


def _changed_history(history: History, fields: dict[str, Any], own: OwnRows) -> History:
    """``history`` with the deal's row and stage rows replaced (or added) as given."""
    deals = history.deals
    deal_id = fields["deal_id"]
    row = {c: fields.get(c) for c in deals.columns}
    for c in ("created_at", "closed_at", "expected_close_date"):
        row[c] = np.array([row[c]], np.int64).view("datetime64[us]")[0]
    one = pd.DataFrame([row], columns=deals.columns).astype(deals.dtypes.to_dict())
    deals = pd.concat([deals[deals["deal_id"] != deal_id], one], ignore_index=True)
    sh = history.stage_history
    mine = pd.DataFrame(
        {
            "deal_id": [deal_id] * len(own.stage),
            "stage": own.stage,
            "changed_at": own.changed_at.view("datetime64[us]"),
            "amount": own.amount,
            "expected_close_date": own.expected_close.view("datetime64[us]"),
        }
    ).astype(sh.dtypes.to_dict())
    stage_history = pd.concat([sh[sh["deal_id"] != deal_id], mine], ignore_index=True)
    return replace(history, deals=deals, stage_history=stage_history)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--deals", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from salesml.warehouse import connect

    con = connect(args.home.resolve() / "warehouse.duckdb", read_only=True)
    try:
        history = load_history(con)
    finally:
        con.close()
    as_of = history.exported_at
    spec = feature_spec(history)
    start = time.perf_counter()
    context = deal_context(history, as_of, spec)
    built = time.perf_counter() - start
    start = time.perf_counter()
    _ = context.columns, context.activity_index, context.base_vocab, context.layout
    indexed = time.perf_counter() - start
    ids = [str(d) for d in open_deal_ids(history, as_of)][: args.deals]
    owners = sorted(history.deals["owner_id"].dropna().astype(str).unique().tolist())
    products = sorted(history.deals["product"].dropna().astype(str).unique().tolist())
    stages = sorted(history.stage_history["stage"].dropna().astype(str).unique().tolist())
    whatifs = [_whatif(context, d, 10_000.0 + i) for i, d in enumerate(ids)]
    news = [_new_deal(context, i, owners, products, stages) for i in range(len(ids))]

    # Exactness first: the rows are build_features' on the changed history.
    peer: list[float] = []
    for fields, own in [*whatifs[: CHECKED // 2], *news[: CHECKED // 2]]:
        changed = _changed_history(history, fields, own)
        t0 = time.perf_counter()
        expected = build_features(changed, as_of, deal_ids=[fields["deal_id"]], features=spec)
        peer.append(time.perf_counter() - t0)
        row = deal_row(context, dict(fields), own)
        assert row is not None, fields["deal_id"]
        pd.testing.assert_frame_equal(row.frame(), expected, check_exact=True)

    n, repeat = len(ids), args.repeat
    from features.single import deal_features

    frames = []
    for fields, own in whatifs[:n]:
        changed = _changed_history(history, fields, own)
        deal = changed.deals.iloc[[-1]]
        sh = changed.stage_history
        acts = history.activities[history.activities["deal_id"] == fields["deal_id"]]
        frames.append((deal, sh[sh["deal_id"] == fields["deal_id"]], acts))
        if len(frames) >= 100:
            break
    results = {
        # known_deal + the override + deal_row: all of a what-if's feature work
        "whatif_row": _timed(
            lambda i: deal_row(context, *_whatif(context, ids[i], 10_000.0 + i)), n, repeat
        ),
        "whatif_frame": _timed(
            lambda i: _frame(deal_row(context, *_whatif(context, ids[i], 10_000.0 + i))),
            n,
            repeat,
        ),
        "new_row": _timed(lambda i: deal_row(context, news[i][0], news[i][1]), n, repeat),
        "new_frame": _timed(lambda i: _frame(deal_row(context, *news[i])), n, repeat),
        "frames_in": _timed(lambda i: deal_features(context, *frames[i]), len(frames), repeat),
    }
    out: dict[str, Any] = {
        "deals": n,
        "history": {k: len(getattr(history, k)) for k in ("deals", "stage_history", "activities")},
        "context_build_s": round(built, 3),
        "row_index_build_s": round(indexed, 3),
        "exact_checked": CHECKED,
        "peer_build_features": _summary(peer),
    }
    out |= {name: _summary(times) for name, times in results.items()}
    peer_median = out["peer_build_features"]["median_ms"]
    out["ratios"] = {
        f"{name}_vs_build_features": round(out[name]["median_ms"] / peer_median, 5)
        for name in results
    } | {
        "whatif_frame_vs_frames_in": round(
            out["whatif_frame"]["median_ms"] / out["frames_in"]["median_ms"], 3
        )
    }
    print(json.dumps(out, indent=2))
    return out


def _frame(row: Any) -> Any:
    return row.frame()


if __name__ == "__main__":
    main()

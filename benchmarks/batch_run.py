"""The nightly batch through ``serving.batch.run_batch``: history → features → scores → run.

``benchmarks/batch.py`` times the scoring of ready-made feature rows; this one times what
``salesml score`` runs, with the memory of the parent and its workers sampled together
(``TreePeak``): finding the open deals, their input hashes, building their features, scoring
(drivers, actions, timing) and writing the score run, then an incremental night
(``changed=True``) after 10 % of the open deals got one new activity.

A synthetic history never has hundreds of thousands of deals open at once, so the open deals
of one (``--deals``, seed 7) are copied ``k`` times under new ids (``<id>~<k>``) with their
stage history and activities, until about ``--open`` deals are open; closed deals stay as they
are. The owners' pipelines are then far larger than real ones: the figures are for time and
memory only. The champion (win + timing) is trained on the unreplicated history.

The data set-up (synthesis, import, training, replication) is done once per ``--cache``
folder and reused. ``--load`` reads the history the way the code under test does
(``features.history.load_history``).

Usage: ``python -m benchmarks.batch_run --open 150000 [--deals 20000] [--cache DIR]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.batch import TreePeak, _peak_bytes


def _prepare(cache: Path, deals: int) -> dict[str, str]:
    home = cache / "home"
    env = os.environ | {
        "SALESML_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    if not (cache / "ready").exists():
        cache.mkdir(parents=True, exist_ok=True)
        cli = [str(Path(sys.executable).parent / "salesml")]
        for args in (
            ["synth", "--deals", str(deals), "--seed", "7", "--out", str(cache / "data")],
            ["import", str(cache / "data"), "--format", "canonical"],
            ["train", "--models", "win,timing"],
        ):
            subprocess.run([*cli, *args], check=True, env=env, cwd=cache, stdout=subprocess.DEVNULL)
        (cache / "ready").touch()
    return env


def _replicated(history: Any, copies: int) -> Any:
    """``history`` with each deal open at export copied ``copies`` times (new ids)."""
    from dataclasses import replace

    deals = history.deals
    is_open = deals["closed_at"].isna() | (deals["closed_at"] > history.exported_at)
    open_ids = pd.Index(deals.loc[is_open, "deal_id"].astype(str))

    def copy(table: pd.DataFrame) -> pd.DataFrame:
        mine = table[table["deal_id"].astype(str).isin(open_ids)]
        parts = [table]
        for k in range(1, copies):
            part = mine.copy()
            part["deal_id"] = part["deal_id"].astype(str) + f"~{k}"
            parts.append(part.astype(table.dtypes.to_dict()))
        return pd.concat(parts, ignore_index=True)

    return replace(
        history,
        deals=copy(deals),
        stage_history=copy(history.stage_history),
        activities=copy(history.activities),
    )


def _night(history: Any, share: float) -> Any:
    """One new activity at export for ``share`` of the open deals (seeded)."""
    from dataclasses import replace

    from features.build import open_deal_ids

    ids = open_deal_ids(history, history.exported_at)
    chosen = ids[np.random.default_rng(0).random(len(ids)) < share]
    owner = history.deals.set_index("deal_id")["owner_id"]
    extra = pd.DataFrame(
        {
            "deal_id": chosen,
            "occurred_at": history.exported_at,
            "type": "call",
            "owner_id": owner.reindex(chosen).to_numpy(),
        }
    )
    activities = pd.concat(
        [history.activities, extra.astype(history.activities.dtypes.to_dict())],
        ignore_index=True,
    )
    return replace(history, activities=activities), len(chosen)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--open", type=int, default=150_000, help="open deals to reach")
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument("--changed", type=float, default=0.10)
    parser.add_argument("--cache", type=Path, default=Path(".salesml/bench-batch-run"))
    parser.add_argument("--no-night", action="store_true", help="only the full run")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env = _prepare(args.cache.resolve(), args.deals)
    os.environ.update(env)
    from features.build import open_deal_ids
    from features.history import load_history
    from salesml.scoring import load_scorer
    from salesml.warehouse import connect
    from serving.batch import batch_workers, run_batch
    from serving.runs import RunStore

    warehouse = Path(env["SALESML_HOME"]) / "warehouse.duckdb"
    model = load_scorer("champion")
    out: dict[str, Any] = {}
    with TreePeak() as full_peak:
        start = time.perf_counter()
        con = connect(warehouse, read_only=True)
        try:
            base = load_history(con)
        finally:
            con.close()
        per_copy = len(open_deal_ids(base, base.exported_at))
        copies = max(1, round(args.open / max(per_copy, 1)))
        history = _replicated(base, copies)
        del base
        out["setup_seconds"] = time.perf_counter() - start
        store = RunStore(Path(env["SALESML_HOME"]) / f"runs-{os.getpid()}")
        start = time.perf_counter()
        full = run_batch(history, model, history.exported_at, store, run_id="full")
        out["full_seconds"] = time.perf_counter() - start
    out |= {"open_deals": full.rescored, "copies": copies, "full_tree_peak_bytes": full_peak.bytes}
    if not args.no_night:
        history, changed = _night(history, args.changed)
        with TreePeak() as night_peak:
            start = time.perf_counter()
            night = run_batch(
                history, model, history.exported_at, store, run_id="night", changed=True
            )
            out["incremental_seconds"] = time.perf_counter() - start
        out |= {
            "incremental_changed": changed,
            "incremental_rescored": night.rescored,
            "incremental_copied": night.copied,
            "incremental_tree_peak_bytes": night_peak.bytes,
        }
    out |= {"peak_bytes": _peak_bytes(), "workers": batch_workers(), "load_avg": os.getloadavg()[0]}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

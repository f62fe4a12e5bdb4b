"""The nightly batch at scale: a full score run of N open deals, then an incremental night.

A synthetic history never has a million deals open at once, so the open deals are the weekly
snapshots of a large history (each (deal, week) row stands for one open deal, with its own id):
the same feature rows the batch scores. The champion (win + timing model, trained on a smaller
history of the same generator) scores them with drivers and actions through
``serving.batch.score_in_chunks`` (``score_chunk``, the function both engines run, over slices
of 50,000 deals, in one worker process per core) as the local engine does — and the rows are
written as a score run (``serving.runs.RunStore``). The incremental night then changes 10 % of
the deals' inputs (here: their hashes, which stand for ``serving.changes.input_hashes``), and
runs what ``salesml score --changed`` runs: ``plan_incremental`` (compare with the latest run,
read the unchanged rows), scoring of the changed deals, ``combine_rows`` and the write. Feature
building is timed by the snapshots benchmark.

Usage: ``python -m benchmarks.batch --rows 1000000 [--deals 130000] [--train-deals 20000]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _peak_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _worker_peak_bytes() -> int:
    """The largest peak of the scoring worker processes (and other children) so far."""
    return int(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) * 1024


def _workspace(root: Path, deals: int) -> dict[str, str]:
    home = root / "home"
    root.mkdir(parents=True, exist_ok=True)
    env = os.environ | {
        "SALESML_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    cli = [str(Path(sys.executable).parent / "salesml")]
    for args in (
        ["synth", "--deals", str(deals), "--seed", "7", "--out", str(root / "data")],
        ["import", str(root / "data"), "--format", "canonical"],
        ["train", "--models", "win,timing"],
    ):
        subprocess.run([*cli, *args], check=True, env=env, cwd=root, stdout=subprocess.DEVNULL)
    return env


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--deals", type=int, default=130_000)
    parser.add_argument("--train-deals", type=int, default=20_000)
    parser.add_argument("--changed", type=float, default=0.10)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    with tempfile.TemporaryDirectory(prefix="salesml-batch-") as tmp:
        root = Path(tmp)
        env = _workspace(root / "train", args.train_deals)
        os.environ.update(env)
        from features.build import build_snapshots, weekly_as_of_dates
        from features.history import load_history
        from salesml.importers import read_export, run_import
        from salesml.scoring import load_scorer
        from salesml.synth import generate
        from salesml.warehouse import connect
        from serving.batch import (
            batch_workers,
            combine_rows,
            plan_incremental,
            score_in_chunks,
            stored_json_columns,
        )
        from serving.runs import RunStore, row_hashes, write_frame_parts

        generate(args.deals, 3, root / "big", end_date=pd.Timestamp("2026-06-30").date())
        run_import(read_export(root / "big", "canonical"), root / "big.duckdb", root / "rej")
        con = connect(root / "big.duckdb", read_only=True)
        try:
            history = load_history(con)
        finally:
            con.close()
        snaps = build_snapshots(history, weekly_as_of_dates(history))
        rows = snaps.iloc[: args.rows].copy()
        rows.index = pd.Index(
            rows["deal_id"].astype(str) + "@" + rows["as_of"].dt.strftime("%Y%m%d"), name="deal_id"
        )
        features = rows.drop(columns=["deal_id", "as_of"])
        model = load_scorer("champion")
        as_of = history.exported_at
        store = RunStore(root / "runs-home")
        json_columns = stored_json_columns(features, model, as_of)

        def write(run_id: str, rows: pd.DataFrame, rescored: int, copied: int = 0) -> None:
            store.write(
                run_id,
                lambda folder: write_frame_parts(rows, folder),
                as_of=as_of,
                model_version=model.version,
                engine="local",
                expected_deals=pd.Index(features.index),
                rescored=rescored,
                copied=copied,
                json_columns=json_columns,
            )

        start = time.perf_counter()
        hashes = row_hashes(features, model.version)
        scored = score_in_chunks(features, model, as_of, hashes)
        write("full", scored, len(scored))
        full_seconds = time.perf_counter() - start

        rng = np.random.default_rng(0)
        change = rng.random(len(features)) < args.changed
        night = features.copy()
        night.loc[change, "activities_7d"] = night.loc[change, "activities_7d"].fillna(0) + 1
        start = time.perf_counter()
        new_hashes = row_hashes(night, model.version)  # stands for the inputs' hashes
        to_score, copied = plan_incremental(store, store.latest(), new_hashes, as_of)  # type: ignore[arg-type]
        fresh = score_in_chunks(night.loc[to_score], model, as_of, new_hashes)
        write("night", combine_rows(fresh, copied), len(fresh), len(copied))
        night_seconds = time.perf_counter() - start
        out = {
            "rows": len(features),
            "full_seconds": full_seconds,
            "incremental_seconds": night_seconds,
            "incremental_rescored": len(fresh),
            "incremental_copied": len(copied),
            "peak_bytes": _peak_bytes(),
            "worker_peak_bytes": _worker_peak_bytes(),
            "workers": batch_workers(),
            "load_avg": os.getloadavg()[0],
        }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

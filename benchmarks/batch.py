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
import contextlib
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


class TreePeak:
    """The largest sum of resident memory of this process and all its children, sampled every
    ``interval`` seconds while running (``with TreePeak() as peak: …; peak.bytes``)."""

    def __init__(self, interval: float = 0.1) -> None:
        import threading

        self.interval, self.bytes = interval, 0
        self.parent_bytes, self.child_bytes = 0, 0  # this process's peak; the largest child's
        # Resident memory counts the pages of shared libraries in every process that maps
        # them: the proportional set size (each shared page split among its users) is the
        # tree's real footprint; ``bytes`` (the RSS sum) overstates it.
        self.pss_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            total = pss = 0
            for proc in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    full = proc.memory_full_info()
                    rss = full.rss
                    total += rss
                    pss += getattr(full, "pss", rss)
                    if proc is me:
                        self.parent_bytes = max(self.parent_bytes, rss)
                    else:
                        self.child_bytes = max(self.child_bytes, rss)
            self.bytes = max(self.bytes, total)
            self.pss_bytes = max(self.pss_bytes, pss)
            self._stop.wait(self.interval)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


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
        from serving.batch import batch_workers, plan_copies, score_stream, stored_json_columns
        from serving.runs import PartsWriter, RunStore, row_hashes

        generate(args.deals, 3, root / "big", end_date=pd.Timestamp("2026-06-30").date())
        run_import(read_export(root / "big", "canonical"), root / "big.duckdb", root / "rej")
        con = connect(root / "big.duckdb", read_only=True)
        try:
            history = load_history(con)
        finally:
            con.close()
        snaps = build_snapshots(history, weekly_as_of_dates(history))
        rows = snaps.iloc[: args.rows].copy()
        as_of = history.exported_at
        del snaps, history  # the batch holds the features of the open deals, not the history
        rows.index = pd.Index(
            rows["deal_id"].astype(str) + "@" + rows["as_of"].dt.strftime("%Y%m%d"), name="deal_id"
        )
        features = rows.drop(columns=["deal_id", "as_of"])
        model = load_scorer("champion")
        store = RunStore(root / "runs-home")
        json_columns = stored_json_columns(features, model, as_of)

        def write(run_id: str, parts: Any, previous: Any = None, keep: Any = None) -> int:
            """What ``run_batch`` does: stream the scored slices, then the copied rows, into
            the run's parts (nothing accumulates)."""
            scored = 0

            def write_parts(folder: Path) -> None:
                nonlocal scored
                writer = PartsWriter(folder)
                for part in parts:
                    writer.write(part)
                    scored += len(part)
                if previous is not None:
                    for table in store.iter_deals(previous, keep):
                        writer.write(table)
                writer.close()

            store.write(
                run_id,
                write_parts,
                as_of=as_of,
                model_version=model.version,
                engine="local",
                expected_deals=pd.Index(features.index),
                json_columns=json_columns,
            )
            return scored

        with TreePeak() as full_peak:
            start = time.perf_counter()
            hashes = row_hashes(features, model.version)
            write("full", score_stream(features, model, as_of, hashes))
            full_seconds = time.perf_counter() - start

        rng = np.random.default_rng(0)
        change = rng.random(len(features)) < args.changed
        night = features
        night.loc[change, "activities_7d"] = night.loc[change, "activities_7d"].fillna(0) + 1
        with TreePeak() as night_peak:
            start = time.perf_counter()
            new_hashes = row_hashes(night, model.version)  # stands for the inputs' hashes
            previous = store.latest()
            keep = plan_copies(store, previous, new_hashes, as_of)  # type: ignore[arg-type]
            fresh = night.loc[~night.index.isin(keep)]
            parts = score_stream(fresh, model, as_of, new_hashes)
            rescored = write("night", parts, previous, keep)
            night_seconds = time.perf_counter() - start
        out = {
            "rows": len(features),
            "full_seconds": full_seconds,
            "incremental_seconds": night_seconds,
            "incremental_rescored": rescored,
            "incremental_copied": len(keep),
            # the parent's peak over the whole benchmark (data set-up included), and the
            # batch's own: the parent and every worker together, sampled while each run ran
            "peak_bytes": _peak_bytes(),
            "full_tree_peak_bytes": full_peak.bytes,
            "incremental_tree_peak_bytes": night_peak.bytes,
            "workers": batch_workers(),
            "load_avg": os.getloadavg()[0],
        }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

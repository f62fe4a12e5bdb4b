"""Drivers for N deals: ``salesml.explain.treeshap`` against ``shap.TreeExplainer``.

Trains a win model on a synthetic history, tiles its holdout snapshots to ``--rows`` rows and
times, on the same model and rows: ours (tables built once per model + the kernel, both
counted) and the peer, ``shap.TreeExplainer(booster).shap_values`` (explainer construction
counted). The peer can be timed on a subsample (``--peer-rows``) and its per-row throughput
extrapolated (``peer_extrapolated``); values are compared on the rows both computed.

Usage: ``python -m benchmarks.drivers --rows 1000000 [--peer-rows 20000] [--deals 8000]``.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np


def _peak_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--peer-rows", type=int, default=20_000)
    parser.add_argument("--deals", type=int, default=8_000)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)

    import shap

    from features.history import load_history
    from salesml.explain import treeshap
    from salesml.importers import read_export, run_import
    from salesml.synth import generate
    from salesml.warehouse import connect
    from training.win.fit import train_win_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(args.deals, args.seed, root / "data", end_date=date(2026, 6, 30))
        run_import(read_export(root / "data", "canonical"), root / "w.duckdb", root / "rejects")
        con = connect(root / "w.duckdb", read_only=True)
        try:
            history = load_history(con)
        finally:
            con.close()
    result = train_win_model(history, seed=args.seed)
    bundle = result.bundle
    assert bundle.booster is not None, "the synthetic model has signal"
    rows = result.split.holdout
    base = bundle.model_matrix(rows)
    x = np.ascontiguousarray(np.resize(base, (args.rows, base.shape[1])))  # tiled rows
    del result, history

    treeshap.shap_values(treeshap.from_booster(bundle.booster), x[:10])  # compile the kernel
    rss_before = _peak_bytes()
    start = time.perf_counter()
    ensemble = treeshap.from_booster(bundle.booster)  # the tables, timed
    tables = time.perf_counter() - start
    ours = treeshap.shap_values(ensemble, x)
    ours_seconds = time.perf_counter() - start
    ours_peak = _peak_bytes()

    n_peer = min(args.rows, args.peer_rows)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.TreeExplainer(bundle.booster)
        theirs = np.asarray(explainer.shap_values(x[:n_peer]), dtype=np.float64)
    peer_measured = time.perf_counter() - start
    peer_seconds = peer_measured * args.rows / n_peer
    diff = float(np.abs(ours[:n_peer, :-1] - theirs).max())
    diff = max(diff, abs(float(ours[0, -1]) - float(np.ravel(explainer.expected_value)[0])))
    out = {
        "rows": args.rows,
        "features": int(x.shape[1]),
        "trees": int(bundle.booster.num_trees()),
        "ours_seconds": ours_seconds,
        "ours_table_seconds": tables,
        "ours_table_bytes": ensemble.table_bytes,
        "ours_peak_bytes": ours_peak,
        "ours_peak_before_bytes": rss_before,
        "peer": "shap.TreeExplainer(booster).shap_values (LightGBM pred_contrib)",
        "peer_seconds": peer_seconds,
        "peer_rows_measured": n_peer,
        "peer_measured_seconds": peer_measured,
        "peer_extrapolated": n_peer < args.rows,
        "ratio": peer_seconds / ours_seconds,
        "max_abs_diff": diff,
        "compared_rows": n_peer,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "load_avg": os.getloadavg()[0],
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

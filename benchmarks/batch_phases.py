"""Where the nightly batch's time goes, phase by phase, in one process.

``benchmarks/batch_run.py`` times ``run_batch`` as a whole (with its workers); this script runs
its steps one at a time on the same replicated warehouse, with a worker's thread share (one
thread a process on two cores): load the history, find the open deals, hash their inputs,
build every feature slice (and those of a ``--night`` share, the rest skipped), then score
``--rows`` deals in ``CHUNK_ROWS`` chunks, split into the model matrix, predict (margin and
calibration), the contributions (TreeSHAP), the drivers (ranking and text), the actions
(rules and their what-ifs), their JSON, the timing model, the stored form (``to_storable``)
and the Parquet write. Seconds per phase, and for scoring microseconds per row (use chunks
of ``CHUNK_ROWS``: below ``NATIVE_BELOW`` rows the contributions take another engine).

Usage: ``python -m benchmarks.batch_phases --warehouse W [--rows 40000] [--threads 1]``
(a warehouse made by ``benchmarks.batch_run``; the champion from ``MLFLOW_TRACKING_URI``).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _scoring_phases(features: pd.DataFrame, model: Any, as_of: pd.Timestamp) -> dict[str, float]:
    """``score_chunk``'s work on ``features``, step by step as ``Scorer._columns``,
    ``explain_arrays`` and ``score_columns`` do it (seconds per step)."""
    from salesml.actions.engine import recommend
    from salesml.explain.drivers import contributions, explain, log_odds_contributions, to_json
    from salesml.scoring.scorer import EXPLAIN_INFO, score_features
    from serving.runs import to_storable

    seconds: dict[str, float] = {}

    def timed(name: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        seconds[name] = time.perf_counter() - start
        return out

    bundle = model.bundle
    matrix = timed("model matrix", bundle.model_matrix, features)
    margin = timed("predict", bundle.raw_score, features, matrix)
    probability = bundle.calibrator.predict(margin)
    inputs = set(bundle.features)
    read = [i for i, c in enumerate(features.columns) if c in inputs or c in EXPLAIN_INFO]
    explained = features.take(read, axis=1)
    timed("treeshap", log_odds_contributions, bundle, explained, "auto", matrix)
    c = timed(
        "contributions (treeshap + scaling)",
        contributions,
        bundle,
        explained,
        matrix=matrix,
        margin=margin,
    )
    drivers = timed("drivers (rank + text)", explain, bundle, explained, top=5, contribution=c)
    actions = timed(
        "actions (rules + what-ifs)",
        recommend,
        bundle,
        explained,
        probability=c.probability,
        matrix=matrix,
    )
    timed("json (drivers + actions)", lambda: (to_json(drivers), to_json(actions)))
    if model.timing is not None:
        amount = pd.to_numeric(features["amount"], errors="coerce").to_numpy(dtype=float)
        timed(
            "timing",
            model.timing.predict_columns,
            features,
            as_of,
            probability,
            amount,
            (bundle, matrix),
        )
    rows = timed("score_features (all of the above)", score_features, features, model, as_of)
    stored, _ = timed("to_storable", to_storable, rows)
    return seconds | {"_stored": stored}  # type: ignore[dict-item]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--rows", type=int, default=40_000, help="deals to score, in chunks")
    parser.add_argument("--threads", type=int, default=1, help="numeric threads (a worker's)")
    parser.add_argument("--night", type=float, default=0.03, help="share a night rebuilds")
    args = parser.parse_args(argv)
    import pyarrow as pa
    import pyarrow.parquet as pq
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    from benchmarks.batch_run import _load
    from features.build import build_feature_slices, open_deal_ids
    from salesml.explain import treeshap
    from salesml.scoring import load_scorer
    from serving.batch import CHUNK_ROWS, FEATURE_ROWS
    from serving.changes import input_hash_codes
    from serving.chunk import model_version, priced

    threadpool_limits(limits=args.threads)
    treeshap.limit_threads(args.threads)
    out: dict[str, Any] = {}
    start = time.perf_counter()
    history = _load(args.warehouse)
    out["load history"] = time.perf_counter() - start
    model = load_scorer("champion")
    as_of = history.exported_at
    model = priced(model, history)
    start = time.perf_counter()
    open_ids = open_deal_ids(history, as_of)
    out["open deals"] = time.perf_counter() - start
    start = time.perf_counter()
    input_hash_codes(history, open_ids, as_of, model_version(model))
    out["input hashes"] = time.perf_counter() - start
    start = time.perf_counter()
    first: pd.DataFrame | None = None
    for frame in build_feature_slices(history, as_of, FEATURE_ROWS):
        if first is None:
            first = frame
    out["features (all slices)"] = time.perf_counter() - start
    # An incremental night's features: every deal but a seeded share is skipped.
    skip = open_ids[np.random.default_rng(0).random(len(open_ids)) >= args.night]
    start = time.perf_counter()
    night_rows = sum(len(f) for f in build_feature_slices(history, as_of, FEATURE_ROWS, skip=skip))
    out["features (night: skipped deals left out)"] = time.perf_counter() - start
    assert first is not None
    first.index = first.index.astype(str)
    scoring: dict[str, float] = defaultdict(float)
    rows = min(args.rows, len(first))
    with tempfile.TemporaryDirectory() as tmp:
        writer: pq.ParquetWriter | None = None
        for begin in range(0, rows, CHUNK_ROWS):
            part = first.iloc[begin : min(begin + CHUNK_ROWS, rows)]
            phases = _scoring_phases(part, model, as_of)
            stored = phases.pop("_stored")
            for name, value in phases.items():
                scoring[name] += value
            t = time.perf_counter()
            table = pa.Table.from_pandas(stored, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(Path(tmp) / "part.parquet", table.schema)
            writer.write_table(table)
            scoring["parquet write"] += time.perf_counter() - t
        if writer is not None:
            writer.close()
    out = {k: round(v, 2) for k, v in out.items()}
    out["open_deals"] = len(open_ids)
    out["night_rows"] = night_rows
    out["scored_rows"] = rows
    out["scoring_us_per_row"] = {k: round(v / rows * 1e6, 1) for k, v in scoring.items()}
    out["threads"] = args.threads
    out["load_avg"] = round(float(np.round(__import__("os").getloadavg()[0], 1)), 1)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

"""Time snapshot building on synthetic data (not a test; run it under ``/usr/bin/time -v``).

    python -m tests.features.bench_snapshots prepare --deals 150000 --dir /tmp/bench150k
    /usr/bin/time -v python -m tests.features.bench_snapshots snapshots --dir /tmp/bench150k
    /usr/bin/time -v python -m tests.features.bench_snapshots score --dir /tmp/bench150k

``prepare`` generates and imports (untimed); ``snapshots`` loads the history and builds weekly
snapshots; ``score`` builds features of every deal open at the export (the nightly scoring).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import date
from pathlib import Path

from features.build import build_features, build_snapshots, weekly_as_of_dates
from features.history import load_history
from salesml.importers import read_export, run_import
from salesml.synth import generate
from salesml.warehouse import connect

END = date(2025, 6, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("step", choices=["prepare", "snapshots", "score"])
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--deals", type=int, default=150_000)
    args = parser.parse_args()
    warehouse = args.dir / "warehouse.duckdb"
    if args.step == "prepare":
        generate(args.deals, 7, args.dir / "export", end_date=END)
        run_import(read_export(args.dir / "export", "canonical"), warehouse, args.dir / "rejects")
        return
    started = time.perf_counter()
    con = connect(warehouse, read_only=True)
    history = load_history(con)
    loaded = time.perf_counter()
    if args.step == "snapshots":
        dates = weekly_as_of_dates(history)
        frame = build_snapshots(history, dates)
        extra = {"dates": len(dates)}
    else:
        frame = build_features(history, history.exported_at)
        extra = {}
    done = time.perf_counter()
    report = {
        "step": args.step,
        "deals": len(history.deals),
        "rows": len(frame),
        "columns": frame.shape[1],
        "load_seconds": round(loaded - started, 2),
        "build_seconds": round(done - loaded, 2),
        "total_seconds": round(done - started, 2),
        **extra,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""One benchmark step per process (so peak memory is that step's alone).

``python -m benchmarks.steps STEP ARGS...``; see ``benchmarks.run`` for the table.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import date
from pathlib import Path

import pyarrow as pa

from features.history import History

END_DATE = date(2026, 11, 1)  # fixed, so every run generates the same history


def generate(n: int, out: Path) -> None:
    from salesml.synth import generate as synth

    synth(n, seed=1, out_dir=out, end_date=END_DATE)


def generate_pandas(n: int, out: Path) -> None:
    """The same simulation, with every table built and written through plain pandas."""
    import importlib

    import pandas as pd

    gen = importlib.import_module("salesml.synth.generate")  # the module, not the function

    def pandas_writer(table: pa.Table, path: Path, fmt: str) -> None:
        frame = pd.DataFrame(
            {
                name: (
                    column.to_pandas().astype(object)
                    if pa.types.is_dictionary(column.type) or pa.types.is_string(column.type)
                    else column.to_pandas()
                )
                for name, column in zip(table.column_names, table.columns, strict=True)
            }
        )
        frame.to_parquet(path, index=False)

    gen.__dict__["write_table"] = pandas_writer  # the peer swaps only the writer
    gen.generate(n, seed=1, out_dir=out, end_date=END_DATE)


def import_ours(data: Path, warehouse: Path) -> None:
    from salesml.importers import read_export, run_import

    run_import(read_export(data, "canonical"), warehouse, warehouse.parent / "rejects")


def import_pandas(data: Path, warehouse: Path) -> None:
    from benchmarks.reference_import import import_folder

    import_folder(data, warehouse)


def kpis_ours(warehouse: Path) -> None:
    from salesml.kpis import compute_kpis
    from salesml.warehouse import connect

    con = connect(warehouse, read_only=True)
    compute_kpis(con, by="team", period="quarter")


def kpis_pandas(warehouse: Path) -> None:
    from salesml.warehouse import connect
    from tests.reference.kpis import reference_kpis

    con = connect(warehouse, read_only=True)
    reference_kpis(con, by="team", period="quarter")


def ml_data(n: int, out: Path) -> None:
    """Generate and import ``n`` deals into ``out/warehouse.duckdb`` (set-up, not timed)."""
    from salesml.importers import read_export, run_import
    from salesml.synth import generate as synth

    synth(n, seed=2, out_dir=out / "data", end_date=END_DATE)
    run_import(read_export(out / "data", "canonical"), out / "warehouse.duckdb", out / "rejects")


def _history(warehouse: Path) -> History:
    from features.history import load_history
    from salesml.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        return load_history(con)
    finally:
        con.close()


def snapshots_ours(warehouse: Path) -> None:
    from features.build import build_snapshots, weekly_as_of_dates

    history = _history(warehouse)
    rows = build_snapshots(history, weekly_as_of_dates(history))
    print(f"snapshot rows: {len(rows)}", file=sys.stderr)


def snapshots_pandas(warehouse: Path) -> None:
    from benchmarks.reference_ml import pandas_snapshots
    from features.build import weekly_as_of_dates

    history = _history(warehouse)
    rows = pandas_snapshots(history, weekly_as_of_dates(history))
    print(f"snapshot rows: {len(rows)}", file=sys.stderr)


def train_ours(warehouse: Path, store: Path) -> None:
    import os

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    os.chdir(store)
    from training.win.fit import train_win_model
    from training.win.register import log_and_register, open_store_in_background

    opening = open_store_in_background()  # as salesml train does
    result = train_win_model(_history(warehouse))
    reg = log_and_register(result, None, store=opening)
    print(f"win model v{reg.version}: {result.holdout_metrics}", file=sys.stderr)


def train_sklearn(warehouse: Path) -> None:
    from benchmarks.reference_ml import pandas_snapshots, sklearn_pipeline
    from features.build import weekly_as_of_dates

    history = _history(warehouse)
    rows = pandas_snapshots(history, weekly_as_of_dates(history))
    result = sklearn_pipeline(rows)
    print(f"sklearn: auc {result['auc']:.4f} brier {result['brier']:.4f}", file=sys.stderr)


def score_ours(warehouse: Path, store: Path) -> float:
    """Features and champion scores for every (deal, week) of the history; returns seconds."""
    import os

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    os.chdir(store)
    from features.build import build_snapshots, weekly_as_of_dates
    from salesml.scoring import load_scorer

    model = load_scorer("champion")
    history = _history(warehouse)
    start = time.perf_counter()
    rows = build_snapshots(history, weekly_as_of_dates(history))
    scores = model.bundle.predict(rows)
    print(f"scored rows: {len(scores)}", file=sys.stderr)
    return time.perf_counter() - start


def score_sklearn(warehouse: Path, train_warehouse: Path) -> float:
    """The peer: pandas features and a fitted scikit-learn pipeline; times the scoring only."""
    from benchmarks.reference_ml import pandas_snapshots, sklearn_pipeline, sklearn_predict
    from features.build import weekly_as_of_dates

    trained = _history(train_warehouse)
    fitted = sklearn_pipeline(pandas_snapshots(trained, weekly_as_of_dates(trained)))
    history = _history(warehouse)
    start = time.perf_counter()
    rows = pandas_snapshots(history, weekly_as_of_dates(history))
    p = sklearn_predict(fitted, rows)
    print(f"scored rows: {len(p)}", file=sys.stderr)
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    start = time.perf_counter()
    timed = _run(argv)
    # The runner reads this line: the step's own work, without interpreter start-up (or the
    # part the step timed itself, when set-up is not what is measured).
    print(json.dumps({"seconds": timed if timed is not None else time.perf_counter() - start}))


def _run(argv: list[str]) -> float | None:
    step, *args = argv
    if step == "ml-data":
        ml_data(int(args[0]), Path(args[1]))
    elif step == "snapshots":
        snapshots_ours(Path(args[0]))
    elif step == "snapshots-pandas":
        snapshots_pandas(Path(args[0]))
    elif step == "train":
        train_ours(Path(args[0]), Path(args[1]))
    elif step == "train-sklearn":
        train_sklearn(Path(args[0]))
    elif step == "score":
        return score_ours(Path(args[0]), Path(args[1]))
    elif step == "score-sklearn":
        return score_sklearn(Path(args[0]), Path(args[1]))
    else:
        _run_data_step(step, args)
    return None


def _run_data_step(step: str, args: list[str]) -> None:
    if step == "rm":
        for a in args:
            Path(a).unlink(missing_ok=True)
        return
    if step == "generate":
        generate(int(args[0]), Path(args[1]))
    elif step == "generate-pandas":
        generate_pandas(int(args[0]), Path(args[1]))
    elif step == "import":
        import_ours(Path(args[0]), Path(args[1]))
    elif step == "import-pandas":
        import_pandas(Path(args[0]), Path(args[1]))
    elif step == "kpis":
        kpis_ours(Path(args[0]))
    elif step == "kpis-pandas":
        kpis_pandas(Path(args[0]))
    else:
        raise SystemExit(f"unknown step {step!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

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

    gen.write_table = pandas_writer
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
    from benchmarks.reference_kpis import reference_kpis
    from salesml.warehouse import connect

    con = connect(warehouse, read_only=True)
    reference_kpis(con, by="team", period="quarter")


def main(argv: list[str]) -> None:
    start = time.perf_counter()
    _run(argv)
    # The runner reads this line: the step's own work, without interpreter start-up.
    print(json.dumps({"seconds": time.perf_counter() - start}))


def _run(argv: list[str]) -> None:
    step, *args = argv
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

"""The nightly batch through ``serving.batch.run_batch``: history → features → scores → run.

``benchmarks/batch.py`` times the scoring of ready-made feature rows; this one times what
``salesml score`` runs — load the history from the warehouse (``load_history``), find the open
deals, their input hashes, build their features, score them (drivers, actions, timing) and
write the score run — with the memory of the parent and its workers sampled together
(``TreePeak``: the RSS sum, the PSS sum, the parent's and the largest worker's peaks). Then an
incremental night (``changed=True``) after ``--changed`` (3 %) of the open deals got one new
activity.

A synthetic history never has hundreds of thousands of deals open at once, so the open deals
of one (``--deals``, seed 7) are copied ``k`` times under new ids (``<id>~<k>``) with their
stage history and activities, in a copy of its warehouse, until about ``--open`` deals are
open; closed deals stay as they are. The owners' pipelines are then far larger than real
ones: the figures are for time and memory only. The champion (win + timing) is trained on the
unreplicated history. Each measured run is a fresh process (what it holds is its own).

The data set-up (synthesis, import, training, replication) is done once per ``--cache``
folder and size, and reused.

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

from benchmarks.batch import TreePeak


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


def _replicated(cache: Path, env: dict[str, str], target: int) -> tuple[Path, int]:
    """A copy of the cached warehouse in which each deal open at export is copied ``k`` times
    (ids ``<id>~<k>``, with its stage history and activities) until about ``target`` deals are
    open; made once per size and reused. Returns its path and the number of copies."""
    import shutil

    import duckdb

    from features.build import open_deal_ids
    from features.history import load_history

    source = Path(env["SALESML_HOME"]) / "warehouse.duckdb"
    con = duckdb.connect(str(source), read_only=True)
    try:
        base = load_history(con)
    finally:
        con.close()
    open_ids = pd.DataFrame({"deal_id": open_deal_ids(base, base.exported_at).astype(str)})
    copies = max(1, round(target / max(len(open_ids), 1)))
    path = cache / f"warehouse-{copies}x.duckdb"
    if path.exists():
        return path, copies
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    shutil.copyfile(source, partial)
    con = duckdb.connect(str(partial))
    try:
        con.register("open_ids", open_ids)
        con.execute(f"CREATE TEMP TABLE k AS SELECT range AS k FROM range(1, {copies})")
        for table, renamed in (
            ("deals", "deal_id || '~' || k AS deal_id"),
            ("stage_history", "deal_id || '~' || k AS deal_id"),
            (
                "activities",
                "deal_id || '~' || k AS deal_id, activity_id || '~' || k AS activity_id",
            ),
        ):
            con.execute(
                f"INSERT INTO {table} SELECT t.* REPLACE ({renamed}) FROM "
                f"(SELECT * FROM {table} WHERE deal_id IN (SELECT deal_id FROM open_ids)) t, k"
            )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    partial.replace(path)
    return path, copies


def _night(warehouse: Path, share: float) -> tuple[Path, int]:
    """A copy of ``warehouse`` where ``share`` of the open deals (seeded) got one new activity
    at export time."""
    import shutil

    import duckdb

    from features.build import open_deal_ids
    from features.history import load_history

    night = warehouse.with_name(warehouse.stem + "-night.duckdb")
    night.unlink(missing_ok=True)
    shutil.copyfile(warehouse, night)
    con = duckdb.connect(str(night))
    try:
        history = load_history(con)
        ids = open_deal_ids(history, history.exported_at).astype(str)
        chosen = ids[np.random.default_rng(0).random(len(ids)) < share]
        owner = history.deals.set_index("deal_id")["owner_id"].reindex(chosen).to_numpy()
        extra = pd.DataFrame(
            {
                "activity_id": [f"night-{n}" for n in range(len(chosen))],
                "deal_id": chosen,
                "occurred_at": history.exported_at,
                "type": "call",
                "owner_id": owner,
            }
        )
        del history
        con.register("extra", extra)
        con.execute("INSERT INTO activities BY NAME SELECT *, 0::UBIGINT AS _row_hash FROM extra")
    finally:
        con.close()
    return night, len(chosen)


def _load(warehouse: Path) -> Any:
    """The history as ``salesml score`` reads it (``features.history.load_history``)."""
    from features.history import load_history
    from salesml.warehouse import connect

    con = connect(warehouse, read_only=True)
    try:
        return load_history(con, compact=True)
    finally:
        con.close()


def _measure(warehouse: Path, store_root: Path, run_id: str, changed: bool) -> dict[str, Any]:
    """Load the history and run the batch, as ``salesml score [--changed]`` does, with the
    process tree's memory sampled throughout."""
    from salesml.scoring import load_scorer
    from serving.batch import batch_workers, run_batch
    from serving.runs import RunStore

    model = load_scorer("champion")
    store = RunStore(store_root)
    phases: list[tuple[str, float]] = []
    with TreePeak() as peak:
        start = time.perf_counter()
        history = _load(warehouse)
        loaded = time.perf_counter() - start
        result = run_batch(
            history,
            model,
            history.exported_at,
            store,
            run_id=run_id,
            changed=changed,
            progress=lambda msg: phases.append((msg, time.perf_counter() - start)),
        )
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "load_seconds": loaded,
        "rescored": result.rescored,
        "copied": result.copied,
        "tree_peak_bytes": peak.bytes,
        "tree_peak_pss_bytes": peak.pss_bytes,
        "parent_peak_bytes": peak.parent_bytes,
        "worker_peak_bytes": peak.child_bytes,
        "workers": batch_workers(),
        "load_avg": os.getloadavg()[0],
        "phases": _phase_seconds(phases, loaded, seconds),
    }


def _phase_seconds(marks: list[tuple[str, float]], loaded: float, end: float) -> dict[str, float]:
    """Seconds from each progress message of ``run_batch`` to the next (the first phase: the
    history's load), keyed by the message's first word."""
    out = {"load history": round(loaded, 1)}
    times = [t for _, t in marks] + [end]
    for (message, at), until in zip(marks, times[1:], strict=True):
        out[message.split()[0]] = round(until - at, 1)
    return out


def _tiled_run(warehouse: Path, store_root: Path, run_id: str, check: int) -> dict[str, Any]:
    """A full run of ``warehouse`` (made by ``_replicated``) written without scoring every
    deal: a copy ``<id>~<k>`` has its original's stage history, activities, owner and account,
    so its features — and its score row — are its original's; only the deal id and the input
    hash differ. The originals are scored, each copy's row is its original's with its own id
    and hash, and ``check`` copies (seeded) are scored for real and must give the same rows.

    For the incremental night at sizes whose full run does not finish in a session on a
    loaded machine (the night itself runs for real: hashes, plan, features, scores, copies)."""
    from features.build import build_feature_slices, open_deal_ids
    from salesml.scoring import load_scorer
    from serving import runs
    from serving.batch import stored_json_columns
    from serving.changes import input_hash_codes
    from serving.chunk import model_version, priced, score_chunk
    from serving.runs import HASH_COLUMN, RunStore

    history = _load(warehouse)
    as_of = history.exported_at
    model = load_scorer("champion")
    version = model_version(model)
    model = priced(model, history)
    ids = open_deal_ids(history, as_of)
    hashes = pd.Series(input_hash_codes(history, ids, as_of, version).to_numpy(), index=ids)
    original = pd.Index(ids.str.split("~").str[0])
    wanted = pd.Index(original.unique())
    rng = np.random.default_rng(0)
    checked = pd.Index(ids[rng.choice(len(ids), size=min(check, len(ids)), replace=False)])
    keep = ids.difference(wanted.union(checked))
    features = pd.concat(list(build_feature_slices(history, as_of, 200_000, skip=keep)))
    features.index = features.index.astype(str)
    scored = score_chunk(features, model, as_of).set_index("deal_id")
    base = scored.loc[wanted]
    tiled = base.loc[original[ids.isin(checked)]]
    tiled.index = ids[ids.isin(checked)]
    pd.testing.assert_frame_equal(tiled, scored.loc[tiled.index])  # copies score as originals
    store = RunStore(store_root)
    positions = base.index.get_indexer(original)
    text = hashes.to_numpy()

    def write_parts(folder: Path) -> None:
        writer = runs.PartsWriter(folder, 250_000)
        for start in range(0, len(ids), 10_000):  # a row group per 10,000 rows, as scored
            rows = base.iloc[positions[start : start + 10_000]].reset_index(drop=True)
            rows.insert(0, "deal_id", ids[start : start + 10_000])
            rows[HASH_COLUMN] = [f"{int(v):016x}" for v in text[start : start + 10_000]]
            writer.write(rows)
        writer.close()

    json_columns = stored_json_columns(features.head(1), model, as_of)
    with store.writing():
        store.write(
            run_id,
            write_parts,
            as_of=as_of,
            model_version=version,
            engine="local",
            expected_deals=pd.Index(ids.astype(str)),
            rescored=len(ids),
            json_columns=json_columns,
        )
    return {"rows": len(ids), "originals": len(wanted), "checked": len(checked)}


def _child(env: dict[str, str], *args: str) -> dict[str, Any]:
    """This module run in a fresh process (what one measured run holds is its own)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.batch_run", *args],
        check=True,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--open", type=int, default=150_000, help="open deals to reach")
    parser.add_argument("--deals", type=int, default=20_000)
    parser.add_argument(
        "--changed", type=float, default=0.03, help="share of open deals changed for the night"
    )
    parser.add_argument("--cache", type=Path, default=Path(".salesml/bench-batch-run"))
    parser.add_argument("--no-night", action="store_true", help="only the full run")
    parser.add_argument(
        "--step", choices=["replicate", "night", "full", "incremental", "tiled-full"]
    )
    parser.add_argument(
        "--tiled",
        action="store_true",
        help="write the full run by tiling the originals' scored rows (checked on a sample) "
        "instead of scoring every deal: for timing the incremental night at sizes whose full "
        "run does not finish in a session",
    )
    parser.add_argument("--warehouse", type=Path)
    parser.add_argument("--store", type=Path)
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    cache = args.cache.resolve()
    env = _prepare(cache, args.deals)
    os.environ.update(env)
    out: dict[str, Any]
    if args.step == "replicate":
        path, copies = _replicated(cache, env, args.open)
        out = {"warehouse": str(path), "copies": copies}
    elif args.step == "night":
        path, changed = _night(args.warehouse, args.changed)
        out = {"warehouse": str(path), "changed": changed}
    elif args.step == "tiled-full":
        out = _tiled_run(args.warehouse, args.store, "full", 2_000)
    elif args.step in ("full", "incremental"):
        changed_run = args.step == "incremental"
        out = _measure(args.warehouse, args.store, args.step, changed_run)
    else:
        common = ["--cache", str(cache), "--deals", str(args.deals)]
        made = _child(env, "--step", "replicate", "--open", str(args.open), *common)
        store = Path(env["SALESML_HOME"]) / f"runs-{os.getpid()}"
        at = ["--store", str(store), *common]
        step = "tiled-full" if args.tiled else "full"
        full = _child(env, "--step", step, "--warehouse", made["warehouse"], *at)
        out = {"copies": made["copies"], "open_deals": full.get("rescored", full.get("rows"))}
        out |= {f"full_{k}": v for k, v in full.items()}
        if not args.no_night:
            night = _child(
                env,
                "--step",
                "night",
                "--warehouse",
                made["warehouse"],
                "--changed",
                str(args.changed),
                *common,
            )
            inc = _child(env, "--step", "incremental", "--warehouse", night["warehouse"], *at)
            out["incremental_changed"] = night["changed"]
            out |= {f"incremental_{k}": v for k, v in inc.items()}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

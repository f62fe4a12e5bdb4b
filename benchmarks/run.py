"""``make bench``: every benchmark against its target and a peer measured in the same run.

Each measurement runs in a fresh subprocess (``python -m benchmarks.steps ...``), so wall time
and peak memory (max RSS from ``wait4``) belong to that step alone. Machines here are shared and
noisy: figures are medians over ``--repeat`` runs and ratios are peer / ours.

Usage: ``python -m benchmarks.run [--scale 1000000] [--repeat 1] [--only NAME]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

GB = 1024**3


@dataclass
class Measurement:
    seconds: float
    peak_bytes: int


@dataclass
class Result:
    name: str
    target_seconds: float | None
    target_peak_gb: float | None
    ours: Measurement
    peer: Measurement | None
    peer_name: str
    min_ratio: float | None = None  # peer / ours must reach this (e.g. "2× its throughput")
    note: str = ""  # quality figures measured in the same run (equal values, WAPE, …)
    passed: bool = True  # quality checks of the step itself

    @property
    def ratio(self) -> float | None:
        return self.peer.seconds / self.ours.seconds if self.peer else None

    @property
    def ok(self) -> bool:
        time_ok = self.target_seconds is None or self.ours.seconds <= self.target_seconds
        mem_ok = self.target_peak_gb is None or self.ours.peak_bytes <= self.target_peak_gb * GB
        ratio_ok = self.min_ratio is None or (self.ratio or 0.0) >= self.min_ratio
        return time_ok and mem_ok and ratio_ok and self.passed


def measure(args: list[str], repeat: int, setup: list[str] | None = None) -> Measurement:
    """Median wall time (of the step's work, start-up excluded) and max peak RSS."""
    times, peaks = [], []
    for _ in range(repeat):
        if setup:
            subprocess.run(
                [sys.executable, "-m", "benchmarks.steps", *setup],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.steps", *args], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"benchmark step failed: {' '.join(args)}")
        times.append(float(json.loads(output.strip().splitlines()[-1])["seconds"]))
        peaks.append(usage.ru_maxrss * 1024)  # KiB on Linux
    return Measurement(statistics.median(times), max(peaks))


def json_step(module: str, args: list[str]) -> dict[str, Any]:
    """Run ``python -m benchmarks.<module> ARGS`` (which times ours and its peer in the same
    process run) and return the JSON object it prints last."""
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *args],
        check=False,
        stdout=subprocess.PIPE,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark failed: {module} {' '.join(args)}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def forecast_benchmark(ns: argparse.Namespace) -> Result:
    out = json_step("forecast_segments", ["--segments", str(ns.segments), "--freq", "week"])
    return Result(
        f"forecast {out['segments']} segments, weekly (fit + predict + intervals)",
        60,
        None,
        Measurement(float(out["ours_seconds"]), 0),
        Measurement(float(out["peer_seconds"]), 0),
        "default Prophet, per segment",
        note=(
            f"per segment {out['ours_per_segment']:.2f} s vs {out['peer_per_segment']:.2f} s; "
            f"WAPE {out['ours_wape']:.3f} vs {out['peer_wape']:.3f}"
        ),
    )


def drivers_benchmark(ns: argparse.Namespace) -> Result:
    out = json_step("drivers", ["--rows", str(ns.driver_rows), "--peer-rows", str(ns.peer_rows)])
    diff = float(out["max_abs_diff"])
    return Result(
        f"drivers for {int(out['rows']):,} rows (exact TreeSHAP)",
        None,
        None,
        Measurement(float(out["ours_seconds"]), int(out.get("ours_peak_bytes", 0))),
        Measurement(float(out["peer_seconds"]), 0),
        "shap.TreeExplainer"
        + (" (extrapolated from a subsample)" if out.get("peer_extrapolated") else ""),
        min_ratio=2.0,
        note=f"max |difference| {diff:.1e} (≤ 1e-6)",
        passed=diff <= 1e-6,
    )


def served_home(work: Path, ns: argparse.Namespace) -> Path:
    """A served workspace (synthetic history, win + timing models, a score run), built once
    per benchmark run."""
    home = work / "api-home"
    if (home / "score_runs" / "LATEST").exists():
        return home
    env = os.environ | {
        "SALESML_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
    }
    cli = [str(Path(sys.executable).parent / "salesml")]
    for args in (
        ["synth", "--deals", str(ns.api_deals), "--seed", "7", "--out", str(work / "api-data")],
        ["import", str(work / "api-data"), "--format", "canonical"],
        ["train", "--models", "win,timing"],
        ["score", "--all"],
    ):
        subprocess.run([*cli, *args], check=True, env=env, cwd=work, stdout=subprocess.DEVNULL)
    return home


# Events per second of the events benchmark: the "under 50" at its top, and 40.
EVENT_RATES = (50, 40)


def events_benchmark(work: Path, ns: argparse.Namespace) -> list[Result]:
    """``benchmarks.events``: 50 and 40 events/s while GETs are served; acknowledgement to the
    new score in ``GET /v1/deals/{id}``, against ``salesml score --changed`` in the same run
    (measured once, after the first rate)."""
    home = served_home(work, ns)
    results, peer = [], None
    for rate in EVENT_RATES:
        args = ["--home", str(home), "--rate", str(rate), "--seconds", "15"]
        out = json_step("events", args if peer is None else [*args, "--no-peer"])
        if peer is None:
            peer = Measurement(out["score_changed_seconds"], 0)
        visible, ack = out["visible"], out["ack"]
        note = (
            f"p50 {visible.get('p50_ms', 0):.0f} ms; ack p99 {ack.get('p99_ms', 0):.0f} ms; "
            f"server CPU {out.get('server_cpu_ms_per_event', 0):.0f} ms/event; "
            f"{out['not_visible_within_10s']} not visible in 10 s; GET p99 during events "
            f"{out['get_during_events'].get('p99_ms', 0):.0f} ms"
        )
        results.append(
            Result(
                f"events: {rate}/s with GETs served, ack to new score in GET /v1/deals/{{id}}: p99",
                1.0,
                None,
                Measurement(visible.get("p99_ms", float("inf")) / 1000, 0),
                peer,
                "salesml score --changed (batch path, same changes)",
                note=note,
                passed=out["not_visible_within_10s"] == 0 and out["errors"] == 0,
            )
        )
    return results


def api_benchmark(work: Path, ns: argparse.Namespace) -> list[Result]:
    """A served workspace (``served_home``), then the load generator of ``benchmarks.api``
    against ``salesml serve`` and ``mlflow models serve``."""
    home = served_home(work, ns)
    out = json_step("api", ["--home", str(home), "--clients", "20", "--seconds", "10"])
    theirs = out.get("mlflow_serve_one_deal")
    peer_p99 = Measurement(theirs["p99_ms"] / 1000, 0) if theirs else None
    peer_request = Measurement(1.0 / max(theirs["throughput_rps"], 1e-9), 0) if theirs else None
    results = [
        _latency_row(
            "API POST /v1/deals/score, known deal (cached answer), 20 clients: p99",
            out["salesml_score_one_deal"],
            None,
            peer_p99,
        )
    ]
    for name, label in (("whatif", "what-if"), ("new_deal", "new deal")):
        live = f"API POST /v1/deals/score, {label} (live: computed per request) + drivers + actions"
        results += [
            _latency_row(f"{live}, 1 client: p99", out[f"salesml_score_{name}_1_client"], 0.010),
            _latency_row(f"{live}, 20 clients: p99", out[f"salesml_score_{name}"], 0.030, peer_p99),
            Result(
                f"{live}: throughput at 20 clients (seconds per request)",
                None,
                None,
                Measurement(1.0 / max(out[f"salesml_score_{name}"]["throughput_rps"], 1e-9), 0),
                peer_request,
                "mlflow models serve (prediction only)",
                min_ratio=2.0,
            ),
        ]
    get, get_one = out["salesml_get_deal"], out["salesml_get_deal_1_client"]
    results += [
        _latency_row("API GET /v1/deals/{id} (cached answer), 1 client: p99", get_one, 0.005),
        _latency_row(
            "API GET /v1/deals/{id} (cached answer), 20 clients: p99 (for information)", get, None
        ),
    ]
    return results


def _latency_row(
    name: str, load: dict[str, Any], target: float | None, peer: Measurement | None = None
) -> Result:
    return Result(
        name,
        target,
        None,
        Measurement(load["p99_ms"] / 1000, 0),
        peer,
        "mlflow models serve (prediction only)" if peer is not None else "—",
        note=f"p50 {load['p50_ms']:.1f} ms, {load['throughput_rps']:.0f} req/s"
        + (
            f", server CPU {load['server_cpu_ms_per_request']:.1f} ms/request"
            if load.get("server_cpu_ms_per_request") is not None
            else ""
        ),
    )


def _f(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def foreign_benchmark() -> list[Result]:
    """Accuracy on histories salesml.synth did not make, against the plain peers measured in
    the same run (``python -m benchmarks.accuracy --foreign``): a row per case, ok when the
    issue's bar holds (win: AUC ≥ peer − 0.003, Brier ≤ peer + 0.001, ECE ≤ 0.025, oracle and
    noise where known; revenue: WAPE ≤ 0.85 × the best of seasonal naive, default Prophet and
    AutoETS, 80 % coverage in 70–90 %)."""
    started = time.perf_counter()
    out = json_step("accuracy", ["--foreign", "--json"])
    elapsed = Measurement(time.perf_counter() - started, 0)
    nothing = Measurement(math.nan, 0)
    results = []
    for r in out["win"]:
        peer = f"AUC {_f(r['peer_auc'])}, Brier {_f(r['peer_brier'], 4)}, ECE {_f(r['peer_ece'])}"
        results.append(
            Result(
                f"foreign win model: {r['case']} (served: {r['served']})",
                None,
                None,
                nothing,
                None,
                "default LightGBM",
                note=(
                    f"AUC {_f(r['auc'])}, Brier {_f(r['brier'], 4)}, ECE {_f(r['ece'])}; "
                    f"peer {peer}"
                ),
                passed=bool(r["passes"]),
            )
        )
    for r in out["revenue"]:
        results.append(
            Result(
                f"foreign revenue forecast: {r['case']}, {r['freq']} (served: {r['served']})",
                None,
                None,
                nothing,
                None,
                "best of seasonal naive, Prophet, AutoETS",
                note=(
                    f"WAPE {r['salesml']:.3f} = {r['ratio_to_best_peer']:.2f} × the best peer "
                    f"(SN {r['seasonal_naive']:.3f}, Prophet {r['prophet_default']:.3f}, "
                    f"AutoETS {r['auto_ets']:.3f}); 80 % coverage {r['coverage_80']:.2f}"
                ),
                passed=bool(r["meets_bar"]),
            )
        )
    results.append(
        Result("foreign-history accuracy, all cases (time)", None, None, elapsed, None, "—")
    )
    return results


def batch_benchmark(ns: argparse.Namespace) -> list[Result]:
    """``salesml score``'s path end to end (``benchmarks.batch_run``: load the history, hash,
    build features, score, write the run), then an incremental night; memory is the whole
    process tree's, as the PSS sum (shared pages counted once), the RSS sum beside it."""
    out = json_step("batch_run", ["--open", str(ns.batch_rows), "--changed", str(ns.batch_changed)])
    rows = int(out["open_deals"])

    def peaks(step: str) -> str:
        phases = out.get(f"{step}_phases") or {}
        spent = ", ".join(f"{name} {float(sec):.0f} s" for name, sec in phases.items())
        return (
            f"PSS sum; RSS sum {int(out[f'{step}_tree_peak_bytes']) / GB:.2f} GB, "
            f"load average {float(out[f'{step}_load_avg']):.1f}"
            + (f"; phases: {spent}" if spent else "")
        )

    return [
        Result(
            f"nightly batch: {rows:,} open deals, history to score run, drivers + actions + "
            f"timing ({int(out.get('full_workers', 1))} scoring processes; peak: the parent "
            f"and every worker together, {peaks('full')})",
            300,
            4.0,
            Measurement(float(out["full_seconds"]), int(out["full_tree_peak_pss_bytes"])),
            None,
            "—",
        ),
        Result(
            f"incremental night: {int(out['incremental_rescored']):,} changed deals rescored, "
            f"{int(out['incremental_copied']):,} copied (peak: parent and workers together, "
            f"{peaks('incremental')})",
            60,
            4.0,
            Measurement(
                float(out["incremental_seconds"]), int(out["incremental_tree_peak_pss_bytes"])
            ),
            Measurement(float(out["full_seconds"]), 0),
            "the full run",
        ),
    ]


def machine() -> str:
    cpus = os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GB
    return f"{platform.machine()}, {cpus} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def fmt_seconds(m: Measurement | None) -> str:
    if m is None or math.isnan(m.seconds):  # a quality row: no time of its own
        return "—"
    return f"{m.seconds * 1000:,.1f} ms" if m.seconds < 1 else f"{m.seconds:,.2f} s"


def fmt_mem(m: Measurement | None) -> str:
    # Steps timed inside one process with their peer report no separate peak.
    return "—" if m is None or m.peak_bytes == 0 else f"{m.peak_bytes / GB:.2f} GB"


def render(results: list[Result], scale: int) -> str:
    lines = [
        f"salesml benchmarks — data steps at {scale:,} deals — {machine()}",
        "",
        "| benchmark | ours | target | peak mem (target) | peer | peer time | peer mem | "
        "ratio peer/ours | ok |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        target = (
            "—"
            if r.target_seconds is None
            else f"≤ {fmt_seconds(Measurement(r.target_seconds, 0))}"
        )
        mem_t = "" if r.target_peak_gb is None else f" (≤ {r.target_peak_gb:g} GB)"
        ratio = "—" if r.ratio is None else f"{r.ratio:.2f}×"
        lines.append(
            f"| {r.name} | {fmt_seconds(r.ours)} | {target} | {fmt_mem(r.ours)}{mem_t} | "
            f"{r.peer_name} | {fmt_seconds(r.peer)} | {fmt_mem(r.peer)} | {ratio} | "
            f"{'yes' if r.ok else 'NO'} |"
        )
    notes = [f"- {r.name}: {r.note}" for r in results if r.note]
    return "\n".join(lines + (["", *notes] if notes else []))


def ml_benchmarks(work: Path, ns: argparse.Namespace) -> list[Result]:
    """Snapshots, training (with registry) and scoring, against pandas / scikit-learn."""
    snap, train, store = work / "ml-snapshots", work / "ml-train", work / "ml-store"
    store.mkdir(parents=True, exist_ok=True)
    measure(["ml-data", str(ns.snapshot_deals), str(snap)], 1)
    measure(["ml-data", str(ns.train_deals), str(train)], 1)
    snap_wh, train_wh = str(snap / "warehouse.duckdb"), str(train / "warehouse.duckdb")
    out = []
    ours = measure(["snapshots", snap_wh], ns.repeat)
    peer = measure(["snapshots-pandas", snap_wh], ns.repeat)
    out.append(
        Result(
            f"snapshots ({ns.snapshot_deals:,} deals, weekly)",
            120,
            4,
            ours,
            peer,
            "pandas per-date loop",
        )
    )
    ours = measure(["train", train_wh, str(store)], ns.repeat)
    peer = measure(["train-sklearn", train_wh], ns.repeat)
    out.append(
        Result(
            f"train win model ({ns.train_deals:,} deals, + registry)",
            180,
            4,
            ours,
            peer,
            "pandas + sklearn HGB",
        )
    )
    ours = measure(["score", snap_wh, str(store)], ns.repeat)
    peer = measure(["score-sklearn", snap_wh, train_wh], ns.repeat)
    out.append(
        Result("score every (deal, week) snapshot", 60, 4, ours, peer, "pandas + sklearn HGB")
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=1_000_000, help="deals to generate")
    parser.add_argument("--repeat", type=int, default=1, help="runs per heavy step (median)")
    parser.add_argument("--kpi-repeat", type=int, default=3, help="runs per KPI step")
    parser.add_argument("--only", action="append", default=None, help="benchmark name prefix")
    parser.add_argument(
        "--snapshot-deals",
        type=int,
        default=130_000,
        help="deals whose weekly snapshots make about 1M rows",
    )
    parser.add_argument("--train-deals", type=int, default=100_000, help="deals to train on")
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep")
    parser.add_argument("--segments", type=int, default=50, help="forecast segments")
    parser.add_argument("--api-deals", type=int, default=5000, help="deals in the API workspace")
    parser.add_argument("--batch-rows", type=int, default=1_000_000, help="open deals to score")
    parser.add_argument(
        "--batch-changed",
        type=float,
        default=0.03,
        help="share of the open deals that get a new activity before the incremental night",
    )
    parser.add_argument("--driver-rows", type=int, default=1_000_000, help="rows to explain")
    parser.add_argument(
        "--peer-rows", type=int, default=20_000, help="rows shap.TreeExplainer is timed on"
    )
    ns = parser.parse_args(argv)
    work = ns.keep or Path(tempfile.mkdtemp(prefix="salesml-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    scale, results = ns.scale, []
    data, data_peer = work / "data", work / "data-peer"
    wh, wh_peer = work / "warehouse.duckdb", work / "warehouse-peer.duckdb"

    def wanted(name: str) -> bool:
        return ns.only is None or any(name.startswith(o) for o in ns.only)

    try:
        if wanted("generate") or wanted("import") or wanted("kpis"):
            ours = measure(["generate", str(scale), str(data)], ns.repeat)
            if wanted("generate"):
                peer = measure(["generate-pandas", str(scale), str(data_peer)], ns.repeat)
                results.append(Result("generate (synth)", 60, 4, ours, peer, "pandas writer"))
        if wanted("import"):
            clean = ["rm", str(wh)]
            ours = measure(["import", str(data), str(wh)], ns.repeat, setup=clean)
            peer = measure(
                ["import-pandas", str(data), str(wh_peer)], ns.repeat, setup=["rm", str(wh_peer)]
            )
            results.append(Result("import (canonical)", 90, 4, ours, peer, "pandas import"))
        if wanted("kpis"):
            if not wh.exists():
                measure(["import", str(data), str(wh)], 1)
            ours = measure(["kpis", str(wh)], ns.kpi_repeat)
            peer = measure(["kpis-pandas", str(wh)], ns.kpi_repeat)
            results.append(Result("kpis (by team, quarter)", 5, 4, ours, peer, "pandas KPIs"))
        if wanted("snapshots") or wanted("train") or wanted("score"):
            results += ml_benchmarks(work, ns)
        if wanted("forecast"):
            results.append(forecast_benchmark(ns))
        if wanted("drivers"):
            results.append(drivers_benchmark(ns))
        if wanted("batch"):
            results += batch_benchmark(ns)
        if wanted("api"):
            results += api_benchmark(work, ns)
        if wanted("events"):
            results += events_benchmark(work, ns)
        if wanted("foreign"):
            results += foreign_benchmark()
    finally:
        if ns.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    table = render(results, scale)
    print(table)
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "latest.md").write_text(table + "\n", encoding="utf-8")
    (out / "latest.json").write_text(
        json.dumps(
            {
                "scale": scale,
                "machine": machine(),
                "results": [asdict(r) | {"ratio": r.ratio, "ok": r.ok} for r in results],
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

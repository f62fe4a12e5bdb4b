"""Events benchmark: CRM events in, the new score visible in ``GET /v1/deals/{id}``.

    python -m benchmarks.events --home .salesml/demo [--rate 40] [--reads 100] [--seconds 15]

Needs a served workspace (warehouse, registered champion, a score run; as ``benchmarks.api``).
Starts ``salesml serve`` and, for ``--seconds``, sends ``--rate`` events per second (one per
request, on a fixed schedule: a stage change or a logged activity, stamped now, on an open deal
drawn with a fixed seed) while ``--reads`` ``GET /v1/deals/{id}`` per second read other deals.
For each acknowledged event a watcher waits until its deal's answer has that event or a later
one as its latest point; one poller reads every deal with events waiting, once per 50 ms, and
wakes the events it saw. The latency is from the acknowledgement (the 202) to that answer (to
within 50 ms); ``server_cpu_ms_per_event`` is the server's CPU over the run (reads included)
per event sent.

The peer, measured in the same run: ``salesml score --changed`` — what makes the same changes
visible without events (after an import): its wall time, with the events already in the
warehouse. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from benchmarks.api import _free_port, _wait

# How often the watcher reads a deal whose event has not shown yet (the latency's resolution).
WATCH_SECONDS = 0.05


def _pcts(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"n": 0}
    ms = np.asarray(values) * 1000
    return {
        "n": len(values),
        "p50_ms": round(float(np.percentile(ms, 50)), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1),
        "p99_ms": round(float(np.percentile(ms, 99)), 1),
        "max_ms": round(float(ms.max()), 1),
    }


def _cpu_seconds(process: psutil.Process) -> float:
    """User and system CPU time of ``process`` and its children so far."""
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _setup(home: Path) -> tuple[str, list[str], list[str]]:
    """An events key, the open deals of the latest run, the stages the data knows."""
    from salesml.warehouse import connect
    from serving.keys import KeyStore
    from serving.runs import RunStore

    key = KeyStore.for_home(home).add(f"bench-events-{os.getpid()}", ["admin"])[1]
    run = RunStore(home).latest()
    assert run is not None, "no score run: salesml score --all first"
    deals = sorted(RunStore(home).read(run, columns=["deal_id"])["deal_id"].astype(str))
    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        found = con.execute("SELECT DISTINCT stage FROM stage_history ORDER BY 1").fetchall()
        stages = [r[0] for r in found]
    finally:
        con.close()
    return key, deals, stages


async def _drive(
    url: str, key: str, deals: list[str], stages: list[str], ns: argparse.Namespace
) -> dict[str, Any]:
    rng = random.Random(7)
    headers = {"X-API-Key": key}
    acks: list[float] = []
    visible: list[float] = []
    reads: list[float] = []
    missing = 0
    errors = 0
    end = time.monotonic() + ns.seconds
    watched, readable = deals[: len(deals) // 2], deals[len(deals) // 2 :]
    errors_by_status: dict[int, int] = {}

    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        # One poller reads each deal with events waiting to show, once per WATCH_SECONDS,
        # and wakes the events it saw (an event per deal, not a polling loop per event).
        waiting: dict[str, dict[int, asyncio.Event]] = {}
        watch_gets = 0

        async def look(deal_id: str) -> None:
            nonlocal watch_gets
            watch_gets += 1
            answer = await client.get(f"/v1/deals/{deal_id}")
            points = answer.json().get("history", []) if answer.status_code == 200 else []
            shown = int(points[-1].get("event_seq") or 0) if points else 0
            for seq, seen in list(waiting.get(deal_id, {}).items()):
                if seq <= shown and not seen.is_set():
                    visible.append(time.perf_counter() - acked_at[seq])
                    seen.set()

        async def poller() -> None:
            while True:  # cancelled once every event has shown or timed out
                started = time.monotonic()
                deals_now = [d for d, w in waiting.items() if w]
                if deals_now:
                    await asyncio.gather(*(look(d) for d in deals_now))
                await asyncio.sleep(max(0.0, WATCH_SECONDS - (time.monotonic() - started)))

        async def watch(deal_id: str, seq: int) -> None:
            nonlocal missing
            seen = asyncio.Event()
            waiting.setdefault(deal_id, {})[seq] = seen
            try:
                await asyncio.wait_for(seen.wait(), timeout=10)
            except TimeoutError:
                missing += 1
            finally:
                waiting[deal_id].pop(seq, None)

        acked_at: dict[int, float] = {}

        async def send(n: int) -> None:
            nonlocal errors
            deal_id = rng.choice(watched)
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            if n % 2:
                event = {
                    "event_id": f"bench-{os.getpid()}-{n}",
                    "type": "deal.stage_changed",
                    "occurred_at": now,
                    "deal": {"deal_id": deal_id, "stage": rng.choice(stages)},
                }
            else:
                event = {
                    "event_id": f"bench-{os.getpid()}-{n}",
                    "type": "activity.logged",
                    "occurred_at": now,
                    "activity": {"deal_id": deal_id, "type": "call"},
                }
            started = time.perf_counter()
            answer = await client.post("/v1/events", json=[event])
            if answer.status_code != 202:
                errors += 1
                errors_by_status[answer.status_code] = (
                    errors_by_status.get(answer.status_code, 0) + 1
                )
                return
            result = answer.json()["results"][0]
            if result["status"] != "accepted":
                return
            acked_at[result["seq"]] = time.perf_counter()
            acks.append(acked_at[result["seq"]] - started)
            await watch(deal_id, result["seq"])

        async def read_loop() -> None:
            n = 0
            while time.monotonic() < end:
                started = time.perf_counter()
                await client.get(f"/v1/deals/{readable[n % len(readable)]}")
                reads.append(time.perf_counter() - started)
                n += 1
                await asyncio.sleep(max(0.0, 1.0 / ns.reads - (time.perf_counter() - started)))

        tasks = [asyncio.create_task(read_loop())]
        watching = asyncio.create_task(poller())
        n, start = 0, time.monotonic()
        while time.monotonic() < end:
            tasks.append(asyncio.create_task(send(n)))
            n += 1
            await asyncio.sleep(max(0.0, start + n / ns.rate - time.monotonic()))
        await asyncio.gather(*tasks)
        watching.cancel()
    return {
        "events_sent": n,
        "rate_eps": ns.rate,
        "reads_per_second": ns.reads,
        "ack": _pcts(acks),
        "visible": _pcts(visible),
        "not_visible_within_10s": missing,
        "errors": errors,
        "errors_by_status": errors_by_status,
        "get_during_events": _pcts(reads),
        "watch_gets": watch_gets,
    }


def _event(n: int, deal_id: str, stages: list[str], rng: random.Random) -> dict[str, Any]:
    """The benchmark's event mix: a stage change or a logged call, stamped now."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    if n % 2:
        return {
            "event_id": f"bench-{os.getpid()}-{n}",
            "type": "deal.stage_changed",
            "occurred_at": now,
            "deal": {"deal_id": deal_id, "stage": rng.choice(stages)},
        }
    return {
        "event_id": f"bench-{os.getpid()}-{n}",
        "type": "activity.logged",
        "occurred_at": now,
        "activity": {"deal_id": deal_id, "type": "call"},
    }


def applier(home: Path, sizes: list[int], rounds: int) -> dict[str, Any]:
    """The applier alone, in this process, no HTTP: per round of ``size`` events (the
    benchmark's mix, on deals drawn with a fixed seed), the CPU time of one
    ``LiveEvents.step`` (the process's, scoring thread included: what the machine's other
    jobs move least) and its wall time. Rounds of 1, 8 and 20 events are what 5, 20 and 40
    events/s make of ~0.5 s rounds."""
    from salesml.settings import Settings
    from serving.api.app import _limits
    from serving.api.live import LiveEvents
    from serving.api.state import ServingState
    from serving.events.shapes import read_canonical

    _, deals, stages = _setup(home)
    state = ServingState(home, "champion")
    state.poll_once()
    live = LiveEvents(state, home, _limits(Settings()))
    rng = random.Random(7)
    watched = deals[: len(deals) // 2]
    n = 0
    live.step()  # the first round builds the context
    out: dict[str, Any] = {}
    for size in sizes:
        cpu, wall = [], []
        for _ in range(rounds):
            events = [_event(n + i, rng.choice(watched), stages, rng) for i in range(size)]
            n += size
            live.ingest(read_canonical(events))
            started, started_cpu = time.perf_counter(), time.process_time()
            live.step()
            cpu.append(time.process_time() - started_cpu)
            wall.append(time.perf_counter() - started)
        out[f"round_of_{size}"] = {"cpu": _pcts(cpu), "wall": _pcts(wall)}
    context = live._context
    if context is not None:
        out["context"] = {
            "rebuilds": context.rebuilds,
            "patches": context.patches,
            "batched": getattr(context, "batched", None),
            "fallbacks": context.fallbacks,
        }
    started_cpu = time.process_time()
    folded = live.fold_now()
    out["fold"] = {"entries": folded, "cpu_ms": round((time.process_time() - started_cpu) * 1000)}
    live.journal.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=40.0, help="events per second")
    parser.add_argument("--reads", type=float, default=100.0, help="GET per second alongside")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument(
        "--no-peer",
        action="store_true",
        help="skip the peer (salesml score --changed): for comparing two builds of the server",
    )
    parser.add_argument(
        "--applier",
        action="store_true",
        help="measure the applier alone in this process (CPU per round; no server, no peer); "
        "the workspace's journal grows by the events sent",
    )
    parser.add_argument("--rounds", type=int, default=15, help="rounds per size (--applier)")
    ns = parser.parse_args(argv)
    home = ns.home.resolve()
    if ns.applier:
        os.environ.setdefault("SALESML_HOME", str(home))
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
        print(json.dumps(applier(home, [1, 8, 20], ns.rounds)))
        return 0
    env = os.environ | {
        "SALESML_HOME": str(home),
        # One key sends, watches and reads: no per-key rate limit in the way.
        "SALESML_API_RATE_PER_SECOND": "1000000",
        "SALESML_API_RATE_BURST": "1000000",
    }
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    key, deals, stages = _setup(home)
    port = _free_port()
    salesml = str(Path(sys.executable).parent / "salesml")
    proc = subprocess.Popen(
        [salesml, "serve", "--port", str(port)],
        env=env,
        cwd=home.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{port}/readyz", 300, proc)
        server = psutil.Process(proc.pid)
        cpu_before = _cpu_seconds(server)
        out = asyncio.run(_drive(f"http://127.0.0.1:{port}", key, deals, stages, ns))
        cpu = _cpu_seconds(server) - cpu_before
        # The server's CPU over the run (events, their GETs and the reads alongside) per
        # event sent: what the machine's other jobs move less than the latencies.
        out["server_cpu_seconds"] = round(cpu, 2)
        out["server_cpu_ms_per_event"] = round(1000 * cpu / max(out["events_sent"], 1), 1)
        time.sleep(3)  # the last warehouse fold
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    if ns.no_peer:
        print(json.dumps(out))
        return 0
    started = time.perf_counter()
    subprocess.run(
        [salesml, "score", "--changed"],
        env=env,
        cwd=home.parent,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out["score_changed_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

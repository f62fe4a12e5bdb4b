"""API benchmark: ``salesml serve`` against ``mlflow models serve`` on the same bundle.

    python -m benchmarks.api --home .salesml/demo [--clients 20] [--seconds 10]

Needs a workspace with a warehouse, a registered champion (``MLFLOW_TRACKING_URI``, default
``sqlite:///<home>/mlflow.db``) and a score run (``salesml score --all``). Starts both servers on
loopback and drives each with the same load generator: ``--clients`` HTTP/1.1 keep-alive
connections on one asyncio event loop (uvloop when installed), each sending a pre-encoded
request as soon as the previous answer is complete (closed loop), rotating over one request per
deal. Every request's latency is recorded (send to last byte of the answer); percentiles are
over all of them. The generator costs a few per cent of one core, so it takes little of the two
shared cores from the servers (the earlier one, 20 Python threads on httpx, took most of one).

Phases, in order: ``POST /v1/deals/score`` with one known deal per request (a **cached**
answer: the server computes a known deal's row once per snapshot), the same with a what-if and
with a new deal (**live** answers, computed on every request: the work a CRM plugin waits on),
each at ``--clients`` clients and at 1 client, and ``GET /v1/deals/{id}`` (cached) at 1 client
and at ``--clients`` clients. The peer: ``mlflow models serve`` on the same bundle, one
``dataframe_split`` row of the same deals' features to ``/invocations`` (prediction only).
Prints one JSON object: latencies in ms, throughput in requests per second, the server's CPU
time per request and resident memory (its worker processes included), the load average around
each phase, and the ratios against the peer. ``--workers N`` starts both servers with N worker
processes (default 1 each: ``salesml serve``'s default, which CRM events need, and ``mlflow
models serve``'s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

CACHED = ("salesml_score_one_deal", "salesml_get_deal")  # computed once per snapshot
LIVE = ("salesml_score_whatif", "salesml_score_new_deal")  # computed on every request


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready after {timeout:.0f} s")


# -- the load generator ------------------------------------------------------------------------
def request(method: str, port: int, path: str, headers: dict[str, str], body: Any = None) -> bytes:
    """One HTTP/1.1 keep-alive request, encoded once."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    payload = b""
    if body is not None:
        payload = json.dumps(body, separators=(",", ":")).encode()
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class _Client(asyncio.Protocol):
    """One connection: send, read the whole answer, record the latency, send the next."""

    def __init__(
        self,
        requests: list[bytes],
        first: int,
        step: int,
        stop: float,
        latencies: list[float],
        errors: list[int],
        done: asyncio.Future[None],
    ) -> None:
        self.requests, self.i, self.step, self.stop = requests, first, step, stop
        self.latencies, self.errors, self.done = latencies, errors, done
        self.buffer = bytearray()
        self.need = -1  # bytes of the current answer, once its head is read
        self.status = 0
        self.sent_at = 0.0
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        data = self.requests[self.i % len(self.requests)]
        self.i += self.step
        self.need = -1
        self.sent_at = time.perf_counter()
        self.transport.write(data)

    def _finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.need < 0:
                end = self.buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buffer[:end]).lower()
                self.status = int(head[9:12])
                at = head.find(b"\r\ncontent-length:")
                if at >= 0:
                    stop = head.find(b"\r\n", at + 2)
                    self.need = end + 4 + int(head[at + 17 : stop if stop > 0 else None])
                elif b"transfer-encoding: chunked" in head:
                    last = self.buffer.find(b"\r\n0\r\n\r\n", end)
                    if last < 0:
                        return
                    self.need = last + 7
                else:
                    raise RuntimeError("an answer without a length")
            if len(self.buffer) < self.need:
                return
            now = time.perf_counter()
            del self.buffer[: self.need]
            self.latencies.append(now - self.sent_at)
            if self.status != 200:
                self.errors[0] += 1
            if now >= self.stop:
                assert self.transport is not None
                self.transport.close()
                self._finish()
                return
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()


async def _drive(
    port: int, requests: list[bytes], clients: int, seconds: float
) -> tuple[list[float], int, float]:
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    errors = [0]
    dones: list[asyncio.Future[None]] = []
    began = time.perf_counter()
    stop = began + seconds
    for n in range(clients):
        done: asyncio.Future[None] = loop.create_future()
        dones.append(done)

        def make(n: int = n, done: asyncio.Future[None] = done) -> _Client:
            return _Client(requests, n, clients, stop, latencies, errors, done)

        await loop.create_connection(make, "127.0.0.1", port)
    await asyncio.wait_for(asyncio.gather(*dones), seconds + 60)
    return latencies, errors[0], time.perf_counter() - began


def _run(coro_fn: Callable[[], Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro_fn())
    return uvloop.run(coro_fn())


def _over_server(pid: int | None, read: Callable[[Any], float]) -> float | None:
    """``read`` summed over a server process and its children (None without a pid, without
    psutil, or when the process is gone)."""
    if pid is None:
        return None
    try:
        import psutil
    except ImportError:
        return None
    try:
        proc = psutil.Process(pid)
        return float(sum(read(p) for p in [proc, *proc.children(recursive=True)]))
    except psutil.Error:
        return None


def _cpu_seconds(pid: int | None) -> float | None:
    """CPU time of a server process and its children (None without psutil)."""
    return _over_server(pid, lambda p: p.cpu_times().user + p.cpu_times().system)


def _rss_mb(pid: int | None) -> float | None:
    """Resident memory of a server process and its children, MB (None without psutil)."""
    rss = _over_server(pid, lambda p: p.memory_info().rss)
    return None if rss is None else round(rss / 2**20, 1)


def _load(
    port: int, requests: list[bytes], clients: int, seconds: float, pid: int | None = None
) -> dict[str, Any]:
    """Drive the server; latency percentiles over every request."""
    load_before = os.getloadavg()[0]
    cpu_before = _cpu_seconds(pid)
    latencies, errors, elapsed = _run(lambda: _drive(port, requests, clients, seconds))
    cpu_after = _cpu_seconds(pid)
    ms = np.asarray(latencies) * 1000
    out: dict[str, Any] = {
        "clients": clients,
        "requests": len(ms),
        "errors": errors,
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p90_ms": round(float(np.percentile(ms, 90)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
        "max_ms": round(float(ms.max()), 2),
        "throughput_rps": round(len(ms) / elapsed, 1),
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if cpu_before is not None and cpu_after is not None and len(ms):
        out["server_cpu_ms_per_request"] = round((cpu_after - cpu_before) * 1000 / len(ms), 3)
    rss = _rss_mb(pid)
    if rss is not None:
        out["server_rss_mb"] = rss
    return out


def _peer_rows(home: Path, n: int) -> list[dict[str, Any]]:
    """One-row ``dataframe_split`` payloads of the bundle's features, in plain dtypes."""
    import pandas as pd

    from features.build import build_features
    from features.history import load_history
    from salesml.scoring import load_scorer
    from salesml.warehouse import connect

    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        history = load_history(con)
    finally:
        con.close()
    bundle = load_scorer("champion").bundle
    features = build_features(history, history.exported_at)[bundle.features].head(n)
    plain = features.astype(
        {
            c: "object"
            if isinstance(features[c].dtype, pd.CategoricalDtype)
            or not pd.api.types.is_numeric_dtype(features[c])
            else "float64"
            for c in features.columns
        }
    )
    out = []
    for i in range(len(plain)):
        row = json.loads(plain.iloc[[i]].to_json(orient="split", index=False))
        out.append({"dataframe_split": {"columns": row["columns"], "data": row["data"]}})
    return out


def _requests(
    port: int,
    headers: dict[str, str],
    deal_ids: list[str],
    owners: list[str],
    created: str,
    stages: list[str],
) -> tuple[list[bytes], list[bytes], list[bytes], list[bytes]]:
    """The pre-encoded requests of each phase: known deal, what-if, new deal, GET."""
    one = [
        request("POST", port, "/v1/deals/score", headers, {"deals": [{"deal_id": d}]})
        for d in deal_ids
    ]
    whatif = [
        request(
            "POST",
            port,
            "/v1/deals/score",
            headers,
            {"deals": [{"deal_id": d, "overrides": {"amount": 10000.0 + i}}]},
        )
        for i, d in enumerate(deal_ids[:200])
    ]
    new = [
        request(
            "POST",
            port,
            "/v1/deals/score",
            headers,
            {
                "deals": [
                    {
                        "deal": {
                            "deal_id": f"BENCH-NEW-{i}",
                            "created_at": created,
                            "owner_id": owners[i % len(owners)],
                            "amount": 5000.0 + 37 * i,
                            "stage": stages[i % len(stages)],
                        }
                    }
                ]
            },
        )
        for i in range(200)
    ]
    get = [request("GET", port, f"/v1/deals/{d}", headers) for d in deal_ids]
    return one, whatif, new, get


def _open_stages(home: Path) -> list[str]:
    """The stages the data's open deals have been in (a new deal's stage must be known)."""
    from salesml.warehouse import connect

    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        rows = con.execute(
            "SELECT DISTINCT s.stage FROM stage_history s JOIN deals d USING (deal_id) "
            "WHERE d.status = 'open' AND s.stage IS NOT NULL ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in rows]


def _peer(
    home: Path, env: dict[str, str], workers: int, clients: int, seconds: float
) -> dict[str, Any]:
    """``mlflow models serve`` on the champion, driven like ours (one ``dataframe_split`` row
    of a deal's features per request)."""
    bin_dir = Path(sys.executable).parent
    peer_port = _free_port()
    peer = subprocess.Popen(
        [
            str(bin_dir / "mlflow"),
            "models",
            "serve",
            "-m",
            "models:/salesml-win@champion",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "-p",
            str(peer_port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(f"http://127.0.0.1:{peer_port}/ping", 300, peer)
        rows = [
            request("POST", peer_port, "/invocations", {}, row) for row in _peer_rows(home, 200)
        ]
        _load(peer_port, rows[:20], 4, 2.0)
        return _load(peer_port, rows, clients, seconds, peer.pid)
    finally:
        peer.terminate()
        peer.wait(30)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of both servers (salesml serve --workers, mlflow models serve "
        "--workers); both default to 1",
    )
    args = parser.parse_args(argv)
    home = args.home.resolve()
    env = dict(os.environ)
    env.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    env.update(
        SALESML_HOME=str(home),
        SALESML_API_RATE_PER_SECOND="1000000",
        SALESML_API_RATE_BURST="1000000",
        SALESML_API_POLL_SECONDS="0",
        OMP_WAIT_POLICY="PASSIVE",
    )
    # mlflow models serve starts `uvicorn` through the shell: the venv's bin must be on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    os.environ.update({k: env[k] for k in ("MLFLOW_TRACKING_URI", "SALESML_HOME")})
    from serving.keys import KeyStore
    from serving.runs import RunStore

    run = RunStore(home).latest()
    if run is None:
        raise SystemExit(f"no score run in {home}; run: salesml score --all")
    known = RunStore(home).read(run, columns=["deal_id", "owner_id", "as_of"])
    deal_ids = known["deal_id"].astype(str).tolist()
    created = pd.Timestamp(known["as_of"].iloc[0]).strftime("%Y-%m-%dT%H:%M:%SZ")
    owners = known["owner_id"].dropna().astype(str).tolist()
    stages = _open_stages(home)
    _, key = KeyStore.for_home(home).add("benchmark", ["admin"])
    headers = {"X-API-Key": key}
    result: dict[str, Any] = {
        "clients": args.clients,
        "seconds": args.seconds,
        "deals_in_run": len(deal_ids),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    server = subprocess.Popen(
        [
            str(bin_dir / "salesml"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    clients, seconds = args.clients, args.seconds
    try:
        _wait(f"http://127.0.0.1:{port}/readyz", 300, server)
        one, whatif, new, get = _requests(port, headers, deal_ids, owners, created, stages)
        # Warm-up (connections, code paths) until every answer is a 200: with --workers N,
        # /readyz answers from whichever worker took the connection, and another may still be
        # loading (503s counted as the next phase's errors otherwise).
        end = time.monotonic() + 300
        while _load(port, one[:50] + whatif[:50], 8, 2.0)["errors"] and time.monotonic() < end:
            time.sleep(1)
        pid = server.pid
        result["salesml_score_one_deal"] = _load(port, one, clients, seconds, pid)
        result["salesml_score_whatif"] = _load(port, whatif, clients, seconds, pid)
        result["salesml_score_whatif_1_client"] = _load(port, whatif, 1, seconds, pid)
        result["salesml_score_new_deal"] = _load(port, new, clients, seconds, pid)
        result["salesml_score_new_deal_1_client"] = _load(port, new, 1, seconds, pid)
        result["salesml_get_deal_1_client"] = _load(port, get, 1, seconds, pid)
        result["salesml_get_deal"] = _load(port, get, clients, seconds, pid)
    finally:
        server.terminate()
        server.wait(30)
    if not args.skip_peer:
        result["mlflow_serve_one_deal"] = _peer(home, env, args.workers, clients, seconds)
        theirs = result["mlflow_serve_one_deal"]
        for name in ("one_deal", "whatif", "new_deal"):  # cached, then the live answers
            ours = result[f"salesml_score_{name}"]
            result[f"{name}_throughput_ratio_vs_mlflow"] = round(
                ours["throughput_rps"] / max(theirs["throughput_rps"], 1e-9), 2
            )
    # Which rows are answers kept per snapshot and which are computed on every request.
    result["cached_rows"] = [k for k in result if k.startswith(CACHED)]
    result["live_rows"] = [k for k in result if k.startswith(LIVE)]
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

"""API benchmark: ``salesml serve`` against ``mlflow models serve`` on the same bundle.

    python -m benchmarks.api --home .salesml/demo [--clients 20] [--seconds 10]

Needs a workspace with a warehouse, a registered champion (``MLFLOW_TRACKING_URI``, default
``sqlite:///<home>/mlflow.db``) and a score run (``salesml score --all``). Starts both servers on
loopback, drives each with ``--clients`` concurrent clients posting one deal per request, then
measures ``GET /v1/deals/{id}``, and prints one JSON object (latencies in ms, throughput in
requests per second, and the ratios against the peer).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np


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


def _load(
    url: str,
    bodies: list[Any],
    headers: dict[str, str],
    clients: int,
    seconds: float,
    method: str = "POST",
) -> dict[str, float]:
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    stop = time.monotonic() + seconds

    def client(n: int) -> None:
        with httpx.Client(headers=headers, timeout=30) as http:
            i = n
            while time.monotonic() < stop:
                body = bodies[i % len(bodies)]
                i += clients
                start = time.perf_counter()
                if method == "POST":
                    response = http.post(url, json=body)
                else:
                    response = http.get(url.format(body))
                latencies[n].append(time.perf_counter() - start)
                if response.status_code != 200:
                    errors[n] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - began
    flat = np.asarray([x for lat in latencies for x in lat]) * 1000
    return {
        "requests": len(flat),
        "errors": int(sum(errors)),
        "p50_ms": round(float(np.percentile(flat, 50)), 2),
        "p99_ms": round(float(np.percentile(flat, 99)), 2),
        "throughput_rps": round(len(flat) / elapsed, 1),
    }


def _peer_rows(home: Path, n: int) -> list[dict[str, Any]]:
    """One-row ``dataframe_split`` payloads of the bundle's features, in plain dtypes."""
    import pandas as pd

    from features.build import build_features
    from features.history import load_history
    from salesml.tracking import load_win_bundle
    from salesml.warehouse import connect

    con = connect(home / "warehouse.duckdb", read_only=True)
    try:
        history = load_history(con)
    finally:
        con.close()
    bundle = load_win_bundle("champion").bundle
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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--skip-peer", action="store_true")
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
    deal_ids = RunStore(home).read(run, columns=["deal_id"])["deal_id"].astype(str).tolist()
    _, key = KeyStore.for_home(home).add("benchmark", ["admin"])
    headers = {"X-API-Key": key}
    result: dict[str, Any] = {
        "clients": args.clients,
        "seconds": args.seconds,
        "deals_in_run": len(deal_ids),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
    }
    bin_dir = Path(sys.executable).parent
    port = _free_port()
    server = subprocess.Popen(
        [str(bin_dir / "salesml"), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait(f"{base}/readyz", 300, server)
        one = [{"deals": [{"deal_id": d}]} for d in deal_ids]
        whatif = [
            {"deals": [{"deal_id": d, "overrides": {"amount": 10000.0 + i}}]}
            for i, d in enumerate(deal_ids[:200])
        ]
        _load(f"{base}/v1/deals/score", one[:50], headers, 4, 2.0)  # warm-up
        result["salesml_score_one_deal"] = _load(
            f"{base}/v1/deals/score", one, headers, args.clients, args.seconds
        )
        result["salesml_score_whatif"] = _load(
            f"{base}/v1/deals/score", whatif, headers, args.clients, args.seconds
        )
        result["salesml_get_deal"] = _load(
            base + "/v1/deals/{}", deal_ids, headers, args.clients, args.seconds, method="GET"
        )
    finally:
        server.terminate()
        server.wait(30)
    if not args.skip_peer:
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
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            peer_base = f"http://127.0.0.1:{peer_port}"
            _wait(f"{peer_base}/ping", 300, peer)
            rows = _peer_rows(home, 200)
            _load(f"{peer_base}/invocations", rows[:20], {}, 4, 2.0)
            result["mlflow_serve_one_deal"] = _load(
                f"{peer_base}/invocations", rows, {}, args.clients, args.seconds
            )
        finally:
            peer.terminate()
            peer.wait(30)
        ours, theirs = result["salesml_score_one_deal"], result["mlflow_serve_one_deal"]
        result["throughput_ratio_vs_mlflow"] = round(
            ours["throughput_rps"] / max(theirs["throughput_rps"], 1e-9), 2
        )
        result["p99_ratio_vs_mlflow"] = round(ours["p99_ms"] / max(theirs["p99_ms"], 1e-9), 2)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

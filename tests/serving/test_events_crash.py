"""A ``kill -9`` of ``salesml serve`` while CRM events stream in loses no acknowledged event
and applies none twice (docs/events.md)."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from salesml.warehouse import connect
from serving.events.journal import journal_path
from serving.keys import KeyStore
from tests.serving.conftest import Workspace


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(home: Path, tracking_uri: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SALESML_HOME": str(home), "MLFLOW_TRACKING_URI": tracking_uri}
    salesml = Path(sys.executable).parent / "salesml"
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(salesml), "serve", "--port", str(port), "--poll-seconds", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=home.parent,
        )


def _wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        assert proc.poll() is None, "the server exited while starting"
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("the server did not get ready")


def _event(n: int, deal_id: str) -> dict[str, object]:
    return {
        "event_id": f"crash-{n}",
        "type": "activity.logged",
        "occurred_at": "2026-04-01T09:00:00Z",
        "activity": {"deal_id": deal_id, "type": "call" if n % 2 else "email"},
    }


def _stream_then_kill(
    proc: subprocess.Popen[bytes], url: str, headers: dict[str, str], deals: list[str]
) -> list[str]:
    """Post events continuously, SIGKILL the server meanwhile; the ids acknowledged (202)."""
    acknowledged: list[str] = []
    stop = threading.Event()

    def post() -> None:
        sent = 0
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                batch = [_event(sent + i, deals[(sent + i) % len(deals)]) for i in range(5)]
                sent += 5
                try:
                    answer = client.post(f"{url}/v1/events", headers=headers, json=batch)
                except httpx.HTTPError:
                    return  # the server died mid-request: not acknowledged
                if answer.status_code == 202:
                    acknowledged.extend(str(e["event_id"]) for e in batch)

    poster = threading.Thread(target=post)
    poster.start()
    time.sleep(4.0)  # long enough for scoring and a warehouse fold to be under way
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    stop.set()
    poster.join(timeout=30)
    return acknowledged


def _wait_applied(url: str, headers: dict[str, str], event_id: str) -> dict[str, object]:
    end = time.monotonic() + 120
    status: dict[str, object] = {}
    while time.monotonic() < end:
        status = httpx.get(f"{url}/v1/events/{event_id}", headers=headers, timeout=5).json()
        if status.get("folded") and status.get("scored"):
            break
        time.sleep(0.5)
    return status


def _journaled(home: Path) -> set[str]:
    with sqlite3.connect(journal_path(home)) as con:
        return {r[0] for r in con.execute("SELECT event_id FROM events")}


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_kill_9_during_ingestion_loses_nothing_acknowledged_and_applies_nothing_twice(
    workspace: Workspace, tmp_path: Path
) -> None:
    home = workspace.copy_home(tmp_path / "home")
    key = KeyStore.for_home(home).add("crm", ["events:write", "scores:read"])[1]
    headers = {"X-API-Key": key}
    opened = workspace.history.deals["status"] == "open"
    deals = sorted(workspace.history.deals.loc[opened, "deal_id"])[:20]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    proc = _serve(home, workspace.tracking_uri, port, log)
    try:
        _wait_ready(url, proc)
        acknowledged = _stream_then_kill(proc, url, headers, deals)
        assert len(acknowledged) >= 20, log.read_text()[-2000:]
        # Every acknowledged event is in the journal, before any restart.
        assert set(acknowledged) <= _journaled(home)
        proc = _serve(home, workspace.tracking_uri, port, log)
        _wait_ready(url, proc)
        status = _wait_applied(url, headers, acknowledged[-1])
        assert status.get("folded") and status.get("scored"), status
        again = httpx.post(
            f"{url}/v1/events", headers=headers, json=[_event(0, deals[0])], timeout=10
        )
        assert again.json()["results"][0]["status"] == "duplicate"
    finally:
        _stop(proc)
    stored = _journaled(home)
    with sqlite3.connect(journal_path(home)) as con:
        unfolded = con.execute("SELECT count(*) FROM events WHERE folded_at IS NULL").fetchone()
    assert unfolded == (0,)
    with connect(home / "warehouse.duckdb", read_only=True) as con:
        rows = con.execute(
            "SELECT activity_id, count(*) FROM activities WHERE activity_id LIKE 'crash-%' "
            "GROUP BY 1"
        ).fetchall()
    in_warehouse = {r[0]: r[1] for r in rows}
    assert set(acknowledged) <= set(in_warehouse)  # none lost
    assert set(in_warehouse) == stored  # nothing that was not journaled
    assert all(n == 1 for n in in_warehouse.values())  # none applied twice

"""The event journal: every accepted CRM event, durable before it is acknowledged.

One SQLite file per workspace (``$SALESML_HOME/events/journal.sqlite``) in WAL mode with
``synchronous=FULL``: a commit returns once the event is in the write-ahead log on disk, so a
``kill -9`` (or a power cut) after ``POST /v1/events`` answered cannot lose it. The event id is
the primary key: the same event sent twice is stored once, and the second send is answered
``duplicate``.

An entry is stored with the canonical rows it writes (``rows``): the event resolved against
the deal as it stood when it was accepted (a partial deal update merged with the deal's row),
once, in journal order (``serving.api.live``). Everything after is a pure function of those
rows, so a restart resumes where the last process stopped and never does a step twice:

* the server's in-memory history and scores apply the rows of entries after the last one
  scored;
* ``folded``: the rows upserted into the warehouse (by key: doing it again changes nothing).

Live scores (``live_scores``) are what the server showed for a deal after its latest event;
they survive a restart and are dropped once a score run covers the deal at the event's time.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JOURNAL_DIR = "events"
JOURNAL_FILE = "journal.sqlite"

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        source TEXT NOT NULL,
        occurred_at TEXT NOT NULL,
        received_at TEXT NOT NULL,
        event TEXT NOT NULL,
        rows TEXT,
        resolved_at TEXT,
        folded_at TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS events_unfolded ON events (seq) WHERE folded_at IS NULL",
    """CREATE TABLE IF NOT EXISTS live_scores (
        deal_id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        scored_at TEXT NOT NULL,
        row TEXT NOT NULL
    )""",
)


def journal_path(home: Path) -> Path:
    return home / JOURNAL_DIR / JOURNAL_FILE


def now_text() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Entry:
    """One journal entry."""

    seq: int
    event_id: str
    type: str
    source: str
    occurred_at: str
    event: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]] | None
    folded: bool


@dataclass(frozen=True)
class LiveScore:
    """The score the server showed for a deal after its latest event."""

    deal_id: str
    seq: int
    event_id: str
    scored_at: str
    row: dict[str, Any]


class Journal:
    """The workspace's event journal (thread-safe: one connection, one lock)."""

    def __init__(self, home: Path) -> None:
        self.path = journal_path(home)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute("PRAGMA busy_timeout=10000")
        for statement in SCHEMA:
            self._con.execute(statement)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction. ``durable=False``: committed without waiting for the disk
        (``synchronous=NORMAL``; in WAL mode a ``kill -9`` still keeps it, a power cut may
        lose it until the next durable commit syncs the log) — for what can be done again
        from the events themselves: live scores and fold marks."""
        with self._lock:
            if not durable:
                self._con.execute("PRAGMA synchronous=NORMAL")
            try:
                self._con.execute("BEGIN IMMEDIATE")
                try:
                    yield self._con
                except BaseException:
                    self._con.execute("ROLLBACK")
                    raise
                self._con.execute("COMMIT")
            finally:
                if not durable:
                    self._con.execute("PRAGMA synchronous=FULL")

    # writing -------------------------------------------------------------------------------
    def append(self, events: Sequence[dict[str, Any]], source: str) -> list[int | None]:
        """Store ``events`` (each with ``event_id``, ``type``, ``occurred_at`` and the ``rows``
        it resolved to) in one durable commit; per event its sequence number, or ``None`` when
        the id was already stored."""
        received = now_text()
        out: list[int | None] = []
        with self._transaction() as con:
            for event in events:
                cur = con.execute(
                    "INSERT OR IGNORE INTO events (event_id, type, source, occurred_at, "
                    "received_at, event, rows, resolved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        event["event_id"],
                        event["type"],
                        source,
                        event["occurred_at"],
                        received,
                        json.dumps({k: v for k, v in event.items() if k != "rows"}),
                        json.dumps(event["rows"]),
                        received,
                    ],
                )
                out.append(cur.lastrowid if cur.rowcount == 1 else None)
        return out

    def known(self, event_ids: Sequence[str]) -> set[str]:
        """The ids of ``event_ids`` already in the journal."""
        if not event_ids:
            return set()
        found: set[str] = set()
        with self._lock:
            for start in range(0, len(event_ids), 500):
                chunk = list(event_ids[start : start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._con.execute(
                    f"SELECT event_id FROM events WHERE event_id IN ({marks})", chunk
                ).fetchall()
                found.update(r[0] for r in rows)
        return found

    def mark_folded(self, seqs: Sequence[int]) -> None:
        stamp = now_text()
        with self._transaction(durable=False) as con:
            con.executemany(
                "UPDATE events SET folded_at = ? WHERE seq = ? AND folded_at IS NULL",
                [(stamp, s) for s in seqs],
            )

    def put_live(self, scores: Sequence[LiveScore]) -> None:
        with self._transaction(durable=False) as con:
            con.executemany(
                "INSERT INTO live_scores VALUES (?, ?, ?, ?, ?) ON CONFLICT (deal_id) DO UPDATE "
                "SET seq = excluded.seq, event_id = excluded.event_id, "
                "scored_at = excluded.scored_at, row = excluded.row",
                [
                    (s.deal_id, s.seq, s.event_id, s.scored_at, json.dumps(s.row, sort_keys=True))
                    for s in scores
                ],
            )

    def drop_live(self, deal_ids: Sequence[str]) -> None:
        with self._transaction(durable=False) as con:
            con.executemany("DELETE FROM live_scores WHERE deal_id = ?", [(d,) for d in deal_ids])

    # reading -------------------------------------------------------------------------------
    def _entries(self, where: str, limit: int) -> list[Entry]:
        with self._lock:
            rows = self._con.execute(
                "SELECT seq, event_id, type, source, occurred_at, event, rows, folded_at "
                f"FROM events WHERE {where} ORDER BY seq LIMIT ?",
                [limit],
            ).fetchall()
        return [
            Entry(
                seq=int(r[0]),
                event_id=str(r[1]),
                type=str(r[2]),
                source=str(r[3]),
                occurred_at=str(r[4]),
                event=json.loads(r[5]),
                rows=None if r[6] is None else json.loads(r[6]),
                folded=r[7] is not None,
            )
            for r in rows
        ]

    def after(self, seq: int, limit: int = 2000) -> list[Entry]:
        """The entries after ``seq``, in journal order."""
        return self._entries(f"seq > {int(seq)}", limit)

    def unfolded(self, limit: int = 5000) -> list[Entry]:
        """Entries whose rows are not in the warehouse yet, in journal order."""
        return self._entries("folded_at IS NULL", limit)

    def since_folded(self, stamp: float | None) -> list[Entry]:
        """Every entry from the first one a warehouse read at ``stamp`` (its file's mtime) may
        lack: not folded, or folded at or after it (a second's margin; folding the same rows
        twice in journal order changes nothing)."""
        where = "folded_at IS NULL"
        if stamp is not None:
            moment = datetime.fromtimestamp(stamp - 1.0, UTC).replace(tzinfo=None).isoformat()
            where += f" OR folded_at >= '{moment}'"
        with self._lock:
            row = self._con.execute(f"SELECT min(seq) FROM events WHERE {where}").fetchone()
        if row is None or row[0] is None:
            return []
        return self._entries(f"seq >= {int(row[0])}", 1_000_000)

    def entry(self, event_id: str) -> Entry | None:
        with self._lock:
            row = self._con.execute(
                "SELECT seq FROM events WHERE event_id = ?", [event_id]
            ).fetchone()
        if row is None:
            return None
        found = self._entries(f"seq = {int(row[0])}", 1)
        return found[0] if found else None

    def live_scores(self) -> list[LiveScore]:
        with self._lock:
            rows = self._con.execute(
                "SELECT deal_id, seq, event_id, scored_at, row FROM live_scores ORDER BY seq"
            ).fetchall()
        return [
            LiveScore(str(r[0]), int(r[1]), str(r[2]), str(r[3]), json.loads(r[4])) for r in rows
        ]

    def counts(self) -> dict[str, int]:
        with self._lock:
            row = self._con.execute("SELECT count(*), count(folded_at) FROM events").fetchone()
            live = self._con.execute("SELECT count(*) FROM live_scores").fetchone()
        total, folded = (int(v) for v in row)
        return {"events": total, "folded": folded, "live_scores": int(live[0])}

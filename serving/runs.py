"""Score runs at rest: immutable Parquet folders and an atomically flipped ``latest`` pointer.

Layout under ``$SALESML_HOME/score_runs/``::

    <run_id>/run.json             manifest: as_of, model version, rows, columns, JSON columns
    <run_id>/scores/part-*.parquet  one row per deal (whatever ``score_features`` returns, plus
                                    ``input_hash``); list / dict columns are stored as JSON text
    LATEST                        the id of the run the API serves (temp file + ``os.replace``)
    .tmp-<run_id>-<nonce>/        a run being written: invisible to readers
    .lock                         held (flock) by the one batch writing at a time

A run becomes visible only by renaming its finished temporary folder into place, after every
part and the manifest are written and the rows checked (unique deals, the expected set). A
killed batch leaves a ``.tmp-*`` folder that readers ignore and the next batch removes; a rerun
of the same id replaces only that run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from salesml import jsonio
from salesml.errors import ConfigError, SalesmlError

RUNS_DIR = "score_runs"
LATEST = "LATEST"
MANIFEST = "run.json"
SCORES = "scores"
HASH_COLUMN = "input_hash"
RUN_FORMAT = 1
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RunError(SalesmlError):
    """A score run cannot be written or read."""


@dataclass(frozen=True)
class RunInfo:
    """A complete score run (its manifest)."""

    run_id: str
    path: Path
    as_of: pd.Timestamp
    model_version: str
    rows: int
    created_at: str
    columns: tuple[str, ...]
    json_columns: tuple[str, ...]
    engine: str
    rescored: int
    copied: int

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "path": str(self.path),
            "as_of": self.as_of.isoformat(),
            "model_version": self.model_version,
            "rows": self.rows,
            "created_at": self.created_at,
            "engine": self.engine,
            "rescored": self.rescored,
            "copied": self.copied,
        }


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.match(run_id):
        raise ConfigError(
            f"invalid run id {run_id!r}: 1-64 letters, digits or ._- starting with a letter "
            "or digit"
        )
    return run_id


def default_run_id(as_of: pd.Timestamp) -> str:
    """One run per as_of: rerunning the same night's batch replaces that night's run."""
    return f"{pd.Timestamp(as_of):%Y%m%dT%H%M%S}"


# -- rows as stored ---------------------------------------------------------------------------
def _is_nested(value: object) -> bool:
    return isinstance(value, list | dict | tuple | np.ndarray)


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return value.isoformat()
    return value


def to_storable(rows: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """``rows`` with list / dict columns as JSON text, and the names of those columns."""
    out = rows.copy()
    json_columns = []
    for column in out.columns:
        series = out[column]
        if series.dtype != object:
            continue
        present = series.dropna()
        if len(present) and present.map(_is_nested).any():
            out[column] = series.map(
                lambda v: None if v is None else jsonio.dumps(_plain(v), separators=(",", ":"))
            )
            json_columns.append(str(column))
    return out, json_columns


def row_hashes(features: pd.DataFrame, model_version: str) -> pd.Series:
    """Per deal: a hash of its feature row (index included) and the model version, as hex."""
    hashed = pd.util.hash_pandas_object(features, index=True).to_numpy(dtype=np.uint64)
    salt = pd.util.hash_array(np.asarray([str(model_version)], dtype=object))[0]
    mixed = (hashed ^ np.uint64(salt)) * np.uint64(0x9E3779B97F4A7C15)
    return pd.Series([f"{int(v):016x}" for v in mixed], index=features.index, name=HASH_COLUMN)


# -- the store --------------------------------------------------------------------------------
PartWriter = Callable[[Path], None]


class RunStore:
    """Score runs of one workspace."""

    def __init__(self, home: Path) -> None:
        self.root = home / RUNS_DIR

    # reading ---------------------------------------------------------------------------------
    def info(self, run_id: str) -> RunInfo | None:
        path = self.root / run_id
        manifest = path / MANIFEST
        if not _RUN_ID.match(run_id) or not manifest.is_file():
            return None
        try:
            doc = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return RunInfo(
            run_id=run_id,
            path=path,
            as_of=pd.Timestamp(doc["as_of"]),
            model_version=str(doc["model_version"]),
            rows=int(doc["rows"]),
            created_at=str(doc["created_at"]),
            columns=tuple(doc["columns"]),
            json_columns=tuple(doc.get("json_columns", [])),
            engine=str(doc.get("engine", "local")),
            rescored=int(doc.get("rescored", doc["rows"])),
            copied=int(doc.get("copied", 0)),
        )

    def list_runs(self) -> list[RunInfo]:
        """Every complete run, oldest first (by completion time)."""
        if not self.root.is_dir():
            return []
        runs = [self.info(p.name) for p in self.root.iterdir() if p.is_dir()]
        return sorted((r for r in runs if r is not None), key=lambda r: (r.created_at, r.run_id))

    def latest_id(self) -> str | None:
        try:
            run_id = (self.root / LATEST).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return run_id or None

    def latest(self) -> RunInfo | None:
        """The run ``LATEST`` points at (the newest complete run if the pointer is stale)."""
        run_id = self.latest_id()
        info = self.info(run_id) if run_id else None
        if info is not None:
            return info
        runs = self.list_runs()
        return runs[-1] if runs else None

    def read(self, run: RunInfo, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """The rows of a run (JSON columns left as text; see ``decode``)."""
        files = part_files(run.path / SCORES)
        if not files:
            return pd.DataFrame(columns=list(columns or run.columns))
        wanted = list(columns) if columns is not None else None
        frames = [pd.read_parquet(f, columns=wanted) for f in files]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def read_deals(self, run: RunInfo, deal_ids: pd.Index) -> pd.DataFrame:
        """The rows of ``run`` for ``deal_ids`` (filtered in Arrow, before pandas sees them)."""
        files = part_files(run.path / SCORES)
        if not files:
            return pd.DataFrame(columns=list(run.columns))
        wanted = pa.array(pd.Index(deal_ids).astype(str).to_numpy(dtype=object), type=pa.string())
        tables = []
        for f in files:
            table = pq.read_table(f)
            ids = pc.cast(table.column("deal_id"), pa.string())
            tables.append(table.filter(pc.is_in(ids, value_set=wanted)))
        rows: pd.DataFrame = pa.concat_tables(tables).to_pandas()
        return rows

    def iter_deals(self, run: RunInfo, deal_ids: pd.Index) -> Iterator[pa.Table]:
        """``read_deals`` one part at a time (as Arrow tables: a copy of any size in bounded
        memory)."""
        wanted = pa.array(pd.Index(deal_ids).astype(str).to_numpy(dtype=object), type=pa.string())
        for f in part_files(run.path / SCORES):
            parquet = pq.ParquetFile(f)
            for group in range(parquet.num_row_groups):  # a row group per batch write
                table = parquet.read_row_group(group)
                ids = pc.cast(table.column("deal_id"), pa.string())
                kept = table.filter(pc.is_in(ids, value_set=wanted))
                del table
                if kept.num_rows:
                    yield kept

    def iter_parts(self, run: RunInfo) -> Iterator[pd.DataFrame]:
        """The rows of a run one part at a time (JSON columns as text)."""
        for f in part_files(run.path / SCORES):
            yield pd.read_parquet(f)

    def deal_history(self, deal_id: str, limit: int | None = None) -> pd.DataFrame:
        """The deal's rows across runs, oldest first (one row per run that scored it)."""
        runs = self.list_runs()
        if limit is not None:
            runs = runs[-limit:]
        out = []
        for run in runs:
            files = part_files(run.path / SCORES)
            for f in files:
                rows = pd.read_parquet(f, filters=[("deal_id", "==", deal_id)])
                if len(rows):
                    out.append(rows.assign(run_id=run.run_id))
        return pd.concat(out, ignore_index=True) if out else pd.DataFrame()

    # writing ---------------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """Hold the workspace's batch lock (one batch writes at a time)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(
                    f"another batch is writing score runs in {self.root}; wait for it to finish"
                ) from None
            try:
                self._recover()
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _recover(self) -> None:
        """Remove what killed batches left behind (called with the lock held)."""
        for path in self.root.iterdir():
            if path.name.startswith(".trash-"):
                run_id = path.name.removeprefix(".trash-").rsplit("-", 1)[0]
                target = self.root / run_id
                if not target.exists() and (path / MANIFEST).is_file():
                    path.replace(target)  # killed between the two renames: put it back
                else:
                    shutil.rmtree(path, ignore_errors=True)
            elif path.name.startswith(".tmp-"):
                shutil.rmtree(path, ignore_errors=True)

    def write(
        self,
        run_id: str,
        write_parts: PartWriter,
        *,
        as_of: pd.Timestamp,
        model_version: str,
        engine: str,
        expected_deals: pd.Index | None = None,
        rescored: int | None = None,
        copied: int = 0,
        json_columns: Sequence[str] = (),
        flip_latest: bool = True,
    ) -> RunInfo:
        """Write a complete run: parts into a hidden folder, check, manifest, rename, flip.

        ``write_parts(folder)`` writes ``part-*.parquet`` files into ``folder``. Call inside
        ``writing()``.
        """
        check_run_id(run_id)
        tmp = self.root / f".tmp-{run_id}-{uuid.uuid4().hex[:8]}"
        scores = tmp / SCORES
        scores.mkdir(parents=True)
        try:
            write_parts(scores)
            files = part_files(scores)
            ids = _written_ids(files)
            if not ids.is_unique:
                twice = ids[ids.duplicated()][0]
                raise RunError(f"run {run_id}: deals scored twice ({twice})")
            if expected_deals is not None:
                missing = expected_deals.difference(ids)
                extra = ids.difference(expected_deals)
                if len(missing) or len(extra):
                    raise RunError(
                        f"run {run_id}: {len(missing)} deals missing, {len(extra)} unexpected"
                    )
            # The names from the first part's schema: its rows are never read back here.
            columns = [str(c) for c in pq.read_schema(files[0]).names] if files else ["deal_id"]
            manifest = {
                "format": RUN_FORMAT,
                "run_id": run_id,
                "as_of": pd.Timestamp(as_of).isoformat(),
                "model_version": str(model_version),
                "rows": len(ids),
                "created_at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "columns": columns,
                "json_columns": list(json_columns),
                "engine": engine,
                "rescored": len(ids) - copied if rescored is None else rescored,
                "copied": copied,
            }
            _write_text(tmp / MANIFEST, jsonio.dumps(manifest, indent=2))
            self._commit(tmp, run_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if flip_latest:
            self.advance_latest(run_id)
        info = self.info(run_id)
        assert info is not None
        return info

    def _commit(self, tmp: Path, run_id: str) -> None:
        target = self.root / run_id
        if target.exists():
            trash = self.root / f".trash-{run_id}-{uuid.uuid4().hex[:8]}"
            target.replace(trash)
            tmp.replace(target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            tmp.replace(target)

    def set_latest(self, run_id: str) -> None:
        """Point ``LATEST`` at ``run_id`` whatever its as-of (a deliberate rollback)."""
        if self.info(run_id) is None:
            raise RunError(f"no complete score run {run_id!r} in {self.root}")
        _write_text(self.root / LATEST, run_id + "\n")

    def advance_latest(self, run_id: str) -> bool:
        """Point ``LATEST`` at ``run_id`` unless the run it points at is as of a later date.

        ``LATEST`` only moves forward in as-of: a backfill (``score --as-of`` an earlier date)
        writes its run beside the others without making the API serve old scores. Returns
        whether the pointer moved.
        """
        new = self.info(run_id)
        if new is None:
            raise RunError(f"no complete score run {run_id!r} in {self.root}")
        current = self.latest()
        if current is not None and current.run_id != run_id and current.as_of > new.as_of:
            return False
        self.set_latest(run_id)
        return True


def part_files(folder: Path) -> list[Path]:
    """The Parquet parts of a run's scores folder, in the one order every reader uses."""
    return sorted(folder.glob("part-*.parquet"))


def _write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    fd, tmp = tempfile.mkstemp(prefix=".w-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _written_ids(files: Sequence[Path]) -> pd.Index:
    """The deal ids of the written parts, read column-only (as strings)."""
    if not files:
        return pd.Index([], dtype=object)
    ids = pa.chunked_array(
        [pc.cast(pq.read_table(f, columns=["deal_id"]).column(0), pa.string()) for f in files],
        type=pa.string(),
    )
    written: pd.Index = pd.Index(ids.to_numpy(zero_copy_only=False), dtype=object)
    return written


class PartsWriter:
    """Rows written as they come, in ``part-00000.parquet``, ``part-00001.parquet``, … of at
    most ``part_rows`` rows each (a row group per write): a run of any size is written without
    holding its rows. Every write has the first write's columns and types (a text column that
    was empty in the first write is text)."""

    def __init__(
        self, folder: Path, part_rows: int = 250_000, name: str = "part-{:05d}.parquet"
    ) -> None:
        self.folder, self.part_rows, self.name = folder, max(1, part_rows), name
        self.rows = 0
        self.schema: pa.Schema | None = None
        self._writer: pq.ParquetWriter | None = None
        self._in_part = 0
        self._parts = 0

    def write(self, rows: pd.DataFrame | pa.Table) -> None:
        table = (
            rows if isinstance(rows, pa.Table) else pa.Table.from_pandas(rows, preserve_index=False)
        )
        if self.schema is None:
            self.schema = pa.schema(
                [f.with_type(pa.string()) if pa.types.is_null(f.type) else f for f in table.schema]
            ).remove_metadata()
        table = table.select(self.schema.names).cast(self.schema)
        start = 0
        while start < table.num_rows:
            if self._writer is None or self._in_part >= self.part_rows:
                self._next_part()
            assert self._writer is not None
            take = min(self.part_rows - self._in_part, table.num_rows - start)
            self._writer.write_table(table.slice(start, take))
            self._in_part += take
            self.rows += take
            start += take

    def _next_part(self) -> None:
        if self._writer is not None:
            self._writer.close()
        assert self.schema is not None
        path = self.folder / self.name.format(self._parts)
        self._writer = pq.ParquetWriter(path, self.schema)
        self._parts += 1
        self._in_part = 0

    def close(self) -> None:
        """Finish the last part (an empty run gets one empty part, with its columns)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        elif self._parts == 0:
            empty = self.schema.empty_table() if self.schema is not None else pa.table({})
            pq.write_table(empty, self.folder / self.name.format(0))
            self._parts = 1


def write_frame_parts(rows: pd.DataFrame, folder: Path, part_rows: int = 250_000) -> None:
    """``rows`` as ``part-00000.parquet``, ``part-00001.parquet``, … of ``part_rows`` each."""
    for n, start in enumerate(range(0, max(len(rows), 1), part_rows)):
        rows.iloc[start : start + part_rows].to_parquet(
            folder / f"part-{n:05d}.parquet", index=False
        )


def decode(value: object) -> object:
    """A stored JSON column value back as lists / dicts."""
    if isinstance(value, str):
        return json.loads(value)
    return value

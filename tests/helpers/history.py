"""Synthetic histories for tests: generate (``salesml.synth``), import into a warehouse,
``load_history`` — the set-up most model tests start from, written once.

``synthetic_workspace(tmp_path_factory, deals=…, seed=…)`` generates and imports each
(deals, seed, end date) once per session (per xdist worker) and loads a fresh History for every
caller, so a test that changes its History's frames changes nobody else's. The export and the
warehouse on disk are shared: read them, never write them; a test that needs a workspace it may
change (score runs, keys, a CLI import) takes ``copy_home``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from features.history import History, load_history
from salesml.importers import read_export, run_import
from salesml.synth import generate
from salesml.warehouse import connect

END = date(2026, 6, 30)  # the export date of most synthetic histories in the tests
WAREHOUSE = "warehouse.duckdb"  # the name salesml looks for in SALESML_HOME


@dataclass(frozen=True)
class SyntheticWorkspace:
    """A generated export (with the generator's truth) imported into ``home/warehouse.duckdb``,
    and the History loaded from it."""

    root: Path
    history: History

    @property
    def export(self) -> Path:
        """The canonical export the generator wrote (``_truth/`` holds what it planted)."""
        return self.root / "export"

    @property
    def home(self) -> Path:
        """A SALESML_HOME holding the imported warehouse (and the import's rejects folder)."""
        return self.root / "home"

    @property
    def truth(self) -> pd.DataFrame:
        """One row per deal: what the generator planted and how the deal really ended."""
        return pd.read_parquet(self.export / "_truth" / "deals_truth.parquet")

    def copy_home(self, dest: Path) -> Path:
        """A private copy of ``home`` (the warehouse) that a test may write to."""
        shutil.copytree(self.home, dest)
        return dest


def synthesize(root: Path, deals: int, seed: int, end_date: date = END) -> SyntheticWorkspace:
    """Generate ``deals`` deals with ``seed`` into ``root/export``, import them into
    ``root/home`` and load the History (nothing cached: the benchmarks' entry point)."""
    generate(deals, seed, root / "export", end_date=end_date)
    return SyntheticWorkspace(root, import_history(root / "export", "canonical", root / "home"))


def import_history(export: Path, fmt: str, home: Path) -> History:
    """Import ``export`` (a folder in format ``fmt``) into ``home/warehouse.duckdb`` and load
    its History."""
    run_import(read_export(export, fmt), home / WAREHOUSE, home / "rejects")
    return warehouse_history(home / WAREHOUSE)


def warehouse_history(warehouse: Path) -> History:
    con = connect(warehouse, read_only=True)
    try:
        return load_history(con)
    finally:
        con.close()


_built: dict[tuple[int, int, date], Path] = {}


def synthetic_workspace(
    tmp_path_factory: pytest.TempPathFactory, deals: int, seed: int, end_date: date = END
) -> SyntheticWorkspace:
    """The synthetic workspace of ``(deals, seed, end_date)``: generated and imported the first
    time a session asks for it, with a History of the caller's own."""
    key = (deals, seed, end_date)
    if key in _built:
        root = _built[key]
        return SyntheticWorkspace(root, warehouse_history(root / "home" / WAREHOUSE))
    root = tmp_path_factory.mktemp(f"synthetic-{deals}-{seed}-{end_date:%Y%m%d}")
    workspace = synthesize(root, deals, seed, end_date)
    _built[key] = root
    return workspace

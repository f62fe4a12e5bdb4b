"""Project-level promises: generated docs are current, the folder import rules hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from salesml.schemas import TABLES, render_data_model_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_data_model_doc_is_generated_from_the_schemas() -> None:
    doc = (ROOT / "docs" / "data-model.md").read_text(encoding="utf-8")
    assert doc == render_data_model_markdown(), (
        "docs/data-model.md is stale: run python -m salesml.schemas > docs/data-model.md"
    )


def test_every_table_has_an_example_for_every_key_column() -> None:
    for table in TABLES.values():
        for key in table.key:
            assert table.column(key).example is not None, f"{table.name}.{key}"


def test_import_rules_between_top_level_folders_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

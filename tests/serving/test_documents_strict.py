"""Every JSON file a workspace holds after train, register and score is strict RFC 8259: model
bundles (bundle.json, timing.json), MLflow-logged documents, score runs and keys."""

from __future__ import annotations

import json
from typing import Any

from tests.serving.conftest import Workspace


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def test_every_json_document_in_a_trained_workspace_is_strict(workspace: Workspace) -> None:
    documents = sorted(workspace.root.rglob("*.json"))
    names = {path.name for path in documents}
    assert "bundle.json" in names, names
    for path in documents:
        try:
            json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse)
        except ValueError as error:
            raise AssertionError(f"{path.relative_to(workspace.root)}: {error}") from None

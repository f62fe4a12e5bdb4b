"""Shared test set-up: thread limits, the CLI's plugins, and the Maven CRM export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before LightGBM loads OpenMP (see the Makefile): tests run two workers on two cores, so each
# fit gets one thread, and waiting threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("SALESML_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
# The public Maven CRM export lives beside the repository, in shared/data (a checkout, a
# worktree folder and CI's clone all have shared/ next to them).
MAVEN_DIR = REPO_ROOT.parent / "shared" / "data" / "maven-crm"


@pytest.fixture(autouse=True, scope="session")
def _cli_plugins() -> None:
    """Register the commands of training/ and serving/ on the CLI, as the entry point does."""
    from salesml.cli import load_plugins

    load_plugins()


@pytest.fixture(scope="session")
def maven_dir() -> Path:
    """The Maven CRM export (shared/data/maven-crm beside the repository).

    Missing, it fails the test on CI (where ``CI`` is set: the data must be there, and a
    silent skip would hide that the Maven tests never ran) and skips it elsewhere, saying why.
    """
    if not MAVEN_DIR.is_dir():
        reason = f"the Maven CRM export is not at {MAVEN_DIR}"
        if os.environ.get("CI", "").lower() not in ("", "0", "false"):
            pytest.fail(f"{reason} (CI is set: the Maven tests must run there)", pytrace=False)
        pytest.skip(reason)
    return MAVEN_DIR

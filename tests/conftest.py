"""Shared test set-up."""

from __future__ import annotations

import os

import pytest

# Before LightGBM loads OpenMP (see the Makefile): tests run two workers on two cores, so each
# fit gets one thread, and waiting threads sleep instead of spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("SALESML_THREADS", "1")


@pytest.fixture(autouse=True, scope="session")
def _cli_plugins() -> None:
    """Register the commands of training/ and serving/ on the CLI, as the entry point does."""
    from salesml.cli import load_plugins

    load_plugins()

"""The app factory ``salesml serve`` hands uvicorn: ``create_app`` with the command's settings.

A module of its own with nothing heavy imported: with ``--workers N`` uvicorn pickles the
factory into each worker process, which unpickles it (importing this module) before it answers
its supervisor's health checks; the app, and everything it imports, is built when uvicorn calls
the factory.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from serving.api.settings import ApiSettings

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass(frozen=True)
class AppFactory:
    """``create_app(settings)``, picklable and cheap to unpickle."""

    settings: ApiSettings

    def __call__(self) -> FastAPI:
        from serving.api.app import create_app  # imported in the worker, when it builds the app

        return create_app(self.settings)

"""The scoring API (FastAPI): ``create_app`` builds it, ``salesml serve`` runs it (uvicorn).

See docs/api.md for endpoints, authentication, limits and errors.
"""

from __future__ import annotations

from serving.api.app import create_app

__all__ = ["create_app"]

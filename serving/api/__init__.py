"""The scoring API (FastAPI): ``serving.api.app.create_app`` builds it, ``salesml serve`` runs it
(uvicorn).

Nothing is imported here, so a module of the package (``serving.api.factory`` in a uvicorn
worker) loads without the whole app. See docs/api.md for endpoints, authentication, limits and
errors.
"""

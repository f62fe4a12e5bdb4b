"""The API's routes, one router per resource, in the order the OpenAPI document lists them."""

from __future__ import annotations

from fastapi import APIRouter

from serving.api.routes import deals, events, forecast, kpis, models, ops, reps

ROUTERS: tuple[APIRouter, ...] = (
    deals.router,
    events.router,
    forecast.router,
    kpis.router,
    reps.router,
    models.router,
    ops.router,
)

__all__ = ["ROUTERS"]

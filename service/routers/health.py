"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from service import responses
from service.deps import Services
from service.schemas import Health
from service.state import AppServices

router = APIRouter(tags=["health"])

NOT_READY_RETRY_S = 5  # Retry-After of a 503 from /readyz


def mode_of(services: AppServices) -> Literal["embedded", "distributed"]:
    return services.runtime.mode


@router.get("/healthz", response_model=Health, responses=responses.PUBLIC)
async def healthz(services: Services) -> Health:
    """The process is up and answering."""
    return Health(status="ok", mode=mode_of(services))


def store_check(services: AppServices) -> tuple[str, bool]:
    """('ok' or what is wrong, whether the store still serves): unreadable collections only degrade it."""
    try:
        store = services.require_store()
        store.list_collections()
        unreadable = store.unreadable_collections()
    except Exception as exc:  # readiness must report any failure, not raise it
        return f"unavailable: {exc}", False
    if not unreadable:
        return "ok", True
    return "; ".join(unreadable.values()), True


def readiness_checks(services: AppServices) -> tuple[dict[str, str], bool]:
    """'ok' or the reason, for the model, the vector store and what the runtime needs (Redis, when used);
    and whether every check that is not 'ok' is only degraded (the store serving all but some unreadable
    collections)."""
    checks = {"model": "ok" if services.model.loaded else (services.model.error or "loading")}
    checks["store"], store_serves = store_check(services)
    checks.update(services.runtime.health_checks())
    serving = store_serves and all(value == "ok" for name, value in checks.items() if name != "store")
    return checks, serving


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(services: Services) -> JSONResponse:
    """Ready to serve searches: model loaded, vector store (and Redis, when configured) reachable.

    A collection whose data cannot be opened makes readiness 'degraded' (200, the check names it), not 503:
    every other collection still serves, and taking the instance out of rotation would stop them too.
    """
    checks, serving = await services.redis_lane.run(readiness_checks, services)  # a hung Redis: soon 503
    status: Literal["ok", "degraded", "unavailable"] = "unavailable"
    if serving:
        status = "ok" if all(value == "ok" for value in checks.values()) else "degraded"
    body = Health(status=status, checks=checks, mode=mode_of(services))
    headers = None if serving else {"Retry-After": str(NOT_READY_RETRY_S)}
    return JSONResponse(body.model_dump(), status_code=200 if serving else 503, headers=headers)


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **responses.PUBLIC}
)
async def metrics(services: Services) -> Response:
    """Prometheus metrics in the text exposition format."""
    return await services.redis_lane.run(services.metrics.render)  # Celery queue depths come from Redis

"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from videoseek.service import responses
from videoseek.service.deps import Services
from videoseek.service.schemas import Health
from videoseek.service.state import AppServices

router = APIRouter(tags=["health"])


def mode_of(services: AppServices) -> Literal["embedded", "distributed"]:
    return "embedded" if services.settings.embedded else "distributed"


@router.get("/healthz", response_model=Health, responses=responses.PUBLIC)
async def healthz(services: Services) -> Health:
    """The process is up and answering."""
    return Health(status="ok", mode=mode_of(services))


def readiness_checks(services: AppServices) -> dict[str, str]:
    """'ok' or the reason, for the model, the vector store and (when configured) Redis."""
    checks = {"model": "ok" if services.model.loaded else (services.model.error or "loading")}
    try:
        services.require_store().list_collections()
        checks["store"] = "ok"
    except Exception as exc:  # readiness must report any failure, not raise it
        checks["store"] = f"unavailable: {exc}"
    if not services.settings.embedded:
        try:
            services.jobs.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"unavailable: {exc}"
    return checks


@router.get("/readyz", response_model=Health, responses={503: {"model": Health}})
async def readyz(services: Services) -> JSONResponse:
    """Ready to serve searches: model loaded, vector store (and Redis, when configured) reachable."""
    checks = await asyncio.to_thread(readiness_checks, services)
    ready = all(value == "ok" for value in checks.values())
    body = Health(status="ok" if ready else "unavailable", checks=checks, mode=mode_of(services))
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get(
    "/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}, **responses.PUBLIC}
)
async def metrics(services: Services) -> Response:
    """Prometheus metrics in the text exposition format."""
    return services.metrics.render()

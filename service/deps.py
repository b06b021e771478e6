"""FastAPI dependencies, as ``Annotated`` aliases routers put in their signatures.

They are ``async`` although none of them awaits: FastAPI runs plain ``def`` dependencies in its thread pool,
and a hop per dependency would cost more than a cached search.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from service.auth import Principal
from service.errors import Unavailable
from service.redis_lane import RedisLane
from service.schemas import SignedExpiry, SignedSignature
from service.search_engine import SearchEngine
from service.state import AppServices, MediaLinks
from videoseek.jobs import JobStore
from videoseek.layout import DataLayout
from videoseek.settings import Scope, Settings
from videoseek.store import ClipStore

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <API key>")
_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


async def get_services(request: Request) -> AppServices:
    services: AppServices | None = getattr(request.app.state, "services", None)
    if services is None:
        raise Unavailable("the service is starting up", retry_after_s=2)
    return services


Services = Annotated[AppServices, Depends(get_services)]


async def get_settings_dep(services: Services) -> Settings:
    return services.settings


async def get_layout(services: Services) -> DataLayout:
    return services.layout


async def get_store(services: Services) -> ClipStore:
    return services.require_store()


async def get_engine(services: Services) -> SearchEngine:
    return services.require_engine()


async def get_jobs(services: Services) -> JobStore:
    return services.jobs


async def get_redis_lane(services: Services) -> RedisLane:
    return services.redis_lane


async def get_links(request: Request, services: Services) -> MediaLinks:
    return MediaLinks(root_path=request.scope.get("root_path", ""), signer=services.signer_if_needed)


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
LayoutDep = Annotated[DataLayout, Depends(get_layout)]
StoreDep = Annotated[ClipStore, Depends(get_store)]
EngineDep = Annotated[SearchEngine, Depends(get_engine)]
JobsDep = Annotated[JobStore, Depends(get_jobs)]
RedisLaneDep = Annotated[RedisLane, Depends(get_redis_lane)]
LinksDep = Annotated[MediaLinks, Depends(get_links)]


async def _presented_key(
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
    header: Annotated[str | None, Security(_api_key_header)],
) -> str | None:
    return header or (bearer.credentials if bearer is not None else None)


PresentedKey = Annotated[str | None, Depends(_presented_key)]


def _requires(scope: Scope) -> Callable[..., Awaitable[Principal]]:
    async def dependency(request: Request, services: Services, key: PresentedKey) -> Principal:
        host = request.client.host if request.client else None
        principal = services.keys.authenticate(key, host)
        return services.keys.authorize(principal, scope)

    dependency.__name__ = f"require_{scope}_scope"
    return dependency


SearchPrincipal = Annotated[Principal, Depends(_requires("search"))]
IngestPrincipal = Annotated[Principal, Depends(_requires("ingest"))]
AdminPrincipal = Annotated[Principal, Depends(_requires("admin"))]


async def _media_access(
    request: Request,
    services: Services,
    key: PresentedKey,
    exp: SignedExpiry = None,
    sig: SignedSignature = None,
) -> Principal | None:
    """Media may be fetched with a key holding ``search``, or with the signed URL a search returned.

    A malformed or expired ``exp``/``sig`` is no signature: the request then needs a key like any other.
    """
    if sig is not None and services.signer.verify(request.url.path, exp, sig):
        return None
    host = request.client.host if request.client else None
    principal = services.keys.authenticate(key, host)
    return services.keys.authorize(principal, "search")


MediaAccess = Annotated[Principal | None, Depends(_media_access)]

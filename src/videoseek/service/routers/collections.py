"""Collections: create (optionally with a trained adapter), list, describe, delete."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from videoseek.core.layout import check_collection_name
from videoseek.core.store import ClipStore, CollectionInfo, CollectionUnreadable
from videoseek.service.deps import AdminPrincipal, SearchPrincipal, Services
from videoseek.service.errors import InvalidRequest
from videoseek.service.schemas import CollectionList, CollectionOut, CreateCollectionRequest, Deleted
from videoseek.service.state import AppServices

router = APIRouter(tags=["collections"])

# Adapter versions are content hashes (sha256 hex).
ADAPTER_VERSION_RE = re.compile(r"^[0-9a-f]{64}$")


def collection_out(info: CollectionInfo) -> CollectionOut:
    return CollectionOut(
        name=info.name,
        model=info.model,
        adapter_version=info.adapter_version,
        clips=info.points,
        videos=info.videos,
        created_at=info.created_at,
    )


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # e.g. a name longer than the filesystem allows
        return False


def resolve_adapter(services: AppServices, adapter: str | None) -> dict[str, Any]:
    """``create_collection`` arguments for an adapter given as a registered version or a server directory."""
    if adapter is None:
        return {}
    if ADAPTER_VERSION_RE.fullmatch(adapter) and _is_dir(services.layout.adapter_dir(adapter)):
        return {"adapter_version": adapter}
    path = Path(adapter).expanduser()
    if not _is_dir(path):
        raise InvalidRequest(
            f"adapter {adapter[:200]!r} is neither a registered adapter version nor an adapter directory on "
            "the server (train one with `videoseek train`)"
        )
    return {"adapter_dir": path}


def _create(services: AppServices, name: str, adapter: str | None) -> CollectionInfo:
    from videoseek.core.collections import create_collection

    return create_collection(services.settings, name, **resolve_adapter(services, adapter))


@router.post(
    "/collections", status_code=201, response_model=CollectionOut, responses={409: {"description": "Exists."}}
)
async def create_collection(
    body: CreateCollectionRequest, principal: AdminPrincipal, services: Services
) -> CollectionOut:
    """Create a collection, searched with plain CLIP or with a trained adapter."""
    principal.require_collection(body.name)
    services.require_store()
    info = await asyncio.to_thread(_create, services, body.name, body.adapter)
    if services.engine is not None:
        services.engine.forget(body.name)
    return collection_out(info)


def _listing(store: ClipStore) -> tuple[list[CollectionInfo], dict[str, str]]:
    return store.list_collections(), store.unreadable_collections()


@router.get("/collections", response_model=CollectionList)
async def list_collections(principal: SearchPrincipal, services: Services) -> CollectionList:
    """The collections this API key may use (and, apart, those that exist but cannot be opened)."""
    infos, unreadable = await asyncio.to_thread(_listing, services.require_store())
    visible = [collection_out(info) for info in infos if principal.may_access(info.name)]
    broken = {name: why for name, why in unreadable.items() if principal.may_access(name)}
    return CollectionList(collections=sorted(visible, key=lambda c: c.name), unavailable=broken)


def _clips_before_delete(store: ClipStore, name: str) -> int:
    """Clips the collection holds (404 if unknown); 0 for one that cannot be opened, which may be deleted."""
    try:
        return store.get_collection(name).points
    except CollectionUnreadable:
        return 0


@router.get("/collections/{name}", response_model=CollectionOut)
async def describe_collection(name: str, principal: SearchPrincipal, services: Services) -> CollectionOut:
    """A collection's model, adapter version and counts."""
    check_collection_name(name)
    principal.require_collection(name)
    return collection_out(await asyncio.to_thread(services.require_store().get_collection, name))


@router.delete("/collections/{name}", response_model=Deleted)
async def delete_collection(name: str, principal: AdminPrincipal, services: Services) -> Deleted:
    """Delete a collection with all its clips, thumbnails, stored videos and jobs."""
    check_collection_name(name)
    principal.require_collection(name)
    from videoseek.core.collections import delete_collection as delete

    clips = await asyncio.to_thread(_clips_before_delete, services.require_store(), name)
    await services.redis_lane.run(delete, services.settings, name)  # its jobs are in Redis
    if services.engine is not None:
        services.engine.forget(name)
    await services.redis_lane.run(services.tasks.forget, name)  # a new collection of that name has no history
    return Deleted(deleted=name, clips_removed=clips)

"""Collections: create (optionally with a trained adapter), list, describe, delete."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from service import responses
from service.deps import AdminPrincipal, SearchPrincipal, Services
from service.errors import InvalidAdapter
from service.schemas import (
    CollectionList,
    CollectionNamePath,
    CollectionOut,
    CreateCollectionRequest,
    Deleted,
    ExampleQueries,
    ExampleQueriesIn,
)
from service.state import AppServices
from videoseek.adapter.files import CONFIG_FILE
from videoseek.examples import read_examples, write_examples
from videoseek.store import ClipStore, CollectionInfo, CollectionUnreadable

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


def _installed(services: AppServices, version: str) -> bool:
    return (
        ADAPTER_VERSION_RE.fullmatch(version) is not None
        and (services.layout.adapter_dir(version) / CONFIG_FILE).is_file()
    )


def _adapter_directory(adapter: str) -> Path | None:
    """``adapter`` as an adapter directory this server can read, or None.

    Only an absolute path counts (a relative one would be relative to wherever the server was started), and
    ``~`` is never expanded: expanding ``~name`` would tell the caller which user names exist.
    """
    path = Path(adapter)
    try:
        config = path / CONFIG_FILE
        usable = path.is_absolute() and config.is_file() and os.access(config, os.R_OK)
    except (OSError, ValueError):  # a name the file system refuses (too long), a NUL byte
        return None
    return path if usable else None


def resolve_adapter(services: AppServices, adapter: str | None) -> dict[str, Any]:
    """``create_collection`` arguments for an adapter given as an installed version or a server directory.

    Whatever is wrong with anything else (missing, not a directory, not an adapter, unreadable), the answer is
    the same 422, so a caller learns nothing about the server's files beyond "not an adapter I can use".
    """
    if adapter is None:
        return {}
    if _installed(services, adapter):
        return {"adapter_version": adapter}
    path = _adapter_directory(adapter)
    if path is None:
        raise InvalidAdapter(
            f"adapter {adapter[:200]!r} is not an adapter this server can use: give the version of an installed "
            "adapter (64 hex digits, as GET /collections shows) or the absolute path of an adapter directory "
            "on the server (`videoseek train --out DIR` writes DIR/adapter)"
        )
    return {"adapter_dir": path}


def _create(services: AppServices, name: str, adapter: str | None) -> CollectionInfo:
    from videoseek.collections import create_collection

    return create_collection(services.context, name, **resolve_adapter(services, adapter))


@router.post(
    "/collections", status_code=201, response_model=CollectionOut, responses=responses.CREATE_COLLECTION
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


@router.get("/collections", response_model=CollectionList, responses=responses.KEYED)
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


@router.get("/collections/{name}", response_model=CollectionOut, responses=responses.ON_COLLECTION)
async def describe_collection(
    name: CollectionNamePath, principal: SearchPrincipal, services: Services
) -> CollectionOut:
    """A collection's model, adapter version and counts."""
    principal.require_collection(name)
    return collection_out(await asyncio.to_thread(services.require_store().get_collection, name))


@router.delete("/collections/{name}", response_model=Deleted, responses=responses.ON_COLLECTION)
async def delete_collection(
    name: CollectionNamePath, principal: AdminPrincipal, services: Services
) -> Deleted:
    """Delete a collection with all its clips, thumbnails, stored videos and jobs."""
    principal.require_collection(name)
    from videoseek.collections import delete_collection as delete

    clips = await asyncio.to_thread(_clips_before_delete, services.require_store(), name)
    await services.redis_lane.run(delete, services.context, name)  # its jobs are in Redis
    if services.engine is not None:
        services.engine.forget(name)
    await services.redis_lane.run(services.tasks.forget, name)  # a new collection of that name has no history
    return Deleted(deleted=name, clips_removed=clips)


@router.get("/collections/{name}/examples", response_model=ExampleQueries, responses=responses.ON_COLLECTION)
async def get_examples(
    name: CollectionNamePath, principal: SearchPrincipal, services: Services
) -> ExampleQueries:
    """Example queries for a collection, which the web page offers (set by an admin, or by `videoseek demo`)."""
    principal.require_collection(name)
    await asyncio.to_thread(services.require_store().get_collection, name)  # 404 for no such collection
    examples = await asyncio.to_thread(read_examples, services.layout, name)
    return ExampleQueries(collection=name, examples=examples)


@router.put(
    "/collections/{name}/examples", response_model=ExampleQueries, responses=responses.keyed(400, 404)
)
async def set_examples(
    name: CollectionNamePath, body: ExampleQueriesIn, principal: AdminPrincipal, services: Services
) -> ExampleQueries:
    """Replace a collection's example queries (at most 24, shown in this order)."""
    principal.require_collection(name)
    await asyncio.to_thread(services.require_store().get_collection, name)
    kept = await asyncio.to_thread(write_examples, services.layout, name, body.examples)
    return ExampleQueries(collection=name, examples=kept)

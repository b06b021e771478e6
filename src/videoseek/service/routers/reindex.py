"""Re-indexing a collection over HTTP (admin): switch it to another adapter without decoding any video again."""

from __future__ import annotations

import asyncio
from dataclasses import asdict

from fastapi import APIRouter

from videoseek.core.layout import check_collection_name
from videoseek.service.deps import AdminPrincipal, EngineDep, Services
from videoseek.service.errors import NotFound
from videoseek.service.reindex_tasks import task_collection
from videoseek.service.routers.collections import resolve_adapter
from videoseek.service.schemas import ReindexAccepted, ReindexRequest, ReindexStatusOut
from videoseek.service.state import AppServices

router = APIRouter(tags=["collections"])


def adapter_version_for(services: AppServices, adapter: str | None) -> str | None:
    """The installed version of a registered version or a server directory (verified and copied in)."""
    from videoseek.core.collections import install_adapter

    resolved = resolve_adapter(services, adapter)
    if "adapter_dir" in resolved:
        return install_adapter(services.settings, resolved["adapter_dir"])
    return resolved.get("adapter_version")


@router.post(
    "/collections/{name}/reindex",
    status_code=202,
    response_model=ReindexAccepted,
    responses={409: {"description": "Being re-indexed already, or made for another base model."}},
)
async def start_reindex(
    name: str, body: ReindexRequest, principal: AdminPrincipal, services: Services, engine: EngineDep
) -> ReindexAccepted:
    """Re-embed every clip of a collection with another adapter (or none), then switch searches to it."""
    check_collection_name(name)
    principal.require_collection(name)
    await engine.collection(name, fresh=True)  # 404 if unknown, 409 if made for another base model
    version = await asyncio.to_thread(adapter_version_for, services, body.adapter)
    task_id = await asyncio.to_thread(services.reindex.start, name, version, body.allow_missing)
    return ReindexAccepted(
        task_id=task_id, collection=name, adapter_version=version, status_url=f"/reindex/{task_id}"
    )


@router.get(
    "/reindex/{task_id}", response_model=ReindexStatusOut, responses={404: {"description": "No such task."}}
)
async def reindex_status(task_id: str, principal: AdminPrincipal, services: Services) -> ReindexStatusOut:
    """Where a re-index is: queued, running (with progress), done (with its summary) or failed (with why)."""
    collection = task_collection(task_id) if len(task_id) <= 100 else None
    # A key limited to other collections gets the same answer as for a task that does not exist.
    allowed = collection is not None and principal.may_access(collection)
    status = await asyncio.to_thread(services.reindex.status, task_id) if allowed else None
    if status is None:
        raise NotFound(
            f"no re-index task {task_id!r} (task ids come from POST /collections/{{name}}/reindex)"
        )
    return ReindexStatusOut(**asdict(status))

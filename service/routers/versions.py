"""A collection's versions: the live one and the earlier ones kept, and putting one of those back."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service import responses
from service.deps import AdminPrincipal, EngineDep, LayoutDep, LinksDep, Services, SettingsDep, StoreDep
from service.schemas import (
    CollectionNamePath,
    RollbackRequest,
    TaskAccepted,
    VersionList,
    VersionOut,
    iso_utc,
)
from videoseek.layout import DataLayout
from videoseek.settings import Settings
from videoseek.store import ClipStore
from videoseek.versions import VersionView, list_versions, recorded_pooling, rollback_target

router = APIRouter(tags=["collections"])


def _version_out(view: VersionView, settings: Settings) -> VersionOut:
    info = view.info
    return VersionOut(
        physical=info.physical,
        adapter_version=info.adapter_version,
        live=info.live,
        created_at=iso_utc(info.created_at),
        activated_at=iso_utc(info.activated_at),
        points=info.points,
        pooling=recorded_pooling(
            view.record, settings.search.pooling, use_chosen=settings.adapters.choose_pooling
        ),
        metrics=view.record,
    )


def _versions(store: ClipStore, layout: DataLayout, settings: Settings, name: str) -> list[VersionOut]:
    return [_version_out(view, settings) for view in list_versions(store, layout, name)]


@router.get("/collections/{name}/versions", response_model=VersionList, responses=responses.keyed(404))
async def get_versions(
    name: CollectionNamePath,
    principal: AdminPrincipal,
    store: StoreDep,
    layout: LayoutDep,
    settings: SettingsDep,
) -> VersionList:
    """The collection's live version and the earlier ones kept for rollback, with their adapters' metrics."""
    principal.require_collection(name)
    versions = await asyncio.to_thread(_versions, store, layout, settings, name)
    return VersionList(collection=name, versions=versions, kept_at_most=settings.adapters.versions_kept)


@router.post(
    "/collections/{name}/rollback",
    status_code=202,
    response_model=TaskAccepted,
    responses=responses.keyed(400, 404, said={409: "No such kept version, or the collection is busy."}),
)
async def start_rollback(
    name: CollectionNamePath,
    body: RollbackRequest,
    principal: AdminPrincipal,
    services: Services,
    engine: EngineDep,
    store: StoreDep,
    links: LinksDep,
) -> TaskAccepted:
    """Put back an earlier version (its vectors as they were, nothing decoded); searches switch at once."""
    principal.require_collection(name)
    await engine.collection(name, fresh=True)
    target = await asyncio.to_thread(rollback_target, store, name, body.version)
    task_id = await services.redis_lane.run(services.tasks.start_rollback, name, target.physical)
    return TaskAccepted(
        task_id=task_id,
        collection=name,
        kind="rollback",
        adapter_version=target.adapter_version,
        status_url=links.task(task_id),
    )

"""Admin tasks on a collection: re-index it with another adapter, or retrain its adapter; and their status."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query

from service import responses
from service.deps import AdminPrincipal, EngineDep, LinksDep, Services
from service.errors import NotFound
from service.routers.collections import resolve_adapter
from service.schemas import (
    CollectionNamePath,
    ReindexRequest,
    RetrainRequest,
    TaskAccepted,
    TaskIdPath,
    TaskList,
    TaskStatusOut,
)
from service.search_engine import SearchEngine
from service.state import AppServices
from videoseek.retraining import RetrainRequest as RetrainWork
from videoseek.runtime.base import RECENT_TASKS_LISTED, TaskStatus, task_collection

router = APIRouter(tags=["collections"])


def adapter_version_for(services: AppServices, adapter: str | None) -> str | None:
    """The installed version of a registered version or a server directory (verified and copied in)."""
    from videoseek.collections import install_adapter

    resolved = resolve_adapter(services, adapter)
    if "adapter_dir" in resolved:
        return install_adapter(services.settings, resolved["adapter_dir"])
    return resolved.get("adapter_version")


async def _admin_target(name: str, principal: AdminPrincipal, engine: SearchEngine) -> None:
    """404 if unknown, 403 out of the key's collections, 409 if made for another base model."""
    principal.require_collection(name)
    await engine.collection(name, fresh=True)


@router.post(
    "/collections/{name}/reindex",
    status_code=202,
    response_model=TaskAccepted,
    responses=responses.START_TASK,
)
async def start_reindex(
    name: CollectionNamePath,
    body: ReindexRequest,
    principal: AdminPrincipal,
    services: Services,
    engine: EngineDep,
    links: LinksDep,
) -> TaskAccepted:
    """Re-embed every clip of a collection with another adapter (or none), then switch searches to it."""
    await _admin_target(name, principal, engine)
    version = await asyncio.to_thread(adapter_version_for, services, body.adapter)
    task_id = await services.redis_lane.run(services.tasks.start_reindex, name, version, body.allow_missing)
    return TaskAccepted(
        task_id=task_id,
        collection=name,
        kind="reindex",
        adapter_version=version,
        status_url=links.task(task_id),
    )


@router.post(
    "/collections/{name}/retrain",
    status_code=202,
    response_model=TaskAccepted,
    responses=responses.START_TASK,
)
async def start_retrain(
    name: CollectionNamePath,
    body: RetrainRequest,
    principal: AdminPrincipal,
    services: Services,
    engine: EngineDep,
    links: LinksDep,
) -> TaskAccepted:
    """Train a new adapter on the collection's pairs; installed (and re-indexed) only if it ranks better."""
    await _admin_target(name, principal, engine)
    work = RetrainWork(**body.model_dump())
    # No pairs, a bad manifest or nothing to continue is a 422 now (the runtime checks first), not a failed task.
    task_id = await services.redis_lane.run(services.tasks.start_retrain, name, work)
    return TaskAccepted(task_id=task_id, collection=name, kind="retrain", status_url=links.task(task_id))


def _seconds_rounded(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """A task's report with its seconds (``seconds``, ``*_seconds``, ``*_s``) to the millisecond, as every
    seconds value the API gives."""
    if report is None:
        return None
    return {
        key: round(value, 3) if isinstance(value, float) and (key.endswith(("seconds", "_s"))) else value
        for key, value in report.items()
    }


def task_out(status: TaskStatus) -> TaskStatusOut:
    out = asdict(status)
    out["progress"], out["result"] = _seconds_rounded(status.progress), _seconds_rounded(status.result)
    return TaskStatusOut(**out)


def _visible(task_id: str, principal: AdminPrincipal) -> bool:
    """Whether the id is one of ours, of a collection the key may see (otherwise: answered as unknown)."""
    collection = task_collection(task_id)
    # A key limited to other collections gets the same answer as for a task that does not exist.
    return collection is not None and principal.may_access(collection)


def _no_task(task_id: str) -> NotFound:
    return NotFound(
        f"no task {task_id!r} (task ids come from POST /collections/{{name}}/reindex or /retrain)"
    )


async def _task_out(
    task_id: str,
    principal: AdminPrincipal,
    services: AppServices,
    lookup: Callable[[str], TaskStatus | None],
) -> TaskStatusOut:
    """``lookup``'s answer for a task the key may see; 404 for any other, or for none."""
    visible = _visible(task_id, principal)
    status = await services.redis_lane.run(lookup, task_id) if visible else None
    if status is None:
        raise _no_task(task_id)
    return task_out(status)


@router.get("/tasks/{task_id}", response_model=TaskStatusOut, responses=responses.ON_TASK)
async def task_status(task_id: TaskIdPath, principal: AdminPrincipal, services: Services) -> TaskStatusOut:
    """Where a re-index or retrain is: queued, running (with progress), done (with its summary), failed or
    cancelled."""
    return await _task_out(task_id, principal, services, services.tasks.status)


@router.post(
    "/tasks/{task_id}/cancel",
    status_code=202,
    response_model=TaskStatusOut,
    responses=responses.CANCEL_TASK,
)
async def cancel_task(task_id: TaskIdPath, principal: AdminPrincipal, services: Services) -> TaskStatusOut:
    """Ask a queued or running task to stop; the collection keeps serving the version it had."""
    return await _task_out(task_id, principal, services, services.tasks.cancel)


@router.get(
    "/collections/{name}/tasks",
    response_model=TaskList,
    responses=responses.ON_COLLECTION,
)
async def list_tasks(
    name: CollectionNamePath,
    principal: AdminPrincipal,
    services: Services,
    limit: Annotated[
        int, Query(ge=1, le=RECENT_TASKS_LISTED, description="At most this many, newest first.")
    ] = RECENT_TASKS_LISTED,
) -> TaskList:
    """A collection's re-index and retrain tasks, newest first: running or queued, and recently finished."""
    principal.require_collection(name)
    await asyncio.to_thread(
        services.require_store().get_collection, name
    )  # 404 if there is no such collection
    statuses = await services.redis_lane.run(services.tasks.recent, name, limit)
    return TaskList(tasks=[task_out(status) for status in statuses])

"""Ingest jobs: ``GET /jobs/{id}`` (how one is going) and a collection's recent jobs."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service import responses
from service.deps import IngestPrincipal, JobsDep, RedisLaneDep, Services
from service.errors import NotFound
from service.pagination import ListingCursors
from service.schemas import CollectionNamePath, CursorQuery, JobIdPath, JobOut, JobPage, PageLimit
from service.state import AppServices
from service.videos import job_out
from videoseek.jobs import position_of

router = APIRouter(tags=["jobs"])


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses.ON_JOB)
async def get_job(job_id: JobIdPath, principal: IngestPrincipal, jobs: JobsDep, lane: RedisLaneDep) -> JobOut:
    """Stage, progress, playback copy and (on failure) the reason of an ingest job."""
    job = await lane.run(jobs.get, job_id)
    # A key limited to some collections must not learn about jobs elsewhere: same answer as "no such job".
    if job is None or not principal.may_access(job.collection):
        raise NotFound(f"no job {job_id!r} (job ids come from POST /collections/{{name}}/videos)")
    return job_out(job)


def _page(services: AppServices, name: str, limit: int, cursor: str | None) -> JobPage:
    cursors = ListingCursors(services.cursors)
    after = cursors.decode(f"jobs:{name}", cursor) if cursor else None
    found = services.jobs.list(name, limit + 1, after=after)
    page = found[:limit]
    more = cursors.encode(f"jobs:{name}", position_of(page[-1])) if len(found) > limit else None
    return JobPage(collection=name, jobs=[job_out(job) for job in page], next_cursor=more)


@router.get("/collections/{name}/jobs", response_model=JobPage, responses=responses.LISTING)
async def list_jobs(
    name: CollectionNamePath,
    principal: IngestPrincipal,
    services: Services,
    limit: PageLimit = 50,
    cursor: CursorQuery = None,
) -> JobPage:
    """A collection's ingest jobs, newest first: queued, running, done (duplicates too) and failed."""
    principal.require_collection(name)
    await asyncio.to_thread(services.require_store().get_collection, name)  # 404 for no such collection
    return await services.redis_lane.run(_page, services, name, limit, cursor)

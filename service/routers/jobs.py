"""``GET /jobs/{id}``: how an ingest is going."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from service.deps import IngestPrincipal, JobsDep
from service.errors import NotFound
from service.schemas import JobOut
from videoseek.jobs import Job

router = APIRouter(tags=["jobs"])


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job.to_dict(), from_attributes=False)


@router.get("/jobs/{job_id}", response_model=JobOut)
async def get_job(job_id: str, principal: IngestPrincipal, jobs: JobsDep) -> JobOut:
    """Stage, progress and (on failure) the reason of an ingest job."""
    job = await asyncio.to_thread(jobs.get, job_id) if len(job_id) <= 64 else None
    # A key limited to some collections must not learn about jobs elsewhere: same answer as "no such job".
    if job is None or not principal.may_access(job.collection):
        raise NotFound(f"no job {job_id!r} (job ids come from POST /collections/{{name}}/videos)")
    return job_out(job)

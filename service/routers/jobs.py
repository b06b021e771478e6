"""``GET /jobs/{id}``: how an ingest is going."""

from __future__ import annotations

from fastapi import APIRouter

from service import responses
from service.deps import IngestPrincipal, JobsDep, RedisLaneDep
from service.errors import NotFound
from service.schemas import JobIdPath, JobOut
from videoseek.jobs import Job

router = APIRouter(tags=["jobs"])


def job_out(job: Job) -> JobOut:
    return JobOut.model_validate(job.to_dict(), from_attributes=False)


@router.get("/jobs/{job_id}", response_model=JobOut, responses=responses.ON_JOB)
async def get_job(job_id: JobIdPath, principal: IngestPrincipal, jobs: JobsDep, lane: RedisLaneDep) -> JobOut:
    """Stage, progress and (on failure) the reason of an ingest job."""
    job = await lane.run(jobs.get, job_id)
    # A key limited to some collections must not learn about jobs elsewhere: same answer as "no such job".
    if job is None or not principal.may_access(job.collection):
        raise NotFound(f"no job {job_id!r} (job ids come from POST /collections/{{name}}/videos)")
    return job_out(job)

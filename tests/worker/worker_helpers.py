"""Helpers shared by the worker tests (not a test module: nothing here is collected)."""

from __future__ import annotations

import shutil
from pathlib import Path

from videoseek.ingest.pipeline import DecodedVideo, PipelineContext, decode_video
from videoseek.jobs import Job, get_job_store, new_job_id
from videoseek.layout import DataLayout
from videoseek.settings import Settings
from videoseek.video.identity import video_id_for_file


def decoded_but_not_indexed(
    settings: Settings, path: Path, collection: str = "films"
) -> tuple[PipelineContext, DecodedVideo]:
    """A stored job decoded by the pipeline (frame cache written, collection info read) and not yet embedded."""
    layout, jobs = DataLayout(settings.data_dir), get_job_store(settings)
    video_id = video_id_for_file(path)
    job = Job(
        new_job_id(), collection, video_id, path.name, video_file=f"{video_id}.mp4", metadata={"late": True}
    )
    layout.videos_dir(collection).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, layout.videos_dir(collection) / job.video_file)
    jobs.create(job)
    assert jobs.claim_video(collection, video_id, job.job_id) is None
    context = PipelineContext.from_settings(settings)
    decoded = decode_video(context, job.job_id)
    assert decoded is not None and decoded.collection.adapter_version is None
    return context, decoded

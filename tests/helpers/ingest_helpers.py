"""Helpers shared by the ingest, re-index and worker tests (not a test module: nothing here is collected)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from videoseek.adapter import AdaptedClip, AdapterConfig, AdapterFile, save_adapter
from videoseek.context import PipelineContext
from videoseek.ingest.pipeline import DecodedVideo, decode_video
from videoseek.jobs import Job, new_job_id
from videoseek.runtime.embedded import EmbeddedRuntime
from videoseek.settings import Settings
from videoseek.video.identity import video_id_for_file

if TYPE_CHECKING:
    from worker.celery_app import VideoseekCelery


def decoded_but_not_indexed(context: PipelineContext, path: Path, collection: str = "films") -> DecodedVideo:
    """A stored job decoded by the pipeline (frame cache written, collection info read) and not yet embedded."""
    layout, jobs = context.layout, context.jobs
    video_id = video_id_for_file(path)
    job = Job(
        new_job_id(), collection, video_id, path.name, video_file=f"{video_id}.mp4", metadata={"late": True}
    )
    layout.videos_dir(collection).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, layout.videos_dir(collection) / job.video_file)
    jobs.create(job)
    assert jobs.claim_video(collection, video_id, job.job_id) is None
    decoded = decode_video(context, job.job_id)
    assert decoded is not None and decoded.collection.adapter_version is None
    return decoded


def eager_app(context: PipelineContext) -> VideoseekCelery:
    """A Celery app whose tasks, run with ``apply()`` in this process, work on ``context`` (no broker, no
    Redis unless the context's settings name one)."""
    import worker.tasks  # noqa: F401 - registers the shared tasks on every app
    from worker.celery_app import VideoseekCelery
    from worker.process import WorkerProcess

    app = VideoseekCelery("videoseek-test", set_as_current=False)
    app.settings = context.settings
    app.process = WorkerProcess(context.settings, warm_model=False)
    app.process.use_context(context)
    return app


def ingest_all(runtime: EmbeddedRuntime, collection: str, paths: list[Path], **kw: Any) -> list[Job]:
    runtime.start()
    results = [runtime.submit_ingest(collection, p, metadata={"n": i}, **kw) for i, p in enumerate(paths)]
    assert runtime.runner.join(timeout=120), "ingest did not finish in 120 s"
    return [runtime.context.jobs.require(r.job_id) for r in results]


def make_adapter(settings: Settings, out: Path) -> Path:
    """A vision+text adapter for the test model with weights large enough to change every embedding."""
    adapted = AdaptedClip.from_spec(settings.model, AdapterConfig(rank=4, shared_dim=8))
    plain = adapted.export()
    generator = torch.Generator().manual_seed(0)
    tensors = {k: torch.randn(v.shape, generator=generator) * 0.2 for k, v in plain.tensors.items()}
    save_adapter(AdapterFile(plain.config, plain.base, plain.shape, tensors), out)
    return out

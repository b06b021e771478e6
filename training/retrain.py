"""Retraining a collection's adapter from captioned clips, then re-indexing the collection with it.

What an admin's retrain runs (on a thread of the API process in embedded mode, on a ``train`` worker
otherwise):

    check the manifest -> train (the configured base model) -> install the adapter ->
    re-index (videoseek/reindex.py: cached frames, no decoding) -> searches switch to the new adapter

The training data is a ``captions.jsonl`` manifest (or MSR-VTT) on the machine that runs it; its videos need
not be in the collection. The run's folder (report, plots, checkpoint) stays under
``DATA_DIR/training/<collection>/``; the adapter itself is copied into ``DATA_DIR/adapters/<version>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videoseek.cancel import CancelCheck, not_cancellable
from videoseek.retraining import ADAPTER_METHODS, RetrainError, RetrainRequest

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import ClipDataset
    from training.loop import StepDone
    from videoseek.context import PipelineContext

ProgressReport = Callable[[dict[str, Any]], None]
# Training steps can be milliseconds apart: report (and check for a cancel) at most this often.
REPORT_EVERY_S = 1.0


def load_training_data(request: RetrainRequest) -> ClipDataset:
    """The manifest, read and checked (missing videos, empty captions) before anything is queued."""
    from training.data import DataError, load_dataset

    if request.method not in ADAPTER_METHODS:
        raise RetrainError(
            f"method {request.method!r} makes no adapter: choose one of {', '.join(ADAPTER_METHODS)}"
        )
    try:
        dataset = load_dataset(Path(request.data))
    except DataError as exc:  # the service maps RetrainError and never imports the training package
        raise RetrainError(str(exc)) from exc
    except OSError as exc:  # a name too long, a folder it may not read
        raise RetrainError(f"cannot read {request.data[:200]!r}: {exc.strerror or exc}") from exc
    except ValueError as exc:  # a NUL byte: no file system takes it
        raise RetrainError(f"{request.data[:200]!r} is not a path: {exc}") from exc
    if len(dataset) < 2:
        raise RetrainError(
            f"{request.data} holds {len(dataset)} captioned clip(s): training needs at least 2"
        )
    return dataset


def training_config(ctx: PipelineContext, name: str, request: RetrainRequest) -> TrainConfig:
    """The run's settings: the request's, or the collection's current adapter's when it is continued.

    Raises ``RetrainError`` when ``from_current`` cannot be honoured (no adapter, or one no method makes).
    """
    from training.config import ConfigError, TrainConfig
    from training.methods import continue_from
    from videoseek.adapter import AdapterFileError
    from videoseek.collections import require_collection

    defaults = TrainConfig()
    try:
        cfg = TrainConfig(
            method=request.method,
            epochs=request.epochs,
            device=ctx.settings.device,
            lr=defaults.lr if request.lr is None else request.lr,
            batch_size=defaults.batch_size if request.batch_size is None else request.batch_size,
        )
    except ConfigError as exc:
        raise RetrainError(str(exc)) from exc
    if not request.from_current:
        return cfg
    version = require_collection(ctx.store, name).adapter_version
    if version is None:
        raise RetrainError(
            f"collection {name!r} has no adapter to continue (it searches with plain CLIP): "
            "leave from_current false to train one from scratch"
        )
    try:
        return continue_from(cfg, ctx.layout.adapter_dir(version))
    except (AdapterFileError, ConfigError) as exc:
        raise RetrainError(f"cannot continue adapter {version[:12]} of {name!r}: {exc}") from exc


def check_request(ctx: PipelineContext, name: str, request: RetrainRequest) -> None:
    """Refuse, before anything is queued, a request that cannot train (``RetrainError``, ``CollectionNotFound``)."""
    from videoseek.collections import require_collection

    require_collection(ctx.store, name)
    load_training_data(request)
    training_config(ctx, name, request)


def retrain_collection(
    ctx: PipelineContext,
    name: str,
    request: RetrainRequest,
    *,
    progress: ProgressReport | None = None,
    cancel: CancelCheck = not_cancellable,
) -> dict[str, Any]:
    """Train an adapter for ``name`` on ``request.data``, install it and re-index the collection with it.

    ``cancel`` is checked while frames are cached, at training steps and through the re-index
    (``TaskCancelled``): a cancelled run never switches the collection. Its run folder keeps the last
    checkpoint; cancelled during the re-index, its adapter stays installed (unused) under ``adapters/``.
    """
    from training.run import ADAPTER_DIR, DataPlan, run_training
    from videoseek.collections import install_adapter, require_collection
    from videoseek.reindex import ReindexProgress, reindex_to_version

    settings = ctx.settings
    report = progress or (lambda _: None)
    require_collection(ctx.store, name)  # before hours of training, not after
    dataset = load_training_data(request)
    cfg = training_config(ctx, name, request)
    cancel()
    out = ctx.layout.training_runs_dir(name) / time.strftime("%Y%m%d-%H%M%S")
    plan = DataPlan(
        train=dataset, eval=None, cache_dir=ctx.layout.training_frames_dir, limits=settings.ingest
    )

    training = _TrainingProgress(report, cancel)
    training.log(f"training {cfg.method} on {len(dataset)} clips")
    result, version = run_training(
        settings.model, cfg, plan, out, log=training.log, on_step=training.step, on_video=training.caching
    )
    assert version is not None  # every ADAPTER_METHODS method saves an adapter
    cancel()
    installed = install_adapter(settings, out / ADAPTER_DIR)

    def reindexing(step: ReindexProgress) -> None:
        report(step.to_dict())

    reindexed = reindex_to_version(
        ctx, name, installed, allow_missing=request.allow_missing, progress=reindexing, cancel=cancel
    )
    return {
        "collection": name,
        "adapter_version": installed,
        "training": {
            "method": cfg.method,
            "continued_from": Path(cfg.init_adapter).name if cfg.init_adapter else None,
            "clips": len(dataset),
            "steps": result.steps,
            "train_seconds": round(result.train_seconds, 2),
            "run_dir": str(out.resolve()),
        },
        "reindex": reindexed.to_dict(),
    }


class _TrainingProgress:
    """Training's reports for the task status: the frames being cached, then its latest log line and the step
    it is at. Reported at most once a second, which is also how often a cancel is looked for."""

    def __init__(self, report: ProgressReport, cancel: CancelCheck) -> None:
        self._report = report
        self._cancel = cancel
        self._latest: dict[str, Any] = {"stage": "training", "message": ""}
        self._last_report = 0.0

    def log(self, message: str) -> None:
        self._latest = {**self._latest, "message": message}
        self._report(self._latest)

    def caching(self, done: int, total: int) -> None:
        """Videos of the training data decoded into the frame cache (before the first step)."""
        if self._due(last=done == total):
            self._report({"stage": "caching-frames", "videos_done": done, "videos_total": total})

    def step(self, done: StepDone) -> None:
        if self._due(last=done.step == done.total_steps):
            steps = {"step": done.step, "total_steps": done.total_steps, "epoch": done.epoch}
            self._latest = {**self._latest, **steps, "loss": round(done.loss, 5)}
            self._report(self._latest)

    def _due(self, *, last: bool) -> bool:
        """Time for a report (the last one always); a cancel asked for meanwhile raises here."""
        now = time.monotonic()
        if now - self._last_report < REPORT_EVERY_S and not last:
            return False
        self._last_report = now
        self._cancel()
        return True

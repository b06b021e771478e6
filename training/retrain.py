"""Retraining a collection's adapter, judging it against what serves, and switching to it if it is better.

What an admin's retrain runs (on a thread of the API process in embedded mode, on a ``train`` worker
otherwise):

    the collection's pairs (or a manifest) -> held-out splits by video -> the recipe for their size ->
    train with early stopping (on the dev videos) -> the pooling it would serve with (chosen on the dev videos)
    -> the guard: candidate vs what serves, on the guard's videos (both ranked among up to 100 other clips of
    the collection, each under its own pooling, as the search would rank them) ->
    installed: install the adapter, re-index (videoseek/reindex.py: cached frames, no decoding), the old
    version kept for rollback | kept: the collection is left as it was

The run's folder (report, plots, checkpoint, the candidate adapter) stays under
``DATA_DIR/training/<collection>/``; an installed adapter is copied into ``DATA_DIR/adapters/<version>`` with
what the retrain measured beside it (``training.json``, listed by ``GET /collections/{name}/versions``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videoseek.cancel import CancelCheck, not_cancellable
from videoseek.retraining import ADAPTER_METHODS, RetrainError, RetrainRequest

if TYPE_CHECKING:
    from training.config import TrainConfig
    from training.data import ClipDataset, ClipRecord
    from training.guard import PoolingChoice, Verdict
    from training.loop import StepDone
    from training.run import DataPlan
    from training.splits import ValidationSplits
    from videoseek.context import PipelineContext

ProgressReport = Callable[[dict[str, Any]], None]
# Training steps can be milliseconds apart: report (and check for a cancel) at most this often.
REPORT_EVERY_S = 1.0


@dataclass(frozen=True)
class TrainingData:
    """What a retrain learns from: the records, which are weak (subtitles) and clicks, and the pair counts by
    kind (``training/collection_pairs.py`` says why clicks validate only when captions cannot)."""

    dataset: ClipDataset
    weak: frozenset[int]
    clicked: frozenset[int]
    training_pairs: dict[str, int] | None  # None for a manifest


def load_training_data(ctx: PipelineContext, name: str, request: RetrainRequest) -> TrainingData:
    """The collection's pairs, or the request's manifest, read and checked before anything is queued."""
    from training.collection_pairs import collection_pairs
    from training.data import DataError, load_dataset

    if request.method not in ADAPTER_METHODS:
        raise RetrainError(
            f"method {request.method!r} makes no adapter: choose one of {', '.join(ADAPTER_METHODS)}"
        )
    if request.data is None:
        pairs = collection_pairs(ctx.pairs, ctx.layout, name)
        if len(pairs.dataset) < 2:
            raise RetrainError(
                f"collection {name!r} has {len(pairs.dataset)} training pair(s) with a stored video: caption "
                f"its videos (POST /collections/{name}/captions) or mark search results right "
                f"(POST /collections/{name}/feedback), then retrain"
            )
        return TrainingData(pairs.dataset, pairs.weak, pairs.clicked, pairs.counts)
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
    return TrainingData(dataset, frozenset(), frozenset(), None)


def training_config(ctx: PipelineContext, name: str, request: RetrainRequest, pairs: int) -> TrainConfig:
    """The recipe for ``pairs`` training pairs on the configured backbone, with the request's overrides; or
    the collection's current adapter's settings when it is continued.

    Raises ``RetrainError`` when ``from_current`` cannot be honoured (no adapter, or one no method makes).
    """
    from training.config import ConfigError, TrainConfig
    from training.methods import continue_from
    from training.recipe import recommended_config
    from videoseek.adapter import AdapterFileError
    from videoseek.collections import require_collection

    recipe = recommended_config(max(2, pairs), ctx.settings.model, TrainConfig(device=ctx.settings.device))
    try:
        cfg = replace(
            recipe,
            method=request.method,
            epochs=recipe.epochs if request.epochs is None else request.epochs,
            lr=recipe.lr if request.lr is None else request.lr,
            # trained, and judged by the guard, as the search will score it
            pooling=ctx.settings.search.pooling,
            tau=ctx.settings.search.pooling_tau,
            # a small set: the recipe's batch never exceeds the pairs
            batch_size=max(2, min(recipe.batch_size, pairs))
            if request.batch_size is None
            else request.batch_size,
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
    data = load_training_data(ctx, name, request)
    training_config(ctx, name, request, len(data.dataset))


def _splits(ctx: PipelineContext, data: TrainingData) -> tuple[ValidationSplits, str]:
    """The splits, and what the guard judges on: captions, or captions and clicks when captions alone are
    too few to hold any out."""
    from training.guard import MIN_PAIRS
    from training.splits import validation_splits

    fraction = ctx.settings.adapters.validation_fraction
    on_captions = validation_splits(
        data.dataset, fraction, min_pairs=MIN_PAIRS, weak=data.weak | data.clicked
    )
    if on_captions.guard is not None or not data.clicked:
        return on_captions, "captions"
    return validation_splits(
        data.dataset, fraction, min_pairs=MIN_PAIRS, weak=data.weak
    ), "captions and clicks"


def retrain_collection(
    ctx: PipelineContext,
    name: str,
    request: RetrainRequest,
    *,
    progress: ProgressReport | None = None,
    cancel: CancelCheck = not_cancellable,
) -> dict[str, Any]:
    """Train a candidate adapter for ``name``; install it and re-index if the guard (or ``force``) says so.

    ``cancel`` is checked while frames are cached, at training steps and through the re-index
    (``TaskCancelled``): a cancelled run never switches the collection. Its run folder keeps the last
    checkpoint; cancelled during the re-index, its adapter stays installed (unused) under ``adapters/``.
    """
    from training.run import ADAPTER_DIR, DataPlan, run_training
    from videoseek.collections import require_collection

    settings = ctx.settings
    report = progress or (lambda _: None)
    live = require_collection(ctx.store, name)  # before hours of training, not after
    data = load_training_data(ctx, name, request)
    splits, judged_on = _splits(ctx, data)
    cfg = training_config(ctx, name, request, len(splits.train))
    cancel()
    out = ctx.layout.training_runs_dir(name) / time.strftime("%Y%m%d-%H%M%S")
    gallery = _gallery(ctx, name, splits)
    plan = DataPlan(
        train=splits.train,
        eval=_among(splits.dev, gallery),
        cache_dir=ctx.layout.training_frames_dir,
        on_bad="skip" if request.data is None else "error",  # a pair's video that no longer decodes: skipped
        limits=settings.ingest,
    )
    training = _TrainingProgress(report, cancel)
    training.log(f"training {cfg.method} on {len(splits.train)} pairs ({cfg.epochs} epochs at most)")
    result, version = run_training(
        settings.model, cfg, plan, out, log=training.log, on_step=training.step, on_video=training.caching
    )
    assert version is not None  # every ADAPTER_METHODS method saves an adapter
    cancel()
    report({"stage": "validating", "message": "comparing the new adapter with the one serving now"})
    serving = _choose_pooling(ctx, cfg, splits.dev, gallery, plan, out / ADAPTER_DIR)
    verdict = _judge(ctx, cfg, splits.guard, gallery, plan, out / ADAPTER_DIR, live.adapter_version, serving)
    forced = request.force and not verdict.install
    summary: dict[str, Any] = {
        "collection": name,
        "outcome": "installed" if verdict.install or forced else "kept",
        "why": f"forced: {verdict.why}" if forced else verdict.why,
        "validation": {**verdict.validation(), "judged_on": judged_on},
        "serving": serving.record(),
        "training_pairs": data.training_pairs,
        "training": {
            "method": cfg.method,
            "continued_from": Path(cfg.init_adapter).name if cfg.init_adapter else None,
            "clips": len(splits.train),
            "steps": result.steps,
            "epochs": cfg.epochs,
            "best_epoch": result.best_epoch,
            "stopped_early": result.stopped_early,
            "lr": cfg.lr,
            "batch_size": cfg.batch_size,
            "pooling": cfg.pooling,  # the training loss's: the worker's settings.search.pooling
            "tau": cfg.tau,
            "train_seconds": round(result.train_seconds, 2),
            "run_dir": str(out.resolve()),
            "candidate_version": version,
        },
        "adapter_version": live.adapter_version,
        "reindex": None,
    }
    if summary["outcome"] == "kept":
        return summary
    return _install(ctx, name, request, out / ADAPTER_DIR, summary, report, cancel)


def _choose_pooling(
    ctx: PipelineContext,
    cfg: TrainConfig,
    dev: ClipDataset | None,
    gallery: list[ClipRecord],
    plan: DataPlan,
    candidate_dir: Path,
) -> PoolingChoice:
    """The pooling the candidate would serve with, chosen on the dev videos (``adapters.choose_pooling``)."""
    from training.guard import choose_pooling, held_out_ranks_by_pooling

    if not ctx.settings.adapters.choose_pooling or dev is None:
        return choose_pooling(None, cfg.pooling)
    base = replace(cfg, init_adapter=None)
    ranks = held_out_ranks_by_pooling(ctx.settings.model, base, dev, plan, candidate_dir, gallery)
    return choose_pooling(ranks, cfg.pooling)


def _judge(
    ctx: PipelineContext,
    cfg: TrainConfig,
    guard: ClipDataset | None,
    gallery: list[ClipRecord],
    plan: DataPlan,
    candidate_dir: Path,
    live_adapter: str | None,
    serving: PoolingChoice,
) -> Verdict:
    """The guard's verdict on the held-out videos, each side ranked as its searches would rank (none held
    out: a verdict that keeps what serves)."""
    import numpy as np

    from training.guard import held_out_ranks_by_pooling, judge, judge_by_pooling
    from videoseek.versions import version_pooling

    if guard is None:
        return judge(np.zeros(0), np.zeros(0))
    live_dir = ctx.layout.adapter_dir(live_adapter) if live_adapter is not None else None
    live_pooling = version_pooling(
        ctx.layout, live_adapter, cfg.pooling, use_chosen=ctx.settings.adapters.choose_pooling
    )
    base = replace(cfg, init_adapter=None)
    current = held_out_ranks_by_pooling(ctx.settings.model, base, guard, plan, live_dir, gallery)
    candidate = held_out_ranks_by_pooling(ctx.settings.model, base, guard, plan, candidate_dir, gallery)
    return judge_by_pooling(current, candidate, live_pooling, serving.pooling)


def _gallery(ctx: PipelineContext, name: str, splits: ValidationSplits) -> list[ClipRecord]:
    """Up to ``MAX_DISTRACTORS`` other clips to rank held-out captions among, as the search would: whole
    videos of the collection that no split uses and training clips, in the shares the collection has them
    (the training videos are the ones a new adapter pulls queries towards), each a fixed sample."""
    import hashlib

    from training.data import ClipRecord
    from training.guard import MAX_DISTRACTORS

    def fixed_order(key: str) -> bytes:
        return hashlib.sha256(key.encode()).digest()

    used = {r.video for part in (splits.train, splits.dev, splits.guard) if part for r in part.records}
    videos = sorted(ctx.store.list_videos(name), key=fixed_order)
    trained = sorted(
        {r.clip_key: r for r in splits.train.records}.values(), key=lambda r: fixed_order(str(r.clip_key))
    )
    trained_videos = len({r.video for r in splits.train.records})
    share = trained_videos / max(1, trained_videos + max(0, len(videos) - len(used)))
    take_trained = min(len(trained), round(MAX_DISTRACTORS * share))
    free: list[Path] = []
    # Files looked up only until enough are found, not one per video of the collection.
    for video_id in videos:
        if len(free) == MAX_DISTRACTORS - take_trained:
            break
        path = ctx.layout.video_file(name, video_id)
        if path is not None and path not in used:
            free.append(path)
    return [*(ClipRecord(f, "") for f in free), *trained[: MAX_DISTRACTORS - len(free)]]


def _among(held_out: ClipDataset | None, gallery: list[ClipRecord]) -> ClipDataset | None:
    """The held-out set with the gallery's clips as candidates only (None stays None)."""
    from training.data import ClipDataset, as_gallery_only

    if held_out is None:
        return None
    return ClipDataset([*held_out.records, *as_gallery_only(gallery)], held_out.source)


def _install(
    ctx: PipelineContext,
    name: str,
    request: RetrainRequest,
    candidate_dir: Path,
    summary: dict[str, Any],
    report: ProgressReport,
    cancel: CancelCheck,
) -> dict[str, Any]:
    """Install the candidate, record what was measured beside it, and re-index the collection with it."""
    from videoseek.collections import install_adapter
    from videoseek.reindex import ReindexProgress, reindex_to_version
    from videoseek.versions import write_training_record

    installed = install_adapter(ctx.settings, candidate_dir)
    record = {
        key: summary[key] for key in ("outcome", "why", "validation", "serving", "training_pairs", "training")
    }
    write_training_record(
        ctx.layout, installed, {**record, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    )

    def reindexing(step: ReindexProgress) -> None:
        report(step.to_dict())

    reindexed = reindex_to_version(
        ctx, name, installed, allow_missing=request.allow_missing, progress=reindexing, cancel=cancel
    )
    return {**summary, "adapter_version": installed, "reindex": reindexed.to_dict()}


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

"""Retraining a collection's adapter from captioned clips, then re-indexing the collection with it.

What an admin's retrain trigger runs (in the API process in embedded mode, on a ``train`` worker otherwise):

    check the manifest -> train (training package, the configured base model) -> install the adapter ->
    re-index (worker/reindex.py: cached frames, no decoding) -> searches switch to the new adapter

The training data is a ``captions.jsonl`` manifest (or MSR-VTT) on the machine that runs it; its videos need
not be in the collection. The run's folder (report, plots, checkpoint) stays under
``DATA_DIR/training/<collection>/``; the adapter itself is copied into ``DATA_DIR/adapters/<version>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from videoseek.core.cancel import CancelCheck, not_cancellable
from videoseek.core.settings import Settings

if TYPE_CHECKING:
    from videoseek.training.config import TrainConfig
    from videoseek.training.data import ClipDataset
    from videoseek.training.loop import StepDone
    from videoseek.worker.embedding import FrameEmbedder

# The methods that make an adapter (zero-shot makes nothing; full fine-tuning changes the shared backbone).
ADAPTER_METHODS = ("cma", "cma-noshare", "vision", "text")

ProgressReport = Callable[[dict[str, Any]], None]
# Training steps can be milliseconds apart: report (and check for a cancel) at most this often.
REPORT_EVERY_S = 1.0


class RetrainError(ValueError):
    """The retrain request cannot run as given: its method, or its manifest (unreadable, bad entries, too few)."""


@dataclass(frozen=True)
class RetrainRequest:
    """What to train. ``lr`` and ``batch_size`` default to the training package's (the paper's) values."""

    data: str
    method: str = "cma"
    epochs: int = 5
    lr: float | None = None
    batch_size: int | None = None
    allow_missing: bool = False  # re-index without videos that have no cached frames
    from_current: bool = False  # continue the collection's adapter (its method, rank and width) instead

    def to_dict(self) -> dict[str, Any]:
        """The fields not at their defaults: a worker one release older still reads a request that uses
        nothing new (the task message of a rolling upgrade)."""
        defaults = {f.name: f.default for f in fields(self)}
        return {key: value for key, value in asdict(self).items() if value != defaults[key] or key == "data"}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RetrainRequest:
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise RetrainError(
                f"this worker does not know the retrain settings {unknown}: it is older than the API that "
                "sent them; upgrade it"
            )
        return cls(**values)


def load_training_data(request: RetrainRequest) -> ClipDataset:
    """The manifest, read and checked (missing videos, empty captions) before anything is queued."""
    from videoseek.training.data import DataError, load_dataset

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


def training_config(settings: Settings, name: str, request: RetrainRequest) -> TrainConfig:
    """The run's settings: the request's, or the collection's current adapter's when it is continued.

    Raises ``RetrainError`` when ``from_current`` cannot be honoured (no adapter, or one no method makes).
    """
    from videoseek.core.adapter import AdapterFileError
    from videoseek.core.collections import require_collection
    from videoseek.core.layout import DataLayout
    from videoseek.training.config import ConfigError, TrainConfig
    from videoseek.training.methods import continue_from

    defaults = TrainConfig()
    try:
        cfg = TrainConfig(
            method=request.method,
            epochs=request.epochs,
            device=settings.device,
            lr=defaults.lr if request.lr is None else request.lr,
            batch_size=defaults.batch_size if request.batch_size is None else request.batch_size,
        )
    except ConfigError as exc:
        raise RetrainError(str(exc)) from exc
    if not request.from_current:
        return cfg
    version = require_collection(settings, name).adapter_version
    if version is None:
        raise RetrainError(
            f"collection {name!r} has no adapter to continue (it searches with plain CLIP): "
            "leave from_current false to train one from scratch"
        )
    try:
        return continue_from(cfg, DataLayout(settings.data_dir).adapter_dir(version))
    except (AdapterFileError, ConfigError) as exc:
        raise RetrainError(f"cannot continue adapter {version[:12]} of {name!r}: {exc}") from exc


def retrain_collection(
    settings: Settings,
    name: str,
    request: RetrainRequest,
    *,
    progress: ProgressReport | None = None,
    embedder: FrameEmbedder | None = None,
    cancel: CancelCheck = not_cancellable,
) -> dict[str, Any]:
    """Train an adapter for ``name`` on ``request.data``, install it and re-index the collection with it.

    ``cancel`` is checked while frames are cached, at training steps and through the re-index
    (``TaskCancelled``): a cancelled run never switches the collection. Its run folder keeps the last
    checkpoint; cancelled during the re-index, its adapter stays installed (unused) under ``adapters/``.
    """
    from videoseek.core.collections import install_adapter, require_collection
    from videoseek.training.run import ADAPTER_DIR, DataPlan, run_training
    from videoseek.worker.reindex import ReindexProgress, reindex_to_version

    report = progress or (lambda _: None)
    require_collection(settings, name)  # before hours of training, not after
    dataset = load_training_data(request)
    cfg = training_config(settings, name, request)
    cancel()
    out = settings.data_dir / "training" / name / time.strftime("%Y%m%d-%H%M%S")
    plan = DataPlan(
        train=dataset,
        eval=None,
        cache_dir=settings.data_dir / "cache" / "training-frames",
        limits=settings.ingest,
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
        settings,
        name,
        installed,
        allow_missing=request.allow_missing,
        progress=reindexing,
        embedder=embedder,
        cancel=cancel,
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

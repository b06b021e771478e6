"""The runs the CLI offers: train one method and save what it made, evaluate a model, compare every method.

Each run loads a private frozen CLIP (``load_clip``, never the process-wide cached one, because adapters are
injected into it), warms the frame cache for its datasets (decoding each video once), then hands over to
:func:`training.loop.train`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from training.config import METHODS, ConfigError, OnBad, SamplingConfig, TrainConfig
from training.data import ClipDataset
from training.evaluate import evaluate
from training.frame_cache import FrameCache, VideoHook, warm_dataset
from training.loop import StepHook, TrainResult, log_to_stderr, train
from training.memory import count_tensors_not_allocator_slack
from training.report import compare_row, result_summary, write_compare, write_report
from videoseek.adapter import AdaptedClip, load_adapter
from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec
from videoseek.settings import IngestSettings

ADAPTER_DIR = "adapter"
Log = Callable[[str], None]


@dataclass(frozen=True)
class DataPlan:
    """The datasets of a run and where their frames are cached."""

    train: ClipDataset | None
    eval: ClipDataset | None
    cache_dir: Path
    on_bad: OnBad = "error"
    limits: IngestSettings | None = None


@dataclass
class RunInputs:
    """A private CLIP and the datasets of a run, with every clip already in the frame cache."""

    clip: LoadedClip
    cache: FrameCache
    train: ClipDataset | None
    eval: ClipDataset | None


def prepare_run(
    spec: ModelSpec, cfg: TrainConfig, data: DataPlan, on_video: VideoHook | None = None
) -> RunInputs:
    """Load a private CLIP and make sure every clip of the datasets is in the frame cache.

    ``on_video``: called as videos are decoded into the cache (see :meth:`FrameCache.warm`).
    """
    clip = load_clip(spec, cfg.device)
    if cfg.init_adapter is not None:  # another base model's adapter fails now, not after decoding every clip
        load_adapter(Path(cfg.init_adapter), expected_base=clip.identity)
    sampling = SamplingConfig(fps=cfg.fps, max_frames=cfg.frames, image_size=clip.image_size)
    cache = FrameCache(data.cache_dir, sampling, limits=data.limits)
    train_set = warm_dataset(data.train, cache, data.on_bad, on_video) if data.train is not None else None
    eval_set = warm_dataset(data.eval, cache, data.on_bad, on_video) if data.eval is not None else None
    return RunInputs(clip, cache, train_set, eval_set)


def _data_context(run: RunInputs) -> dict[str, Any]:
    return {
        "model": run.clip.identity.to_dict(),
        "train_data": run.train.summary() if run.train is not None else None,
        "eval_data": run.eval.summary() if run.eval is not None else None,
        "frame_cache": {"dir": str(run.cache.root), "decoded_videos": run.cache.decodes},
    }


def _train_and_save(
    run: RunInputs,
    cfg: TrainConfig,
    out_dir: Path,
    *,
    resume: bool,
    log: Log,
    on_step: StepHook | None = None,
) -> tuple[TrainResult, str | None]:
    assert run.train is not None, "training needs a training set"
    result = train(
        run.clip,
        cfg,
        run.train,
        run.cache,
        eval_set=run.eval,
        out_dir=out_dir,
        resume=resume,
        log=log,
        on_step=on_step,
    )
    version = None
    if result.prepared.adapted is not None:
        metadata = {
            "method": cfg.method,
            "train_data": run.train.source,
            "epochs": cfg.epochs,
            "steps": result.steps,
            "pooling": cfg.pooling,
            "continued_from": result.prepared.init_version,
        }
        version = result.prepared.adapted.save(out_dir / ADAPTER_DIR, metadata)
    adapter = {"dir": str(out_dir / ADAPTER_DIR), "version": version} if version else None
    write_report(out_dir, result, adapter=adapter, **_data_context(run))
    return result, version


def run_training(
    spec: ModelSpec,
    cfg: TrainConfig,
    data: DataPlan,
    out_dir: Path,
    *,
    resume: bool = False,
    log: Log = log_to_stderr,
    on_step: StepHook | None = None,
    on_video: VideoHook | None = None,
) -> tuple[TrainResult, str | None]:
    """Train ``cfg.method``; writes ``OUT/adapter/`` (adapter methods), ``report.json``, ``training.png``,
    ``checkpoint.pt``. Returns the result and the adapter version (None for methods without an adapter).
    ``on_step``: see :func:`~training.loop.train`; ``on_video``: :meth:`FrameCache.warm`."""
    run = prepare_run(spec, cfg, data, on_video)
    return _train_and_save(run, cfg, out_dir, resume=resume, log=log, on_step=on_step)


def run_eval(
    spec: ModelSpec, cfg: TrainConfig, data: DataPlan, adapter_dir: Path | None = None
) -> dict[str, Any]:
    """Metrics of the base model, or of the base model with the adapter in ``adapter_dir``, on ``data.eval``."""
    run = prepare_run(spec, cfg, data)
    assert run.eval is not None, "evaluation needs a dataset"
    adapter_info = None
    if adapter_dir is not None:
        adapter = load_adapter(adapter_dir, expected_base=run.clip.identity)
        AdaptedClip(run.clip, adapter.config, init=adapter)
        adapter_info = {
            "dir": str(adapter_dir),
            "version": adapter.version,
            "config": adapter.config.to_dict(),
        }
    metrics = evaluate(
        run.clip, run.eval, run.cache, context_length=cfg.text_context_length, tau=cfg.tau, amp=cfg.amp
    )
    return {"metrics": metrics, "adapter": adapter_info, "tau": cfg.tau, **_data_context(run)}


def run_compare(
    spec: ModelSpec,
    base: TrainConfig,
    data: DataPlan,
    out_dir: Path,
    *,
    methods: Sequence[str] = METHODS,
    lr_by_method: dict[str, float] | None = None,
    resume: bool = False,
    log: Log = log_to_stderr,
) -> list[dict[str, Any]]:
    """Every method in the same loop on the same data; writes ``compare.md``/``compare.json`` and one folder
    per method (report, plots, adapter). Each method starts from a freshly loaded CLIP.

    With ``resume`` a method whose folder holds the report of a finished run with exactly these settings, base
    model and data is not trained again (its row comes from that report), and an interrupted one continues
    from its checkpoint: a long comparison survives a crash or a reboot.
    """
    count_tensors_not_allocator_slack()  # so the methods' CPU peak memory is comparable
    first = prepare_run(spec, base, data)  # warms the cache once for all methods
    full_params = sum(p.numel() for name, p in first.clip.model.named_parameters() if name != "logit_scale")
    rows = []
    first_clip_used = False
    for method in methods:
        cfg = replace(base, method=method, lr=(lr_by_method or {}).get(method, base.lr))
        method_dir = out_dir / method
        summary = _finished_report(method_dir, cfg, first) if resume else None
        if summary is not None:
            log(f"{method}: reusing the finished run in {method_dir} (same settings, model and data)")
        else:
            clip = load_clip(spec, base.device) if first_clip_used else first.clip
            first_clip_used = True
            run = RunInputs(clip, first.cache, first.train, first.eval)
            result, _ = _train_and_save(run, cfg, method_dir, resume=resume, log=log)
            summary = result_summary(result)
        rows.append(compare_row(summary, full_params))
        log(f"{method}: {rows[-1]}")
    context = {
        "model": str(spec),
        "pooling": base.pooling,
        "epochs": base.epochs,
        "batch_size": base.batch_size,
        "frames": base.frames,
        "device": str(first.clip.device),
        "train_pairs": len(first.train.records) if first.train else 0,
        "eval_captions": len(first.eval.records) if first.eval else 0,
        "full_params": full_params,
        "config": base.to_dict(),
        "data": _data_context(first),
    }
    write_compare(out_dir, rows, context)
    return rows


def _finished_report(method_dir: Path, cfg: TrainConfig, run: RunInputs) -> dict[str, Any] | None:
    """``report.json`` of an earlier finished run of exactly ``cfg`` on this model and data, else None."""
    path = method_dir / "report.json"
    try:
        report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or cut short while written: train again
        return None
    context = _data_context(run)
    del context["frame_cache"]  # how many videos this process decoded is not a property of the run
    expected = json.loads(json.dumps({"config": cfg.to_dict(), **context}, default=str))
    try:  # through TrainConfig: a report written before a setting existed has that setting's default
        report["config"] = TrainConfig.from_dict(report.get("config") or {}).to_dict()
    except (ConfigError, TypeError):
        return None
    report = json.loads(json.dumps(report, default=str))
    return report if all(report.get(key) == value for key, value in expected.items()) else None

"""``videoseek train | eval | compare``: offline adapter training and evaluation (the training package).

Every command prints one JSON object on stdout (progress goes to stderr); a bad input exits 2 with one line.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from training.config import METHODS, ConfigError, OnBad, TrainConfig
from videoseek.cli.common import fail
from videoseek.layout import DataLayout
from videoseek.model_spec import ModelSpec
from videoseek.pooling_defaults import POOLING_TAU, Pooling
from videoseek.settings import SettingsError, get_settings

DataOpt = Annotated[
    Path,
    typer.Option("--data", help="captions.jsonl manifest, or MSR-VTT's MSRVTT_data.json (or its folder)."),
]
EvalDataOpt = Annotated[
    Path | None, typer.Option("--eval-data", help="Held-out data to evaluate on (same formats as --data).")
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", help="Model spec (ViT-B-32:openai, toy, ...); default VIDEOSEEK_MODEL."),
]
SplitOpt = Annotated[
    str, typer.Option("--split", help="MSR-VTT split of --data (train_9k, train_7k, test_1k-A).")
]
EvalSplitOpt = Annotated[str, typer.Option("--eval-split", help="MSR-VTT split of --eval-data.")]
VideosOpt = Annotated[
    Path | None, typer.Option("--videos", help="MSR-VTT video folder (default: found next to it).")
]
OnBadOpt = Annotated[
    str, typer.Option("--on-bad", help="Bad entries: 'error' stops, 'skip' leaves them out.")
]
CacheOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Frame cache (default: DATA_DIR/cache/training-frames).")
]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="Passes over the training pairs.")]
RecipeEpochsOpt = Annotated[
    int | None,
    typer.Option("--epochs", help="At most this many passes (default: the recipe's for the data)."),
]
RecipeBatchOpt = Annotated[
    int | None, typer.Option("--batch-size", help="Pairs per step (default: the recipe's for the data).")
]
RecipeLrOpt = Annotated[
    float | None,
    typer.Option("--lr", help="Peak learning rate (default: the recipe's for the backbone; paper: 1e-5)."),
]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Global contrastive batch (pairs per step).")]
MicroOpt = Annotated[
    int | None,
    typer.Option("--micro-batch", help="Pairs encoded at once; smaller than --batch-size = GradCache."),
]
LrOpt = Annotated[
    float,
    typer.Option(
        "--lr", help="Peak learning rate (paper: 1e-5 on ViT-B-32; toy CLIP: 1e-2 adapters, 1e-4 full)."
    ),
]
RankOpt = Annotated[int, typer.Option("--rank", help="Adapter bottleneck r.")]
SharedOpt = Annotated[int, typer.Option("--shared-dim", help="Shared up-projection width d_s.")]
FramesOpt = Annotated[int, typer.Option("--frames", help="Frames per clip (uniform over the 1/fps samples).")]
FpsOpt = Annotated[float, typer.Option("--fps", help="Frame sampling rate before thinning to --frames.")]
PoolingOpt = Annotated[
    str, typer.Option("--pooling", help="Training score: text_conditioned (paper) or mean.")
]
SeedOpt = Annotated[int, typer.Option("--seed")]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")]


@contextmanager
def _clear_errors() -> Iterator[None]:
    """Expected failures (bad data, settings, model, adapter, checkpoint) become one line and exit code 2."""
    from training.checkpoint import CheckpointMismatch
    from training.data import DataError
    from training.frame_cache import FrameError
    from videoseek.adapter import AdapterConfigError, AdapterFileError
    from videoseek.clip import ModelLoadError

    try:
        yield
    except (
        ConfigError,
        DataError,
        FrameError,
        SettingsError,
        ModelLoadError,
        AdapterFileError,
        AdapterConfigError,
        CheckpointMismatch,
    ) as exc:
        raise fail(str(exc)) from exc


def _spec(model: str | None) -> ModelSpec:
    """The model to train or evaluate (``--model`` or the settings'), parsed: a bad spec fails at once."""
    try:
        return get_settings().model if model is None else ModelSpec.parse(model)
    except ValueError as exc:
        raise fail(str(exc)) from exc


def _weights(spec: ModelSpec) -> ModelSpec:
    """``spec`` with its weights on disk (downloaded first if VIDEOSEEK_MODEL_DOWNLOAD=auto): called once the
    options and data are checked, since a download is work."""
    from videoseek.clip import check_model_spec

    check_model_spec(spec, get_settings().model_download)  # a ModelLoadError: one line (_clear_errors)
    return spec


def _on_bad(value: str) -> OnBad:
    if value not in ("skip", "error"):
        raise fail(f"--on-bad must be skip or error, got {value!r}")
    return value  # type: ignore[return-value]


def _plan(
    data: Path | None,
    eval_data: Path | None,
    *,
    split: str,
    eval_split: str,
    videos: Path | None,
    on_bad: str,
    cache_dir: Path | None,
) -> Any:
    from training.data import load_dataset
    from training.run import DataPlan

    policy = _on_bad(on_bad)
    settings = get_settings()

    def load(path: Path | None, which: str) -> Any:
        return None if path is None else load_dataset(path, split=which, videos_dir=videos, on_bad=policy)

    return DataPlan(
        train=load(data, split),
        eval=load(eval_data, eval_split),
        cache_dir=cache_dir or DataLayout(settings.data_dir).training_frames_dir,
        on_bad=policy,
        limits=settings.ingest,
    )


def _with_validation_split(plan: Any) -> Any:
    """``plan`` with about a fifth of its training videos held out as its evaluation set (none if too few)."""
    from dataclasses import replace

    from training.guard import MIN_PAIRS
    from training.splits import validation_splits

    splits = validation_splits(plan.train, 0.2, min_pairs=MIN_PAIRS)
    return replace(plan, train=splits.train, eval=splits.guard)


def _recipe(
    spec: ModelSpec,
    base: TrainConfig,
    pairs: int,
    epochs: int | None,
    batch_size: int | None,
    lr: float | None,
    patience: int | None,
    on_validation: bool,
) -> TrainConfig:
    """The recipe for ``pairs`` on ``spec`` (training/recipe.py), with the options given replacing its values."""
    from dataclasses import replace

    from training.recipe import recommended_config

    cfg = recommended_config(max(2, pairs), spec, base)
    return replace(
        cfg,
        epochs=cfg.epochs if epochs is None else epochs,
        batch_size=cfg.batch_size if batch_size is None else batch_size,
        lr=cfg.lr if lr is None else lr,
        # early stopping on --eval-data would pick the epoch by test scores: only when asked for
        patience=patience if patience is not None else cfg.patience if on_validation else 0,
    )


def _print(payload: Any) -> None:
    typer.echo(json.dumps(payload, indent=2, default=str))


def train(
    data: DataOpt,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: adapter/, report.json, plots, checkpoint.")
    ],
    method: Annotated[str, typer.Option("--method", help=f"One of {', '.join(METHODS)}.")] = "cma",
    model: ModelOpt = None,
    eval_data: EvalDataOpt = None,
    split: SplitOpt = "train_9k",
    eval_split: EvalSplitOpt = "test_1k-A",
    videos: VideosOpt = None,
    epochs: RecipeEpochsOpt = None,
    batch_size: RecipeBatchOpt = None,
    micro_batch: MicroOpt = None,
    lr: RecipeLrOpt = None,
    patience: Annotated[
        int | None,
        typer.Option(
            "--patience",
            help="Stop after N evaluations without a better one, keeping the best (default: the recipe's on "
            "the automatic validation split; off with --eval-data, which is test data).",
        ),
    ] = None,
    rank: RankOpt = 8,
    shared_dim: SharedOpt = 16,
    frames: FramesOpt = 12,
    fps: FpsOpt = 1.0,
    pooling: PoolingOpt = "text_conditioned",
    seed: SeedOpt = 42,
    device: DeviceOpt = "auto",
    cache_dir: CacheOpt = None,
    on_bad: OnBadOpt = "error",
    checkpoint_every: Annotated[
        int, typer.Option("--checkpoint-every", help="Also checkpoint every N steps.")
    ] = 0,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUT/checkpoint.pt if present.")
    ] = False,
    init_adapter: Annotated[
        Path | None,
        typer.Option(
            "--init-adapter",
            help="Start from this adapter folder instead of from scratch (refine it on new captions); its "
            "method, rank and shared width replace --method, --rank and --shared-dim.",
        ),
    ] = None,
) -> None:
    """Train an adapter (or a baseline) on captioned clips; prints where the adapter went and its metrics."""
    from training.methods import continue_from
    from training.run import run_training

    with _clear_errors():
        spec = _spec(model)
        paper = TrainConfig()
        base = TrainConfig(  # checks the options given before the data is read
            method=method, micro_batch=micro_batch, rank=rank, shared_dim=shared_dim, frames=frames, fps=fps,
            pooling=_pooling(pooling), seed=seed, device=device, checkpoint_every=checkpoint_every,
            epochs=paper.epochs if epochs is None else epochs, lr=paper.lr if lr is None else lr,
            batch_size=paper.batch_size if batch_size is None else batch_size,
            patience=0 if patience is None else patience,
        )  # fmt: skip
        plan = _plan(
            data,
            eval_data,
            split=split,
            eval_split=eval_split,
            videos=videos,
            on_bad=on_bad,
            cache_dir=cache_dir,
        )
        if eval_data is None:  # hold out some videos of --data: evaluation and early stopping need them
            plan = _with_validation_split(plan)
        cfg = _recipe(spec, base, len(plan.train), epochs, batch_size, lr, patience, eval_data is None)
        if init_adapter is not None:
            cfg = continue_from(cfg, init_adapter)
        result, version = run_training(_weights(spec), cfg, plan, out, resume=resume)
    _print(
        {
            "method": cfg.method,
            "out": str(out),
            "adapter_dir": str(out / "adapter") if version else None,
            "adapter_version": version,
            "trainable_params": result.trainable_params,
            "steps": result.steps,
            "train_seconds": round(result.train_seconds, 2),
            "recipe": {
                "epochs": cfg.epochs,
                "batch_size": cfg.batch_size,
                "lr": cfg.lr,
                "patience": cfg.patience,
            },
            "best_epoch": result.best_epoch,
            "evaluated_on": plan.eval.source if plan.eval is not None else None,
            "metrics": result.final_metrics,
        }
    )


def evaluate(
    data: DataOpt,
    model: ModelOpt = None,
    adapter: Annotated[Path | None, typer.Option("--adapter", help="Adapter folder to apply.")] = None,
    split: SplitOpt = "test_1k-A",
    videos: VideosOpt = None,
    frames: FramesOpt = 12,
    fps: FpsOpt = 1.0,
    tau: Annotated[float, typer.Option("--tau", help="Text-conditioned pooling temperature.")] = POOLING_TAU,
    device: DeviceOpt = "auto",
    cache_dir: CacheOpt = None,
    on_bad: OnBadOpt = "error",
) -> None:
    """Print retrieval metrics (T2V and V2T; mean and text-conditioned pooling) as JSON."""
    from training.run import run_eval

    with _clear_errors():
        spec = _spec(model)
        cfg = TrainConfig(method="zero-shot", frames=frames, fps=fps, tau=tau, device=device)
        plan = _plan(
            None, data, split=split, eval_split=split, videos=videos, on_bad=on_bad, cache_dir=cache_dir
        )
        _print(run_eval(_weights(spec), cfg, plan, adapter))


def compare(
    data: DataOpt,
    out: Annotated[
        Path, typer.Option("--out", help="Output folder: compare.md, compare.json, one folder per method.")
    ],
    model: ModelOpt = None,
    eval_data: EvalDataOpt = None,
    methods: Annotated[
        str, typer.Option("--methods", help="Comma-separated subset of the methods.")
    ] = ",".join(METHODS),
    method_lr: Annotated[
        str, typer.Option("--method-lr", help="Per-method learning rates, e.g. full=1e-4,vision=2e-3.")
    ] = "",
    split: SplitOpt = "train_9k",
    eval_split: EvalSplitOpt = "test_1k-A",
    videos: VideosOpt = None,
    epochs: EpochsOpt = 5,
    batch_size: BatchOpt = 128,
    micro_batch: MicroOpt = None,
    lr: LrOpt = 1e-5,
    rank: RankOpt = 8,
    shared_dim: SharedOpt = 16,
    frames: FramesOpt = 12,
    fps: FpsOpt = 1.0,
    pooling: PoolingOpt = "text_conditioned",
    seed: SeedOpt = 42,
    device: DeviceOpt = "auto",
    cache_dir: CacheOpt = None,
    on_bad: OnBadOpt = "error",
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Reuse methods already finished in OUT with the same settings and data; continue interrupted ones.",
        ),
    ] = False,
) -> None:
    """Train and evaluate every method in the same loop on the same data; writes the comparison table."""
    from training.run import run_compare

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in METHODS]
    if unknown or not chosen:
        raise fail(f"--methods: unknown {unknown or 'empty list'}; choose from {', '.join(METHODS)}")
    with _clear_errors():
        spec = _spec(model)
        if eval_data is None and data.suffix == ".jsonl":
            raise ConfigError("compare needs held-out data: pass --eval-data (a manifest of other clips)")
        cfg = TrainConfig(
            method="cma", epochs=epochs, batch_size=batch_size, micro_batch=micro_batch, lr=lr, rank=rank,
            shared_dim=shared_dim, frames=frames, fps=fps, pooling=_pooling(pooling), seed=seed, device=device,
        )  # fmt: skip
        plan = _plan(
            data,
            eval_data or data,
            split=split,
            eval_split=eval_split,
            videos=videos,
            on_bad=on_bad,
            cache_dir=cache_dir,
        )
        rows = run_compare(
            _weights(spec), cfg, plan, out, methods=chosen, lr_by_method=_method_lrs(method_lr), resume=resume
        )
    _print({"out": str(out), "table": str(out / "compare.md"), "rows": rows})


def _pooling(value: str) -> Pooling:
    if value not in ("mean", "text_conditioned"):
        raise fail(f"--pooling must be mean or text_conditioned, got {value!r}")
    return value  # type: ignore[return-value]


def _method_lrs(text: str) -> dict[str, float]:
    rates: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in METHODS:
            raise fail(f"--method-lr: expected METHOD=LR with METHOD in {', '.join(METHODS)}, got {item!r}")
        try:
            rates[name] = float(value)
        except ValueError as exc:
            raise fail(f"--method-lr: {value!r} is not a number") from exc
    return rates


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("eval")(evaluate)
    app.command("compare")(compare)

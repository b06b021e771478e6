"""The training loop: one function, read top to bottom (nanoGPT-style), the same for every method.

Symmetric InfoNCE over a batch of (caption, clip) pairs; only the method's trainable tensors are in the
optimizer (AdamW, betas (0.9, 0.98), eps 1e-6, decoupled weight decay on weight matrices only); the learning
rate warms up linearly over the first 10% of steps and then follows a cosine to zero; gradients are clipped
to norm 1.0; ``logit_scale`` stays frozen. Master weights are fp32; on CUDA the forward runs under bf16
autocast. CPU or CUDA is picked by the model's device, with no code change.

A global batch larger than memory allows is reached GradCache-style, not by summing micro-batch losses
(which would shrink the negatives to each micro-batch and change the objective): all features of the global
batch are first computed without a graph, the loss and its gradient w.r.t. the features are taken on the full
B x B matrix, then each micro-batch is re-encoded with a graph and back-propagated with its slice of that
gradient. The update equals the full-batch one for one extra forward pass.

Frozen weights need no gradient and autograd stores nothing for a sub-graph that leads to no trainable
tensor: a tower without adapters is run without a graph, and frozen linear layers keep only their weight, not
their input. That is where adapter training saves memory over full fine-tuning.

Checkpoints (``checkpoint.pt``, see training/checkpoint.py) describe themselves: config, base model identity,
step, optimizer, RNG states, history. The epoch order is a function of (seed, epoch), so a resumed run
continues exactly where it stopped.

``train`` reads top to bottom: :func:`set_up` the run (fixed from then on, a :class:`RunSetup`), restore a
checkpoint's :class:`RunState` when resuming, then per epoch one :func:`optimizer_step` per batch, the
evaluation the schedule asks for and a checkpoint. Besides the model's and the optimizer's tensors, only the
``RunState`` changes while a run trains, and only the functions that take it change it.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from torch import nn
from tqdm.auto import tqdm

from training.batching import FrameBatch, Normalizer, encode_frames, encode_texts, load_frames
from training.checkpoint import CHECKPOINT_FORMAT as CHECKPOINT_FORMAT  # each `X as X`: re-exported
from training.checkpoint import CHECKPOINT_NAME as CHECKPOINT_NAME  # (they lived here before checkpoint.py)
from training.checkpoint import CheckpointMismatch as CheckpointMismatch
from training.checkpoint import check_resumable, restore, rng_state, trainable_state
from training.checkpoint import load_checkpoint as load_checkpoint
from training.checkpoint import save_checkpoint as save_checkpoint
from training.config import TrainConfig
from training.data import ClipDataset, ClipRecord
from training.early_stopping import BestEpoch
from training.evaluate import autocast_for, evaluate
from training.frame_cache import FrameCache
from training.memory import PeakMemory
from training.methods import Method, Prepared, count_parameters, decay_groups, get_method, prepare
from training.similarity import pairwise_scores
from videoseek.clip import LoadedClip


@dataclass
class TrainResult:
    """What a run produced; ``history`` has one row per evaluated epoch (epoch 0: before training)."""

    config: TrainConfig
    prepared: Prepared
    trainable_params: int
    total_params: int
    steps: int
    train_seconds: float
    peak_memory_bytes: int | None
    history: list[dict[str, Any]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    step_cpu_seconds: list[float] = field(default_factory=list)  # process CPU time: robust on a busy machine
    final_metrics: dict[str, Any] | None = None  # of the weights the run ends with (the best, with patience)
    best_epoch: int | None = None  # with patience: the epoch whose weights were kept (0: none beat the start)
    stopped_early: bool = False


# ----------------------------------------------------------------------------------------------------------
# the pieces


def log_to_stderr(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def lr_at(step: int, total_steps: int, cfg: TrainConfig) -> float:
    """Linear warmup over ``warmup_frac`` of the steps, then cosine decay to zero (``step`` is 0-based)."""
    warmup = int(cfg.warmup_frac * total_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total_steps - warmup)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The shuffled batches of one epoch: a pure function of (seed, epoch); a last batch of one is dropped."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    return [b for b in batches if len(b) >= 2]


def symmetric_infonce(logits: torch.Tensor) -> torch.Tensor:
    """Mean of the cross-entropies over rows (text -> video) and columns (video -> text) of [B, B] logits."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


@dataclass
class Batch:
    frames: FrameBatch
    tokens: torch.Tensor

    def slice(self, start: int, stop: int) -> Batch:
        part = FrameBatch(self.frames.frames[start:stop], self.frames.mask[start:stop])
        return Batch(part, self.tokens[start:stop])


def _features(model: nn.Module, normalizer: Normalizer, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    return encode_texts(model, batch.tokens), encode_frames(model, normalizer, batch.frames)


def train_step(
    model: nn.Module,
    normalizer: Normalizer,
    batch: Batch,
    loss_of: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    micro_batch: int,
    amp: Callable[[], Any],
) -> float:
    """Forward + backward of one global batch (gradients accumulate in ``.grad``); returns the loss."""
    size = len(batch.frames)
    if micro_batch >= size:
        with amp():
            text, frames = _features(model, normalizer, batch)
        loss = loss_of(text, frames, batch.frames.mask)
        loss.backward()
        return float(loss.detach())
    # GradCache: features of the whole batch without a graph, loss gradient w.r.t. them, then per micro-batch
    # a forward with a graph that is back-propagated with its slice of that gradient.
    with torch.no_grad(), amp():
        parts = [
            _features(model, normalizer, batch.slice(i, i + micro_batch)) for i in range(0, size, micro_batch)
        ]
    text = torch.cat([p[0] for p in parts]).float().requires_grad_()
    frames = torch.cat([p[1] for p in parts]).float().requires_grad_()
    loss = loss_of(text, frames, batch.frames.mask)
    loss.backward()
    assert text.grad is not None and frames.grad is not None
    for i in range(0, size, micro_batch):
        with amp():
            part_text, part_frames = _features(model, normalizer, batch.slice(i, i + micro_batch))
        outputs = [(o, g) for o, g in ((part_text, text.grad), (part_frames, frames.grad)) if o.requires_grad]
        if outputs:
            torch.autograd.backward(
                [o.float() for o, _ in outputs], [g[i : i + micro_batch] for _, g in outputs]
            )
    return float(loss.detach())


# ----------------------------------------------------------------------------------------------------------
# the run: what it is set up with, and how far it has got


@dataclass(frozen=True)
class RunSetup:
    """Everything a run is set up with before its first step; none of it is replaced while it trains (the
    model's and the optimizer's tensors are what the steps change)."""

    clip: LoadedClip
    cfg: TrainConfig
    method: Method
    prepared: Prepared
    normalizer: Normalizer
    logit_scale: float  # read once: it is frozen, and reading it waits for the GPU
    records: list[ClipRecord]
    tokens: torch.Tensor  # the captions of ``records``, tokenized once, on the CPU
    cache: FrameCache
    eval_set: ClipDataset | None
    optimizer: torch.optim.Optimizer | None  # None: the method trains nothing
    epochs: int  # 0 for a method that trains nothing
    steps_per_epoch: int
    trainable_params: int
    total_params: int
    checkpoint_path: Path | None  # None: no ``out_dir``, nothing is saved

    @property
    def model(self) -> nn.Module:
        return self.clip.model

    @property
    def device(self) -> torch.device:
        return self.clip.device

    @property
    def total_steps(self) -> int:
        return self.epochs * self.steps_per_epoch

    @property
    def micro_batch(self) -> int:
        return self.cfg.micro_batch or self.cfg.batch_size

    def amp(self) -> Any:
        """The forward's autocast context (bf16 on CUDA when ``cfg.amp``, none on the CPU)."""
        return autocast_for(self.device, self.cfg.amp)

    def loss(self, text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The objective: symmetric InfoNCE over the batch's scores with the run's pooling."""
        scores = pairwise_scores(text, frames, mask, self.logit_scale, self.cfg.pooling, self.cfg.tau)
        return symmetric_infonce(scores)

    def describe(self) -> str:
        return (
            f"{self.method.name}: {self.trainable_params:,} trainable of {self.total_params:,} parameters; "
            f"{len(self.records)} pairs, {self.steps_per_epoch} steps/epoch x {self.epochs} epochs on "
            f"{self.device}"
        )


@dataclass
class RunState:
    """How far a run has got. ``step``, ``train_seconds`` and ``history`` are checkpointed; the step timings
    are this process's steps only (a resumed run times the steps it takes)."""

    step: int = 0
    train_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    step_cpu_seconds: list[float] = field(default_factory=list)

    def count_step(self, seconds: float, cpu_seconds: float) -> None:
        self.step += 1
        self.step_seconds.append(seconds)
        self.step_cpu_seconds.append(cpu_seconds)
        self.train_seconds += seconds


def set_up(
    clip: LoadedClip,
    cfg: TrainConfig,
    train_set: ClipDataset,
    cache: FrameCache,
    *,
    eval_set: ClipDataset | None = None,
    out_dir: Path | None = None,
) -> RunSetup:
    """Seed, make the method's tensors trainable, tokenize the captions, build the optimizer and schedule.

    Seeding comes first: the adapters' initial weights are drawn from the seeded generator.
    """
    seed_everything(cfg.seed)
    method = get_method(cfg.method)
    prepared = prepare(clip, method, cfg)
    records = train_set.records
    optimizer = (
        torch.optim.AdamW(
            decay_groups(prepared.trainable, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps
        )
        if prepared.trainable
        else None
    )
    return RunSetup(
        clip=clip,
        cfg=cfg,
        method=method,
        prepared=prepared,
        normalizer=Normalizer.for_model(clip.model).to(clip.device),
        logit_scale=clip.logit_scale,
        records=records,
        tokens=clip.tokenize([r.caption for r in records], cfg.text_context_length).cpu(),
        cache=cache,
        eval_set=eval_set,
        optimizer=optimizer,
        epochs=cfg.epochs if method.trains else 0,
        steps_per_epoch=len(epoch_batches(len(records), cfg.batch_size, cfg.seed, 0)),
        trainable_params=count_parameters(prepared.trainable),
        total_params=count_parameters(list(clip.model.parameters())),
        checkpoint_path=out_dir / CHECKPOINT_NAME if out_dir is not None else None,
    )


# ----------------------------------------------------------------------------------------------------------
# what the loop does: a step, an evaluation, a checkpoint


def optimizer_step(run: RunSetup, state: RunState, index: torch.Tensor, lr: float) -> float:
    """One optimizer step at ``lr`` on the training pairs at ``index``; counted and timed in ``state``.

    Returns the batch's loss.
    """
    optimizer = run.optimizer
    assert optimizer is not None, "a method that trains nothing takes no steps (its run has 0 epochs)"
    started, cpu_started = time.perf_counter(), time.process_time()
    for group in optimizer.param_groups:
        group["lr"] = lr
    chosen = [run.records[i] for i in index.tolist()]
    batch = Batch(load_frames(run.cache, chosen).to(run.device), run.tokens[index].to(run.device))
    loss = train_step(run.model, run.normalizer, batch, run.loss, run.micro_batch, run.amp)
    torch.nn.utils.clip_grad_norm_(run.prepared.trainable, run.cfg.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if run.device.type == "cuda":  # kernels run asynchronously: time the step, not its launch
        torch.cuda.synchronize(run.device)
    state.count_step(time.perf_counter() - started, time.process_time() - cpu_started)
    return loss


def batches_left(run: RunSetup, state: RunState, epoch: int) -> list[torch.Tensor]:
    """The batches of ``epoch`` not trained on yet: all of them, unless a resumed run stopped inside it."""
    batches = epoch_batches(len(run.records), run.cfg.batch_size, run.cfg.seed, epoch)
    return batches[state.step - epoch * run.steps_per_epoch :]


def evaluation_due(run: RunSetup, epochs_done: int) -> bool:
    """The schedule: every ``eval_every`` epochs, and always after the last one."""
    return epochs_done == run.epochs or epochs_done % run.cfg.eval_every == 0


def evaluate_run(run: RunSetup) -> dict[str, Any] | None:
    """Retrieval metrics of the model as it is now on the run's evaluation set (None without one)."""
    if run.eval_set is None:
        return None
    cfg = run.cfg
    return evaluate(
        run.clip, run.eval_set, run.cache, context_length=cfg.text_context_length, tau=cfg.tau, amp=cfg.amp
    )


def history_row(epoch: int, step: int, losses: list[float], metrics: dict[str, Any] | None) -> dict[str, Any]:
    return {"epoch": epoch, "step": step, "loss": float(np.mean(losses)) if losses else None, "eval": metrics}


def resume_from(run: RunSetup, path: Path) -> RunState:
    """Where the checkpointed run stopped; its tensors, optimizer state and RNG states are put back in ``run``.

    Raises ``CheckpointMismatch`` for a checkpoint of other settings, another base model or other data.
    """
    payload = load_checkpoint(path)
    check_resumable(payload, run.cfg, run.clip.identity.fingerprint, len(run.records))
    restore(payload, run.model, run.optimizer)
    return RunState(step=payload["step"], train_seconds=payload["train_seconds"], history=payload["history"])


def write_checkpoint(run: RunSetup, state: RunState) -> None:
    """Save enough to continue from ``state.step`` exactly (nothing without ``out_dir`` or an optimizer)."""
    if run.checkpoint_path is None or run.optimizer is None:
        return
    save_checkpoint(
        run.checkpoint_path,
        {
            "format": CHECKPOINT_FORMAT,
            "config": run.cfg.to_dict(),
            "model": run.clip.identity.to_dict(),
            "pairs": len(run.records),
            "step": state.step,
            "total_steps": run.total_steps,
            "train_seconds": state.train_seconds,
            "history": state.history,
            "trainable": trainable_state(run.model, run.prepared.trainable),
            "optimizer": run.optimizer.state_dict(),
            "rng": rng_state(),
        },
    )


def result_of(run: RunSetup, state: RunState, peak_memory_bytes: int | None) -> TrainResult:
    return TrainResult(
        config=run.cfg,
        prepared=run.prepared,
        trainable_params=run.trainable_params,
        total_params=run.total_params,
        steps=state.step,
        train_seconds=state.train_seconds,
        peak_memory_bytes=peak_memory_bytes,
        history=state.history,
        final_metrics=state.history[-1]["eval"],
        step_seconds=state.step_seconds,
        step_cpu_seconds=state.step_cpu_seconds,
    )


def _epoch_line(method: str, row: dict[str, Any], pooling: str) -> str:
    line = f"{method} epoch {row['epoch']}: loss {row['loss']:.4f}" if row["loss"] is not None else method
    if row["eval"] is not None:
        line += f", T2V R@1 {row['eval'][pooling]['t2v']['R@1']:.1f} ({pooling})"
    return line


# ----------------------------------------------------------------------------------------------------------
# the loop


@dataclass(frozen=True)
class StepDone:
    """One optimizer step finished: ``step`` of ``total_steps`` (counted over the whole run), in ``epoch``."""

    step: int
    total_steps: int
    epoch: int
    loss: float


StepHook = Callable[[StepDone], None]


def train(
    clip: LoadedClip,
    cfg: TrainConfig,
    train_set: ClipDataset,
    cache: FrameCache,
    *,
    eval_set: ClipDataset | None = None,
    out_dir: Path | None = None,
    resume: bool = False,
    log: Callable[[str], None] | None = None,
    on_step: StepHook | None = None,
) -> TrainResult:
    """Train ``cfg.method`` on ``train_set`` (the model inside ``clip`` is modified in place).

    Progress lines go to ``log`` (default: stderr, above the progress bar), so stdout stays machine-readable.
    ``on_step`` is called after every optimizer step; an exception it raises (an admin's cancel) ends the run
    there, with the checkpoint of the last finished epoch (or ``checkpoint_every``) left in ``out_dir``.
    """
    log = log or log_to_stderr
    run = set_up(clip, cfg, train_set, cache, eval_set=eval_set, out_dir=out_dir)
    log(run.describe())
    state = RunState()
    if resume and run.checkpoint_path is not None and run.checkpoint_path.is_file():
        state = resume_from(run, run.checkpoint_path)
        log(f"resumed from {run.checkpoint_path} at step {state.step}/{run.total_steps}")
    if not state.history:  # epoch 0: the model before any training
        state.history.append(history_row(0, 0, [], evaluate_run(run)))
    best = BestEpoch(cfg.patience, cfg.pooling) if cfg.patience and run.eval_set is not None else None
    if best is not None:  # a resumed run starts over: the best tensors are not in the checkpoint
        best.observe(state.history[-1]["epoch"], state.history[-1]["eval"], run.prepared.trainable)
    stopped_early = False

    with PeakMemory(run.device) as peak:
        for epoch in range(state.step // max(1, run.steps_per_epoch), run.epochs):
            run.model.train()
            losses: list[float] = []
            desc = f"{run.method.name} epoch {epoch + 1}/{run.epochs}"
            bar = tqdm(batches_left(run, state, epoch), desc=desc, leave=False, disable=None)
            for index in bar:
                lr = lr_at(state.step, run.total_steps, cfg)
                losses.append(optimizer_step(run, state, index, lr))
                bar.set_postfix(loss=f"{losses[-1]:.4f}", lr=f"{lr:.2e}")
                if cfg.checkpoint_every and state.step % cfg.checkpoint_every == 0:
                    write_checkpoint(run, state)
                if on_step is not None:
                    on_step(StepDone(state.step, run.total_steps, epoch + 1, losses[-1]))
            run.model.eval()
            metrics = evaluate_run(run) if evaluation_due(run, epoch + 1) else None
            state.history.append(history_row(epoch + 1, state.step, losses, metrics))
            log(_epoch_line(run.method.name, state.history[-1], cfg.pooling))
            write_checkpoint(run, state)
            if best is not None and best.observe(epoch + 1, metrics, run.prepared.trainable):
                stopped_early = epoch + 1 < run.epochs
                break

    if best is not None and best.epoch is not None:
        best.restore(run.prepared.trainable)
        if stopped_early or best.epoch != state.history[-1]["epoch"]:
            log(f"keeping epoch {best.epoch} (validation T2V MRR {best.score:.1f}%)")

    # A method that trains nothing (zero-shot) used no memory for training.
    result = result_of(run, state, peak.bytes if run.total_steps else 0)
    if best is not None and best.epoch is not None:
        result.best_epoch, result.stopped_early = best.epoch, stopped_early
        result.final_metrics = next(r["eval"] for r in state.history if r["epoch"] == best.epoch)
    return result

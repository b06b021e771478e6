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

Checkpoints (``checkpoint.pt``) describe themselves: config, base model identity, step, optimizer, RNG states,
history. The epoch order is a function of (seed, epoch), so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from torch import nn
from tqdm.auto import tqdm

from training.batching import FrameBatch, Normalizer, encode_frames, encode_texts, load_frames
from training.config import TrainConfig
from training.data import ClipDataset
from training.evaluate import autocast_for, evaluate
from training.frame_cache import FrameCache
from training.memory import PeakMemory
from training.methods import Prepared, count_parameters, decay_groups, get_method, prepare
from training.similarity import pairwise_scores
from videoseek.clip import LoadedClip

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


class CheckpointMismatch(RuntimeError):
    """A checkpoint cannot resume this run (other method, model or data); the message says what differs."""


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
    final_metrics: dict[str, Any] | None = None


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
# checkpoints


def _trainable_state(model: nn.Module, prepared: Prepared) -> dict[str, torch.Tensor]:
    wanted = {id(p) for p in prepared.trainable}
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if id(p) in wanted}


def _rng_state() -> dict[str, Any]:
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    version, items, *rest = state["python"]
    random.setstate((version, tuple(items), *rest))
    kind, keys, *tail = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *tail))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    payload: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(
            f"{path} is not a videoseek training checkpoint (format {payload.get('format')})"
        )
    return payload


def _check_resumable(payload: dict[str, Any], cfg: TrainConfig, clip: LoadedClip, n_pairs: int) -> None:
    saved = TrainConfig.from_dict(payload["config"])
    # Everything but the device shapes the run (epochs set the learning-rate schedule).
    differs = [k for k, v in cfg.to_dict().items() if k != "device" and saved.to_dict()[k] != v]
    if differs:
        raise CheckpointMismatch(
            f"checkpoint was made with different settings ({', '.join(differs)}); use another --out directory "
            "or the same settings"
        )
    if payload["model"]["fingerprint"] != clip.identity.fingerprint:
        raise CheckpointMismatch("checkpoint was made on another base model; resume with the same --model")
    if payload["pairs"] != n_pairs:
        raise CheckpointMismatch(f"checkpoint saw {payload['pairs']} training pairs, this data has {n_pairs}")


def _restore(payload: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in payload["trainable"].items():
            params[name].copy_(value)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    _set_rng_state(payload["rng"])


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
    model, device = clip.model, clip.device
    seed_everything(cfg.seed)
    method = get_method(cfg.method)
    prepared = prepare(clip, method, cfg)
    normalizer = Normalizer.for_model(model).to(device)

    def amp() -> Any:
        return autocast_for(device, cfg.amp)

    logit_scale = clip.logit_scale

    def loss_of(text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return symmetric_infonce(pairwise_scores(text, frames, mask, logit_scale, cfg.pooling, cfg.tau))

    def run_eval() -> dict[str, Any] | None:
        if eval_set is None:
            return None
        return evaluate(
            clip, eval_set, cache, context_length=cfg.text_context_length, tau=cfg.tau, amp=cfg.amp
        )

    records = train_set.records
    tokens = clip.tokenize([r.caption for r in records], cfg.text_context_length).cpu()
    epochs = cfg.epochs if method.trains else 0
    steps_per_epoch = len(epoch_batches(len(records), cfg.batch_size, cfg.seed, 0))
    total_steps = epochs * steps_per_epoch
    micro_batch = cfg.micro_batch or cfg.batch_size
    optimizer = (
        torch.optim.AdamW(
            decay_groups(prepared.trainable, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, eps=cfg.eps
        )
        if prepared.trainable
        else None
    )
    trainable_params = count_parameters(prepared.trainable)
    total_params = count_parameters(list(model.parameters()))
    log(
        f"{method.name}: {trainable_params:,} trainable of {total_params:,} parameters; {len(records)} pairs, "
        f"{steps_per_epoch} steps/epoch x {epochs} epochs on {device}"
    )

    step, train_seconds, history = 0, 0.0, []
    step_seconds: list[float] = []
    step_cpu_seconds: list[float] = []
    checkpoint_path = out_dir / CHECKPOINT_NAME if out_dir is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.is_file():
        payload = load_checkpoint(checkpoint_path)
        _check_resumable(payload, cfg, clip, len(records))
        _restore(payload, model, optimizer)
        step, train_seconds, history = payload["step"], payload["train_seconds"], payload["history"]
        log(f"resumed from {checkpoint_path} at step {step}/{total_steps}")

    def checkpoint() -> None:
        if checkpoint_path is None or optimizer is None:
            return
        save_checkpoint(
            checkpoint_path,
            {
                "format": CHECKPOINT_FORMAT,
                "config": cfg.to_dict(),
                "model": clip.identity.to_dict(),
                "pairs": len(records),
                "step": step,
                "total_steps": total_steps,
                "train_seconds": train_seconds,
                "history": history,
                "trainable": _trainable_state(model, prepared),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(),
            },
        )

    if not history:
        history.append({"epoch": 0, "step": 0, "loss": None, "eval": run_eval()})

    with PeakMemory(device) as peak:
        for epoch in range(step // max(1, steps_per_epoch), epochs):
            assert optimizer is not None
            model.train()
            batches = epoch_batches(len(records), cfg.batch_size, cfg.seed, epoch)
            done_in_epoch = step - epoch * steps_per_epoch
            losses: list[float] = []
            bar = tqdm(
                batches[done_in_epoch:],
                desc=f"{method.name} epoch {epoch + 1}/{epochs}",
                leave=False,
                disable=None,
            )
            for index in bar:
                started, cpu_started = time.perf_counter(), time.process_time()
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, total_steps, cfg)
                chosen = [records[i] for i in index.tolist()]
                batch = Batch(load_frames(cache, chosen).to(device), tokens[index].to(device))
                loss = train_step(model, normalizer, batch, loss_of, micro_batch, amp)
                torch.nn.utils.clip_grad_norm_(prepared.trainable, cfg.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                step_seconds.append(time.perf_counter() - started)
                step_cpu_seconds.append(time.process_time() - cpu_started)
                train_seconds += step_seconds[-1]
                step += 1
                losses.append(loss)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    checkpoint()
                if on_step is not None:
                    on_step(StepDone(step, total_steps, epoch + 1, loss))
            model.eval()
            last = epoch + 1 == epochs
            metrics = run_eval() if (last or (epoch + 1) % cfg.eval_every == 0) else None
            row = {
                "epoch": epoch + 1,
                "step": step,
                "loss": float(np.mean(losses)) if losses else None,
                "eval": metrics,
            }
            history.append(row)
            log(_epoch_line(method.name, row, cfg.pooling))
            checkpoint()

    return TrainResult(
        config=cfg,
        prepared=prepared,
        trainable_params=trainable_params,
        total_params=total_params,
        steps=step,
        train_seconds=train_seconds,
        peak_memory_bytes=peak.bytes if total_steps else 0,
        history=history,
        final_metrics=history[-1]["eval"],
        step_seconds=step_seconds,
        step_cpu_seconds=step_cpu_seconds,
    )


def _epoch_line(method: str, row: dict[str, Any], pooling: str) -> str:
    line = f"{method} epoch {row['epoch']}: loss {row['loss']:.4f}" if row["loss"] is not None else method
    if row["eval"] is not None:
        line += f", T2V R@1 {row['eval'][pooling]['t2v']['R@1']:.1f} ({pooling})"
    return line

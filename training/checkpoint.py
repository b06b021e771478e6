"""Training checkpoints: the file a run leaves to continue from, and the checks that it is the same run.

``checkpoint.pt`` (format 1) is a ``torch.save`` dict that describes itself: ``format``, ``config`` (the
run's ``TrainConfig``), ``model`` (the base model's identity), ``pairs`` (how many training pairs), ``step``,
``total_steps``, ``train_seconds``, ``history``, ``trainable`` (the method's tensors by parameter name),
``optimizer`` and ``rng`` (Python, NumPy, torch and CUDA generator states). The training loop writes it
(:func:`training.loop.write_checkpoint`); a checkpoint of another run is refused with what differs.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from training.config import TrainConfig

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


class CheckpointMismatch(RuntimeError):
    """A checkpoint cannot resume this run (other method, model or data); the message says what differs."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` to ``path`` atomically: a crash while writing leaves the previous checkpoint."""
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


def check_resumable(payload: dict[str, Any], cfg: TrainConfig, base_fingerprint: str, n_pairs: int) -> None:
    """Raise ``CheckpointMismatch`` unless ``payload`` was made by this run: settings, base model and data."""
    saved = TrainConfig.from_dict(payload["config"])
    # Everything but the device shapes the run (epochs set the learning-rate schedule).
    differs = [k for k, v in cfg.to_dict().items() if k != "device" and saved.to_dict()[k] != v]
    if differs:
        raise CheckpointMismatch(
            f"checkpoint was made with different settings ({', '.join(differs)}); use another --out directory "
            "or the same settings"
        )
    if payload["model"]["fingerprint"] != base_fingerprint:
        raise CheckpointMismatch("checkpoint was made on another base model; resume with the same --model")
    if payload["pairs"] != n_pairs:
        raise CheckpointMismatch(f"checkpoint saw {payload['pairs']} training pairs, this data has {n_pairs}")


def trainable_state(model: nn.Module, trainable: list[nn.Parameter]) -> dict[str, torch.Tensor]:
    """CPU copies of the ``trainable`` tensors of ``model``, by parameter name."""
    wanted = {id(p) for p in trainable}
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if id(p) in wanted}


def restore(payload: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """Put the checkpoint's tensors into ``model``, its state into ``optimizer`` and its RNG states back."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in payload["trainable"].items():
            params[name].copy_(value)
    if optimizer is not None:
        optimizer.load_state_dict(payload["optimizer"])
    set_rng_state(payload["rng"])


def rng_state() -> dict[str, Any]:
    """Every generator a run draws from, in a form ``torch.load(weights_only=True)`` reads back."""
    np_state = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True))
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, items, *rest = state["python"]
    random.setstate((version, tuple(items), *rest))
    kind, keys, *tail = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *tail))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

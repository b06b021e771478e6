"""Early stopping on a validation set: keep the trainable tensors of the best epoch, stop when it stays best.

Small collections make the step budget hard to guess: too few steps learn nothing, too many overfit a few
dozen captions. With ``TrainConfig.patience`` set, every evaluation is scored (text-to-video mean reciprocal
rank with the run's pooling, in percent: R@1 moves in steps of 100/n on a small set, and a retrain ranks its
few validation captions among other videos of the collection too, ``training/metrics.py``), the best epoch's tensors
are kept (an adapter's are a few MB), the run stops after ``patience`` evaluations without a better one, and
the best tensors are put back before the adapter is saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


def selection_score(metrics: dict[str, Any], pooling: str) -> float:
    """What "better" means for early stopping: text-to-video mean reciprocal rank, in percent."""
    return 100.0 * float(metrics[pooling]["t2v"]["MRR"])


@dataclass
class BestEpoch:
    """The best evaluation so far and the trainable tensors it was made with."""

    patience: int
    pooling: str
    epoch: int | None = None
    score: float = float("-inf")
    tensors: list[torch.Tensor] = field(default_factory=list)
    since_best: int = 0

    def observe(self, epoch: int, metrics: dict[str, Any] | None, trainable: Sequence[torch.Tensor]) -> bool:
        """Record one evaluation; True when training should stop (no better one for ``patience`` of them)."""
        if metrics is None:
            return False
        score = selection_score(metrics, self.pooling)
        if score > self.score:
            self.epoch, self.score, self.since_best = epoch, score, 0
            self.tensors = [t.detach().clone() for t in trainable]
            return False
        self.since_best += 1
        return self.since_best >= self.patience

    def restore(self, trainable: Sequence[torch.Tensor]) -> None:
        """Put the best epoch's tensors back (in place: optimizers and adapters keep their references)."""
        with torch.no_grad():
            for tensor, best in zip(trainable, self.tensors, strict=True):
                tensor.copy_(best)

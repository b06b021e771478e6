"""The default recipe: batch, epochs, learning rate and early stopping that fit the data a run gets.

The paper's recipe (lr 1e-5, batch 128, 5 epochs) is for MSR-VTT's 180k caption pairs on a web-scale CLIP; on
a collection's few hundred pairs it takes a handful of steps and learns nothing (64 toy videos: 5 steps, loss
5.010 -> 5.009). So:

- **batch**: 128 at scale, smaller for small sets (about an eighth of the pairs, a power of two, at least 8), so
  an epoch is several steps and the in-batch negatives stay a fair share of the set;
- **steps**: about ``TARGET_STEPS`` in all (5 epochs at least, ``MAX_EPOCHS`` at most), with a validation
  split, evaluation every epoch (or every few on long runs) and early stopping, which keeps the best epoch:
  on a small set the budget is an upper bound, not a guess that must be right;
- **learning rate**, by backbone: the toy CLIP's adapters (any checkpoint of its architecture) train at 1e-2
  with batch 32 (docs/training.md's comparison; the 80-video run of the lifecycle issue: R@1 12.5 -> 22.5),
  scaled with the square root of the batch, up as well as down (the data-size study at 400 videos, batch 128:
  2e-2 beat the 1e-2 a cap used to keep on R@1, R@5 and MRR, and 1e-2 runs kept their last epochs:
  docs/quality.md); a pre-trained open_clip model gets the paper's 1e-5 at the paper's scale and 1e-4 below
  it. The last is not measured here (no web-scale CLIP on this machine): early stopping and the guard keep a
  poor choice from reaching users, and ``lr`` stays a request option.

At the paper's scale (``PAPER_SCALE_PAIRS``) the recipe is the paper's, early stopping aside.
"""

from __future__ import annotations

import math
from dataclasses import replace

from training.config import TrainConfig
from videoseek.model_spec import ModelSpec
from videoseek.toy.model import TOY_MODEL_NAME

PAPER_SCALE_PAIRS = 100_000  # MSR-VTT's training split: 9k videos x 20 captions
PAPER = TrainConfig()  # lr 1e-5, batch 128, 5 epochs
TARGET_STEPS = 300
MIN_EPOCHS = 5
MAX_EPOCHS = 100
MIN_BATCH = 8
# Evaluations without a better validation score before a run stops: at least PATIENCE, and at least half the
# run's evaluations, since warmup and a small learning rate can leave the first epochs flat (the toy world: 5
# evaluations stopped every 240-video retrain at epoch 0).
PATIENCE = 5
EVALUATIONS = 25  # about this many over a long run (each embeds the validation clips once)
TOY_LR_AT_BATCH_32 = 1e-2
PRETRAINED_SMALL_DATA_LR = 1e-4


def recommended_batch(pairs: int) -> int:
    if pairs >= PAPER_SCALE_PAIRS:
        return PAPER.batch_size
    eighth = max(MIN_BATCH, pairs // 8)
    return int(min(PAPER.batch_size, 2 ** math.floor(math.log2(eighth))))


def is_toy_architecture(spec: ModelSpec) -> bool:
    """The committed toy CLIP, or another checkpoint of its architecture (``videoseek-toy:/path``: a
    ``videoseek toy pretrain --out`` of one's own): both train at the toy lr, not a web-scale CLIP's."""
    return spec.kind == "toy" or (spec.kind == "checkpoint" and spec.name == TOY_MODEL_NAME)


def recommended_lr(spec: ModelSpec, pairs: int, batch_size: int) -> float:
    if is_toy_architecture(spec):
        return TOY_LR_AT_BATCH_32 * math.sqrt(batch_size / 32)
    return PAPER.lr if pairs >= PAPER_SCALE_PAIRS else PRETRAINED_SMALL_DATA_LR


def recommended_config(
    pairs: int, spec: ModelSpec, base: TrainConfig | None = None, target_steps: int = TARGET_STEPS
) -> TrainConfig:
    """``base`` (default: the paper's settings) with batch, epochs, lr, evaluation and patience for ``pairs``
    training pairs on ``spec`` (``target_steps``: the step budget below the paper's scale; studies vary it)."""
    base = base or TrainConfig()
    if pairs < 2:
        raise ValueError(f"a run needs at least 2 training pairs, got {pairs}")
    batch = min(recommended_batch(pairs), pairs)
    if pairs >= PAPER_SCALE_PAIRS:
        epochs = PAPER.epochs
    else:
        steps_per_epoch = math.ceil(pairs / batch)
        epochs = min(MAX_EPOCHS, max(MIN_EPOCHS, math.ceil(target_steps / steps_per_epoch)))
    return replace(
        base,
        batch_size=batch,
        epochs=epochs,
        lr=recommended_lr(spec, pairs, batch),
        eval_every=max(1, epochs // EVALUATIONS),
        patience=max(PATIENCE, epochs // max(1, epochs // EVALUATIONS) // 2),
    )

"""Text x clip score matrices with either pooling, through ``videoseek.encoders`` (what search serves).

``mean`` is the pooling an ANN index can serve directly; ``text_conditioned`` is the paper's default.
Scores are computed in float32 whatever the autocast state, so bf16 never quantizes the pooling softmax.
"""

from __future__ import annotations

import torch

from videoseek.encoders import mean_pooled_scores, text_conditioned_scores
from videoseek.pooling_defaults import POOLING_TAU, Pooling


def pairwise_scores(
    text: torch.Tensor,
    frames: torch.Tensor,
    mask: torch.Tensor,
    logit_scale: float,
    pooling: Pooling,
    tau: float = POOLING_TAU,
) -> torch.Tensor:
    """[T, V] scores for text [T, D] and frames [V, F, D] (mask [V, F]); differentiable."""
    text, frames = text.float(), frames.float()
    if pooling == "mean":
        return mean_pooled_scores(text, frames, mask, logit_scale)
    return text_conditioned_scores(text, frames, mask, logit_scale, tau).scores


@torch.no_grad()
def chunked_scores(
    text: torch.Tensor,
    frames: torch.Tensor,
    mask: torch.Tensor,
    logit_scale: float,
    pooling: Pooling,
    tau: float = POOLING_TAU,
    chunk: int = 256,
) -> torch.Tensor:
    """:func:`pairwise_scores` a block of texts at a time, bounding memory at chunk x V x F (evaluation)."""
    blocks = [
        pairwise_scores(text[i : i + chunk], frames, mask, logit_scale, pooling, tau)
        for i in range(0, text.shape[0], chunk)
    ]
    return torch.cat(blocks)

"""The re-ranking score: the paper's text-conditioned pooling, from ``videoseek.core.encoders``."""

from __future__ import annotations

import numpy as np
import torch

from videoseek.core.encoders import text_conditioned_scores


def score_candidates(
    text: np.ndarray, frames: np.ndarray, mask: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores ``[N]`` of one query against N candidates' frames, and the frame weights ``[N, F]``.

    ``logit_scale`` is 1 so the score stays a cosine in [-1, 1]: the ranking is the paper's, and the number
    (and ``min_score``) means the same for every model.
    """
    with torch.inference_mode():
        pooled = text_conditioned_scores(
            torch.from_numpy(text).unsqueeze(0),
            torch.from_numpy(frames),
            torch.from_numpy(mask),
            logit_scale=1.0,
            tau=tau,
        )
    return pooled.scores[0].float().numpy(), pooled.weights[0].float().numpy()

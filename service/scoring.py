"""The re-ranking score of one query against its ANN candidates: the paper's text-conditioned pooling, or mean
pooling where ``settings.search.pooling`` asks for it.

The definition lives in :func:`videoseek.encoders.text_conditioned_scores` (torch, batched over texts,
differentiable: what training uses). Serving scores one query against a few dozen candidates on the request's
thread, where torch's per-op overhead and its OpenMP team cost more than the arithmetic (0.47 ms against
0.08 ms for 40 clips x 8 frames), so this is the same formula in numpy; a test holds the two equal.
"""

from __future__ import annotations

import numpy as np

from service.search_engine import ScoreFn
from videoseek.pooling_defaults import Pooling

_EPS = 1e-12


def score_candidates(
    text: np.ndarray, frames: np.ndarray, mask: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores ``[N]`` of one query ``[D]`` against N candidates' frames ``[N, F, D]`` (valid where
    ``mask [N, F]``), and the frame weights ``[N, F]`` = ``softmax(<t, f> / tau)`` over each clip's valid frames.

    ``logit_scale`` is 1 so the score stays a cosine in [-1, 1]: the ranking is the paper's, and the number
    (and ``min_score``) means the same for every model.
    """
    text64, frames64 = text.astype(np.float64), frames.astype(np.float64)
    weights = _frame_weights(text64, frames64, mask, tau)
    return _cosines(text64, np.einsum("nf,nfd->nd", weights, frames64)), weights.astype(np.float32)


def score_mean(
    text: np.ndarray, frames: np.ndarray, mask: np.ndarray, tau: float
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine scores ``[N]`` of one query against the mean of each candidate's valid frames (mean pooling: the
    vector the pooled ANN walks), with :func:`score_candidates`' frame weights, which here only say which frame
    matched best (``best_frame_s``)."""
    text64, frames64 = text.astype(np.float64), frames.astype(np.float64)
    valid = mask.astype(np.float64)
    pooled = np.einsum("nf,nfd->nd", valid, frames64) / valid.sum(axis=1, keepdims=True)
    return _cosines(text64, pooled), _frame_weights(text64, frames64, mask, tau).astype(np.float32)


def _frame_weights(text: np.ndarray, frames: np.ndarray, mask: np.ndarray, tau: float) -> np.ndarray:
    """``softmax(<t, f_j> / tau)`` over each clip's valid frames, ``[N, F]`` (0 on padding)."""
    logits = np.where(mask, frames @ text / tau, -np.inf)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return np.asarray(weights / weights.sum(axis=1, keepdims=True))


def _cosines(text: np.ndarray, pooled: np.ndarray) -> np.ndarray:
    norms = np.maximum(np.linalg.norm(pooled, axis=1), _EPS) * max(float(np.linalg.norm(text)), _EPS)
    return np.asarray(pooled @ text / norms, dtype=np.float32)


# settings.search.pooling -> the re-ranking score
SCORE_FNS: dict[Pooling, ScoreFn] = {"text_conditioned": score_candidates, "mean": score_mean}

"""The serving re-rank score is the paper's text-conditioned pooling, exactly as core defines it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.scoring import score_candidates
from videoseek.encoders import text_conditioned_scores


@pytest.mark.parametrize(("clips", "frames", "dim"), [(40, 8, 128), (7, 12, 512), (1, 1, 16)])
def test_numpy_rerank_equals_the_core_definition_with_padded_frames(
    clips: int, frames: int, dim: int
) -> None:
    rng = np.random.default_rng(clips * 1000 + dim)
    text = rng.standard_normal(dim).astype(np.float32)
    vectors = (rng.standard_normal((clips, frames, dim)) * 3).astype(np.float32)  # features are not unit-norm
    mask = rng.random((clips, frames)) < 0.7
    mask[:, 0] = True  # every clip has a frame; the rest are padding of shorter clips
    vectors[~mask] = 1e3  # padding must not leak into scores or weights, whatever it holds
    scores, weights = score_candidates(text, vectors, mask, tau=5.0)
    reference = text_conditioned_scores(
        torch.from_numpy(text)[None],
        torch.from_numpy(vectors),
        torch.from_numpy(mask),
        logit_scale=1.0,
        tau=5.0,
    )
    np.testing.assert_allclose(scores, reference.scores[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(weights, reference.weights[0].numpy(), atol=1e-5)  # the reference is float32
    assert np.all(weights[~mask] == 0) and np.allclose(weights.sum(axis=1), 1.0)

"""The serving re-rank scores are the paper's text-conditioned pooling and mean pooling, exactly as core defines
them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.scoring import score_candidates, score_mean
from videoseek.encoders import cosine_scores, mean_pool, text_conditioned_scores


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


def test_the_mean_pooling_score_is_the_cosine_of_the_valid_frames_mean_with_the_same_best_frame() -> None:
    rng = np.random.default_rng(7)
    text = rng.standard_normal(32).astype(np.float32)
    vectors = (rng.standard_normal((9, 6, 32)) * 3).astype(np.float32)
    mask = rng.random((9, 6)) < 0.6
    mask[:, 0] = True
    vectors[~mask] = 1e3  # padding must not leak into the mean
    scores, weights = score_mean(text, vectors, mask, tau=5.0)
    reference = cosine_scores(
        torch.from_numpy(text)[None], mean_pool(torch.from_numpy(vectors), torch.from_numpy(mask))
    )
    np.testing.assert_allclose(scores, reference[0].numpy(), atol=1e-5)
    # the weights only pick the moment shown: the frame text-conditioned pooling weighs most
    np.testing.assert_array_equal(weights, score_candidates(text, vectors, mask, tau=5.0)[1])

"""Poolings and the paper's score: masked padding, tau, logit_scale * cos(t, v)."""

from __future__ import annotations

import pytest
import torch
from adapter_kit import TEXTS
from PIL import Image

from videoseek.clip import LoadedClip
from videoseek.encoders import (
    cosine_scores,
    encode_images,
    encode_texts,
    mean_pool,
    mean_pooled_scores,
    preprocess_images,
    text_conditioned_pool,
    text_conditioned_scores,
    text_conditioned_weights,
)


def _clips(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    text = torch.randn(3, 16, generator=g, dtype=torch.float64) * 2
    frames = torch.randn(4, 5, 16, generator=g, dtype=torch.float64) * 2
    mask = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 0]], dtype=torch.bool
    )
    return text, frames, mask


def test_mean_pool_ignores_padded_frames() -> None:
    _, frames, mask = _clips()
    padded = frames.clone()
    padded[~mask] = 1e6  # garbage in padding must not leak
    pooled = mean_pool(padded, mask)
    for n in range(4):
        torch.testing.assert_close(pooled[n], frames[n][mask[n]].mean(dim=0))


def test_text_conditioned_pool_follows_the_definition() -> None:
    text, frames, mask = _clips()
    tau = 5.0
    pooled = text_conditioned_pool(text, frames, mask, tau)
    assert pooled.shape == (3, 4, 16)
    for t in range(3):
        for n in range(4):
            valid = frames[n][mask[n]]
            weights = torch.softmax(valid @ text[t] / tau, dim=0)  # unnormalised features, <t, f_j> / tau
            torch.testing.assert_close(pooled[t, n], (weights[:, None] * valid).sum(dim=0))
    weights = text_conditioned_weights(text, frames, mask, tau)
    assert torch.all(weights[:, ~mask] == 0)
    torch.testing.assert_close(weights.sum(dim=-1), torch.ones(3, 4, dtype=torch.float64))


def test_score_is_logit_scale_times_cosine_of_the_pooled_video() -> None:
    text, frames, mask = _clips(1)
    result = text_conditioned_scores(text, frames, mask, logit_scale=100.0, tau=5.0)
    pooled = text_conditioned_pool(text, frames, mask, 5.0)
    expected = 100.0 * torch.nn.functional.cosine_similarity(text[:, None, :], pooled, dim=-1)
    torch.testing.assert_close(result.scores, expected)
    torch.testing.assert_close(result.weights, text_conditioned_weights(text, frames, mask, 5.0))
    # The heaviest weight names the frame closest (by dot product) to the text among the valid ones.
    sims = torch.einsum("td,nfd->tnf", text, frames).masked_fill(~mask, float("-inf"))
    assert torch.equal(result.weights.argmax(dim=-1), sims.argmax(dim=-1))


def test_tau_moves_between_mean_and_max_pooling() -> None:
    text, frames, mask = _clips(2)
    wide = text_conditioned_pool(text, frames, mask, tau=1e9)
    torch.testing.assert_close(wide, mean_pool(frames, mask).expand(3, -1, -1))
    sharp = text_conditioned_weights(text, frames, mask, tau=1e-6)
    assert torch.all((sharp.max(dim=-1).values - 1).abs() < 1e-9)
    torch.testing.assert_close(
        mean_pooled_scores(text, frames, mask, 100.0), cosine_scores(text, mean_pool(frames, mask), 100.0)
    )


def test_scores_are_differentiable_for_training() -> None:
    text, frames, mask = _clips(3)
    text.requires_grad_(True)
    frames.requires_grad_(True)
    text_conditioned_scores(text, frames, mask, logit_scale=100.0).scores.sum().backward()
    assert text.grad is not None and frames.grad is not None
    assert torch.all(frames.grad[~mask] == 0) and torch.isfinite(frames.grad).all()


def test_bad_shapes_and_empty_clips_are_refused() -> None:
    text, frames, mask = _clips()
    with pytest.raises(ValueError, match="at least one valid"):
        mean_pool(frames, torch.zeros_like(mask))
    with pytest.raises(ValueError, match="does not match frames"):
        text_conditioned_pool(text, frames, mask[:, :3])
    with pytest.raises(ValueError, match="tau must be > 0"):
        text_conditioned_weights(text, frames, mask, tau=0)


def test_plain_encoders_batch_without_changing_results(tiny_clip: LoadedClip) -> None:
    images = preprocess_images(tiny_clip, [Image.new("RGB", (48, 40), c) for c in ("red", "blue", "green")])
    assert images.shape == (3, 3, tiny_clip.image_size, tiny_clip.image_size)
    torch.testing.assert_close(
        encode_images(tiny_clip, images, batch_size=2), encode_images(tiny_clip, images)
    )
    torch.testing.assert_close(encode_texts(tiny_clip, TEXTS, batch_size=3), encode_texts(tiny_clip, TEXTS))
    assert encode_texts(tiny_clip, []).shape == (0, tiny_clip.embed_dim)

"""CLIP features for texts and frames, and the paper's text-to-video similarity.

A video (clip) is a set of frame features ``[F, D]`` (projected, NOT normalised), padded to a common F with a
boolean mask. Two poolings:

* mean pooling (CLIP4Clip "meanP"): one vector per clip, what an ANN index can serve directly;
* text-conditioned pooling (the paper's default): weights ``a_j = softmax_j(<t, f_j> / tau)`` over the valid
  frames, pooled ``v = sum_j a_j f_j``, score ``logit_scale * cos(t, v)``; the weights also tell which frame
  matched best.

``logit_scale`` here is the multiplier itself (``LoadedClip.logit_scale``: exp of the stored parameter, 100 for
OpenAI CLIP), not its log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from PIL.Image import Image
from torch.nn import functional

from videoseek.clip import LoadedClip
from videoseek.pooling_defaults import POOLING_TAU as DEFAULT_TAU

_EPS = 1e-12


def preprocess_images(clip: LoadedClip, images: Sequence[Image]) -> torch.Tensor:
    """PIL images -> ``[N, 3, H, W]`` with open_clip's eval transform (resize, centre crop, normalise)."""
    if not images:
        return torch.empty(0, 3, clip.image_size, clip.image_size)
    return torch.stack([clip.preprocess(image) for image in images])


@torch.no_grad()
def encode_texts(
    clip: LoadedClip, texts: Sequence[str], context_length: int = 32, batch_size: int = 256
) -> torch.Tensor:
    """Plain (unadapted) projected text features ``[N, D]``, unnormalised, on CPU."""
    chunks = [
        clip.encode_text(clip.tokenize(texts[i : i + batch_size], context_length)).float().cpu()
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, clip.embed_dim)


@torch.no_grad()
def encode_images(clip: LoadedClip, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Plain (unadapted) projected image features ``[N, D]`` for preprocessed ``[N, 3, H, W]``, on CPU."""
    weight = next(clip.model.visual.parameters())
    chunks = [
        clip.model.encode_image(images[i : i + batch_size].to(weight.device, weight.dtype)).float().cpu()
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(chunks) if chunks else torch.empty(0, clip.embed_dim)


def _valid_mask(frames: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if frames.dim() != 3:
        raise ValueError(f"frames must be [N, F, D], got shape {tuple(frames.shape)}")
    if mask is None:
        return torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
    if tuple(mask.shape) != tuple(frames.shape[:2]):
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match frames {tuple(frames.shape[:2])}")
    mask = mask.to(device=frames.device, dtype=torch.bool)
    if mask.numel() and not bool(mask.any(dim=1).all()):
        raise ValueError("every clip needs at least one valid (unmasked) frame")
    return mask


def mean_pool(frames: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Average of the valid frames: ``[N, F, D]`` (+ mask ``[N, F]``) -> ``[N, D]``."""
    valid = _valid_mask(frames, mask).to(frames.dtype).unsqueeze(-1)
    return (frames * valid).sum(dim=1) / valid.sum(dim=1)


def text_conditioned_weights(
    text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None = None, tau: float = DEFAULT_TAU
) -> torch.Tensor:
    """Per-frame weights ``[T, N, F]``: softmax over valid frames of ``<t, f_j> / tau`` (unnormalised features)."""
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    valid = _valid_mask(frames, mask)
    logits = torch.einsum("td,nfd->tnf", text, frames) / tau
    return logits.masked_fill(~valid.unsqueeze(0), float("-inf")).softmax(dim=-1)


def text_conditioned_pool(
    text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None = None, tau: float = DEFAULT_TAU
) -> torch.Tensor:
    """The video vector each text sees: ``v[t, n] = sum_j a_j f_j`` -> ``[T, N, D]``."""
    return torch.einsum("tnf,nfd->tnd", text_conditioned_weights(text, frames, mask, tau), frames)


class PooledScores(NamedTuple):
    scores: torch.Tensor  # [T, N]: logit_scale * cos(t, pooled video)
    weights: torch.Tensor  # [T, N, F]: the pooling weights (argmax: the best-matching frame)


def text_conditioned_scores(
    text: torch.Tensor,
    frames: torch.Tensor,
    mask: torch.Tensor | None,
    logit_scale: float | torch.Tensor,
    tau: float = DEFAULT_TAU,
) -> PooledScores:
    """The paper's score ``logit_scale * cos(t, v)`` for every (text, clip) pair, with the pooling weights.

    ``<t, v>`` and ``|v|`` are computed from the frame similarities and each clip's frame Gram matrix, so the
    ``[T, N, D]`` pooled vectors are never materialised (differentiable, fine for training losses too).
    """
    valid = _valid_mask(frames, mask)
    sims = torch.einsum("td,nfd->tnf", text, frames)
    weights = (sims / tau).masked_fill(~valid.unsqueeze(0), float("-inf")).softmax(dim=-1)
    dot = (weights * sims).sum(dim=-1)
    gram = torch.einsum("nfd,ngd->nfg", frames, frames)
    pooled_sq = torch.einsum("tnf,nfg,tng->tn", weights, gram, weights).clamp_min(_EPS)
    cos = dot / (text.norm(dim=-1, keepdim=True).clamp_min(_EPS) * pooled_sq.sqrt())
    return PooledScores(scores=logit_scale * cos, weights=weights)


def cosine_scores(
    text: torch.Tensor, videos: torch.Tensor, logit_scale: float | torch.Tensor = 1.0
) -> torch.Tensor:
    """``logit_scale * cos(t, v)`` for ``text [T, D]`` and pooled ``videos [N, D]`` -> ``[T, N]``."""
    return logit_scale * functional.normalize(text, dim=-1) @ functional.normalize(videos, dim=-1).t()


def mean_pooled_scores(
    text: torch.Tensor, frames: torch.Tensor, mask: torch.Tensor | None, logit_scale: float | torch.Tensor
) -> torch.Tensor:
    """``logit_scale * cos(t, mean of valid frames)`` -> ``[T, N]`` (the meanP baseline)."""
    return cosine_scores(text, mean_pool(frames, mask), logit_scale)

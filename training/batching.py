"""From cached frames and captions to model-ready batches.

Frames travel as uint8 (4x less to copy than float) and are normalised on the training device. Clips with
fewer frames than the maximum are padded with zeros and masked; pooling ignores masked frames.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch
from torch import nn

from training.data import ClipRecord
from training.frame_cache import FrameCache
from videoseek.clip import ClipModel, encode_text_tokens

# open_clip's defaults, used only when a model carries no preprocessing config of its own.
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class FrameBatch:
    """``frames`` uint8 [B, F, S, S, 3] and ``mask`` bool [B, F] (True: a real frame)."""

    frames: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device) -> FrameBatch:
        return FrameBatch(self.frames.to(device, non_blocking=True), self.mask.to(device, non_blocking=True))

    def __len__(self) -> int:
        return int(self.frames.shape[0])


def load_frames(cache: FrameCache, clips: Sequence[ClipRecord]) -> FrameBatch:
    """Frames of ``clips`` from the cache, padded to the sampling's ``max_frames``."""
    max_frames = cache.sampling.max_frames
    size = cache.sampling.image_size
    frames = np.zeros((len(clips), max_frames, size, size, 3), dtype=np.uint8)
    mask = np.zeros((len(clips), max_frames), dtype=bool)
    for i, clip in enumerate(clips):
        got = cache.get(clip).frames[:max_frames]
        frames[i, : len(got)] = got
        mask[i, : len(got)] = True
    return FrameBatch(torch.from_numpy(frames), torch.from_numpy(mask))


class Normalizer(nn.Module):
    """uint8 [..., S, S, 3] -> float [N, 3, S, S] normalised with the model's own mean and std."""

    mean: torch.Tensor
    inv_std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1) * 255.0, persistent=False)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(std).view(1, 3, 1, 1) * 255.0), persistent=False)

    @classmethod
    def for_model(cls, model: nn.Module) -> Normalizer:
        cfg = getattr(getattr(model, "visual", None), "preprocess_cfg", None) or {}
        return cls(cfg.get("mean", OPENAI_MEAN), cfg.get("std", OPENAI_STD))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        size = frames.shape[-2]
        images = frames.reshape(-1, size, size, 3).permute(0, 3, 1, 2).float()
        return (images - self.mean) * self.inv_std


def encode_frames(model: nn.Module, normalizer: Normalizer, batch: FrameBatch) -> torch.Tensor:
    """Per-frame features [B, F, D] (projected, not normalised); padded frames are zeros and never encoded."""
    real = batch.mask.reshape(-1)
    images = normalizer(batch.frames)[real]
    encoded: torch.Tensor = model.encode_image(images)  # type: ignore[operator]
    features = encoded.new_zeros((real.shape[0], encoded.shape[-1]))
    features = features.index_put((real.nonzero().squeeze(1),), encoded)
    return features.view(*batch.mask.shape, -1)


def encode_texts(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Text features [B, D] (projected, not normalised)."""
    return encode_text_tokens(cast("ClipModel", model), tokens)

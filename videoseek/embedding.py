"""Frames -> CLIP vectors through each collection's adapted image tower, batched across clips and videos.

Every sampled frame is embedded once (overlapping clips share frames), in batches of ``embed_batch_size``
that may mix videos and adapters (the :class:`~videoseek.adapter.AdapterBank` routes each row to its own
adapter). Frame vectors are projected and NOT normalised (what the paper's pooling and the store's
re-ranking expect); a clip's pooled vector is the mean of its frames' vectors (CLIP4Clip "meanP").

Preprocessing runs on batched uint8 tensors on the model's device (resize shortest side, centre crop,
normalise), the same steps as open_clip's eval transform, instead of one PIL image at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from videoseek.layout import DataLayout
from videoseek.settings import Settings

if TYPE_CHECKING:
    import torch

    from videoseek.adapter import AdapterBank
    from videoseek.clip import LoadedClip

# Resident adapter weights per process; a ViT-B/32 adapter is ~2 MB, so this holds hundreds.
ADAPTER_BANK_BYTES = 512 * 1024**2

ProgressFn = Callable[[int, int], None]  # (frames done, frames total)


@dataclass(frozen=True)
class EmbedRequest:
    """All sampled frames of one video (uint8 [N, H, W, 3]) and the adapter version to embed them with."""

    frames: np.ndarray
    adapter_version: str | None


def preprocess_frames(clip: LoadedClip, frames: np.ndarray) -> torch.Tensor:
    """uint8 RGB ``[N, H, W, 3]`` -> normalised ``[N, 3, S, S]`` on the model's device (open_clip's eval steps)."""
    import torch
    import torchvision.transforms.functional as tvf
    from PIL import Image

    cfg = clip.model.visual.preprocess_cfg
    size = cfg["size"]
    square = not isinstance(size, list | tuple) or size[0] == size[1]
    if cfg.get("resize_mode", "shortest") != "shortest" or not square:
        # Rare configurations: use open_clip's own PIL transform, one frame at a time.
        pil = [clip.preprocess(Image.fromarray(f)) for f in frames]
        return torch.stack(pil).to(clip.device)
    side = int(size[0] if isinstance(size, list | tuple) else size)
    mode = tvf.InterpolationMode(cfg.get("interpolation", "bicubic"))
    batch: torch.Tensor = torch.from_numpy(np.ascontiguousarray(frames)).to(clip.device).permute(0, 3, 1, 2)
    batch = tvf.resize(batch.float(), side, interpolation=mode, antialias=True)
    batch = tvf.center_crop(batch, [side, side]).clamp_(0.0, 255.0).div_(255.0)
    mean = torch.tensor(cfg["mean"], device=clip.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"], device=clip.device).view(1, 3, 1, 1)
    return (batch - mean) / std


def clip_vectors(frame_vectors: np.ndarray, frame_indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """One clip's frame vectors ``[F, D]`` and their mean (the pooled vector ``[D]``)."""
    import torch

    from videoseek.encoders import mean_pool

    frames = np.ascontiguousarray(frame_vectors[list(frame_indices)], dtype=np.float32)
    pooled = mean_pool(torch.from_numpy(frames).unsqueeze(0))[0].numpy()
    return frames, pooled


class FrameEmbedder:
    """The image tower of this process's CLIP with its adapter bank; loaded on first use (after fork)."""

    def __init__(self, settings: Settings, layout: DataLayout | None = None) -> None:
        self.settings = settings
        self.layout = layout or DataLayout(settings.data_dir)
        self.batch_size = settings.worker.embed_batch_size
        self._clip: LoadedClip | None = None
        self._bank: AdapterBank | None = None
        self._lock = threading.Lock()

    def load(self) -> LoadedClip:
        """Load the configured CLIP (cached per process) and its adapter bank; idempotent."""
        with self._lock:
            if self._clip is None:
                from videoseek.adapter import AdapterBank
                from videoseek.clip import get_clip

                clip = get_clip(self.settings.model, self.settings.device)
                self._bank = AdapterBank.from_directory(clip, self.layout.adapters_dir, ADAPTER_BANK_BYTES)
                self._clip = clip
            return self._clip

    @property
    def clip(self) -> LoadedClip:
        return self.load()

    @property
    def fingerprint(self) -> str:
        """The base model's fingerprint: a collection made for another one cannot be embedded here."""
        return self.clip.identity.fingerprint

    def embed(self, requests: Sequence[EmbedRequest], progress: ProgressFn | None = None) -> list[np.ndarray]:
        """Frame vectors ``[N_i, D]`` (float32, unnormalised) for each request, computed in shared batches."""
        import torch

        clip = self.load()
        assert self._bank is not None
        total = sum(len(r.frames) for r in requests)
        out = [np.empty((len(r.frames), clip.embed_dim), dtype=np.float32) for r in requests]
        done = 0
        for batch in _batches(requests, self.batch_size):
            # Videos differ in frame size: preprocess each video's slice, then run one forward for all.
            pixels = torch.cat([preprocess_frames(clip, requests[k].frames[a:b]) for k, a, b in batch])
            adapters = [requests[k].adapter_version for k, a, b in batch for _ in range(b - a)]
            vectors = self._bank.encode_images(pixels, adapters).float().cpu().numpy()
            row = 0
            for k, a, b in batch:
                out[k][a:b] = vectors[row : row + b - a]
                row += b - a
            done += row
            if progress is not None:
                progress(done, total)
        return out


def _batches(requests: Sequence[EmbedRequest], size: int) -> list[list[tuple[int, int, int]]]:
    """Cut the frames of all requests, in order, into batches of ``size``: lists of (request, start, stop)."""
    batches: list[list[tuple[int, int, int]]] = []
    current: list[tuple[int, int, int]] = []
    room = size
    for k, request in enumerate(requests):
        start, n = 0, len(request.frames)
        while start < n:
            take = min(room, n - start)
            current.append((k, start, start + take))
            start += take
            room -= take
            if room == 0:
                batches.append(current)
                current, room = [], size
    if current:
        batches.append(current)
    return batches

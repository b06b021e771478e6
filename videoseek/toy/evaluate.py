"""Zero-shot retrieval numbers of the toy CLIP on held-out scenes (test split of each domain).

* images: domain A test scenes, each caption matches exactly one of ``n`` candidate images.
* videos: domain B test scenes written as real encoded videos, decoded again, sampled at 1 fps (at most 12
  frames) and mean-pooled, as an index built without an adapter would see them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling

from videoseek.toy.captions import caption
from videoseek.toy.generate import generate_videos
from videoseek.toy.model import ToyClip, toy_tokenizer
from videoseek.toy.pretrain import normalize_images
from videoseek.toy.render import render_image
from videoseek.toy.scene import sample_distinct_scenes

EVAL_SEED = 1234
IMAGE_CANDIDATES = 500
VIDEO_CANDIDATES = 200


@dataclass(frozen=True)
class RetrievalScores:
    r1: float
    r5: float
    r10: float
    median_rank: float
    candidates: int

    def to_dict(self) -> dict[str, float]:
        return {
            "R@1": round(self.r1, 4),
            "R@5": round(self.r5, 4),
            "R@10": round(self.r10, 4),
            "MdR": self.median_rank,
            "n": self.candidates,
        }


def retrieval_scores(similarity: torch.Tensor) -> RetrievalScores:
    """Text-to-item scores from an N x N similarity matrix whose diagonal holds the matching pairs."""
    target = similarity.diagonal().unsqueeze(1)
    ranks = (similarity > target).sum(dim=1).float() + 1
    return RetrievalScores(
        r1=float((ranks <= 1).float().mean()),
        r5=float((ranks <= 5).float().mean()),
        r10=float((ranks <= 10).float().mean()),
        median_rank=float(ranks.median()),
        candidates=int(similarity.shape[0]),
    )


@torch.no_grad()
def encode_texts(model: ToyClip, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    tokenizer = toy_tokenizer()
    parts = [
        model.encode_text(tokenizer(list(texts[i : i + batch_size])), normalize=True)
        for i in range(0, len(texts), batch_size)
    ]
    return torch.cat(parts)


@torch.no_grad()
def encode_images(model: ToyClip, images: np.ndarray, batch_size: int = 256) -> torch.Tensor:
    """uint8 NxHxWx3 frames at any square size -> normalized embeddings (resized like open_clip does)."""
    size = (
        model.visual.image_size[0] if isinstance(model.visual.image_size, tuple) else model.visual.image_size
    )
    parts = []
    for i in range(0, len(images), batch_size):
        x = normalize_images(images[i : i + batch_size])
        if x.shape[-1] != size:
            x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
        parts.append(model.encode_image(x, normalize=True))
    return torch.cat(parts)


def eval_images(model: ToyClip, n: int = IMAGE_CANDIDATES, seed: int = EVAL_SEED) -> RetrievalScores:
    rng = np.random.default_rng(seed)
    scenes = sample_distinct_scenes(rng, "A", n, split="test")
    images = np.stack([render_image(s, rng, 64) for s in scenes])
    texts = [caption(s, rng) for s in scenes]
    return retrieval_scores(encode_texts(model, texts) @ encode_images(model, images).T)


def sample_frames_1fps(path: Path, max_frames: int = 12) -> np.ndarray:
    """Frames nearest to t = 0.5 s, 1.5 s, ... (1 fps), at most ``max_frames`` spread evenly over them."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(float(f.time or 0.0), f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    duration = frames[-1][0] + 1.0 / float(stream.average_rate or 1)
    targets = np.arange(0.5, duration, 1.0)
    if len(targets) > max_frames:
        targets = targets[np.linspace(0, len(targets) - 1, max_frames).round().astype(int)]
    times = np.array([t for t, _ in frames])
    return np.stack([frames[int(np.abs(times - t).argmin())][1] for t in targets])


def eval_videos(
    model: ToyClip, n: int = VIDEO_CANDIDATES, seed: int = EVAL_SEED, domain: str = "B"
) -> RetrievalScores:
    with tempfile.TemporaryDirectory(prefix="videoseek-toy-eval-") as tmp:
        manifest = generate_videos(Path(tmp), n, seed, domain=domain, split="test")
        records = [json.loads(line) for line in manifest.read_text().splitlines()]
        pooled = []
        for record in records:
            frames = encode_images(model, sample_frames_1fps(manifest.parent / record["video"]))
            pooled.append(F.normalize(frames.mean(dim=0), dim=-1))
    texts = [r["caption"] for r in records]
    return retrieval_scores(encode_texts(model, texts) @ torch.stack(pooled).T)

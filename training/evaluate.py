"""Embed a dataset once and score it with both poolings: mean (what an ANN index serves) and text-conditioned.

Each distinct clip is encoded once, however many captions it has; features stay on the CPU in float32.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from training.batching import Normalizer, encode_frames, encode_texts, load_frames
from training.data import ClipDataset
from training.frame_cache import FrameCache
from training.metrics import retrieval_metrics
from training.similarity import chunked_scores
from videoseek.clip import LoadedClip
from videoseek.pooling_defaults import POOLING_TAU

POOLINGS = ("mean", "text_conditioned")


@dataclass
class Embeddings:
    """text [T, D], frames [V, F, D], mask [V, F]; caption i belongs to clip ``text_to_video[i]``; ``queries``:
    the captions asked (None: all; gallery-only clips' are not)."""

    text: torch.Tensor
    frames: torch.Tensor
    mask: torch.Tensor
    text_to_video: list[int]
    queries: list[int] | None = None


def autocast_for(device: torch.device, enabled: bool) -> Any:
    """bf16 autocast on CUDA when enabled; a no-op elsewhere (CPU autocast is slower than fp32 on most CPUs)."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@torch.no_grad()
def embed_dataset(
    clip: LoadedClip,
    dataset: ClipDataset,
    cache: FrameCache,
    *,
    context_length: int = 32,
    batch_size: int = 32,
    amp: bool = True,
) -> Embeddings:
    model, device = clip.model, clip.device
    was_training = model.training
    model.eval()
    normalizer = Normalizer.for_model(model).to(device)
    clips, owner = dataset.clips()
    captions = [r.caption for r in dataset.records]
    frames, masks, texts = [], [], []
    with autocast_for(device, amp):
        for i in tqdm(range(0, len(clips), batch_size), desc="embedding clips", leave=False, disable=None):
            batch = load_frames(cache, clips[i : i + batch_size]).to(device)
            frames.append(encode_frames(model, normalizer, batch).float().cpu())
            masks.append(batch.mask.cpu())
        for i in range(0, len(captions), batch_size * 4):
            tokens = clip.tokenize(captions[i : i + batch_size * 4], context_length)
            texts.append(encode_texts(model, tokens).float().cpu())
    model.train(was_training)
    asked = dataset.query_rows()
    queries = None if len(asked) == len(captions) else asked
    return Embeddings(torch.cat(texts), torch.cat(frames), torch.cat(masks), owner, queries)


def score_embeddings(
    emb: Embeddings, logit_scale: float, tau: float = POOLING_TAU, poolings: tuple[str, ...] = POOLINGS
) -> dict[str, dict[str, dict[str, float]]]:
    """``{pooling: {"t2v": {...}, "v2t": {...}}}`` for each pooling."""
    out = {}
    for pooling in poolings:
        sim = chunked_scores(emb.text, emb.frames, emb.mask, logit_scale, pooling, tau)  # type: ignore[arg-type]
        out[pooling] = retrieval_metrics(sim.numpy(), emb.text_to_video, emb.queries)
    return out


def evaluate(
    clip: LoadedClip,
    dataset: ClipDataset,
    cache: FrameCache,
    *,
    context_length: int = 32,
    tau: float = POOLING_TAU,
    batch_size: int = 32,
    amp: bool = True,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of ``clip`` (adapted or not) on ``dataset`` with both poolings."""
    emb = embed_dataset(clip, dataset, cache, context_length=context_length, batch_size=batch_size, amp=amp)
    return score_embeddings(emb, clip.logit_scale, tau)

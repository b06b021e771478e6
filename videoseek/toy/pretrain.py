"""Contrastive pre-training of the toy CLIP on domain A images generated in memory.

Reproducible by construction: a fixed number of steps (not a time budget) decides the schedule, every random
draw comes from ``seed``, and torch runs with a fixed thread count. ``deadline_minutes`` only guards against a
slow machine: a run that hits it stops early, saves what it has and says so (that checkpoint is then not the
reproducible one).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.pos_embed import get_2d_sincos_pos_embed
from safetensors.torch import save_file

from videoseek.toy.captions import caption_a
from videoseek.toy.model import (
    CHECKPOINT_INFO_KEY,
    TOY_MODEL_NAME,
    ToyClip,
    create_toy_model,
    toy_model_config,
    toy_tokenizer,
)
from videoseek.toy.render import B_FRAME_NOISE_STD, render_image
from videoseek.toy.scene import TEXTURES, Scene, all_domain_a_scenes, domain_a_neighbours


@dataclass(frozen=True)
class PretrainConfig:
    """The recipe; the committed checkpoint was made with the defaults."""

    steps: int = 600
    batch_size: int = 128
    lr: float = 1e-3
    warmup_steps: int = 60
    weight_decay: float = 0.1
    # Share of each batch that are one-fact neighbours of other items (hard negatives): random batches
    # almost never hold two scenes that differ only in position or shape, so those facts would be learnt last.
    hard_negative_fraction: float = 0.5
    # Share of images drawn with domain B's look (a striped, checkered or grainy background, clutter, sensor
    # noise) and the texture named in the caption: a richer domain A, closer to a web-scale CLIP that has seen
    # such backgrounds before a collection's videos arrive. 0 draws nothing extra, so the committed checkpoint's
    # recipe is unchanged.
    textured_fraction: float = 0.0
    seed: int = 0
    # One thread: the run is then the same on any machine with the same kernels, however many cores it has
    # (float reductions depend on the thread count), and it is not slowed by other processes' threads.
    threads: int = 1

    def __post_init__(self) -> None:
        bad_fraction = (
            not 0.0 <= self.hard_negative_fraction <= 0.5 or not 0.0 <= self.textured_fraction <= 1.0
        )
        if self.steps < 1 or self.batch_size < 2 or self.warmup_steps < 0 or self.threads < 1 or bad_fraction:
            raise ValueError(
                f"invalid pre-training config {self}: steps>=1, batch_size>=2, threads>=1, hard_negative_fraction in [0, 0.5], "
                "textured_fraction in [0, 1] needed"
            )


@dataclass(frozen=True)
class PretrainResult:
    checkpoint: Path
    steps_done: int
    seconds: float
    final_loss: float
    truncated: bool


def normalize_images(images: np.ndarray) -> torch.Tensor:
    """uint8 NxHxWx3 -> float NCHW normalized the way open_clip's preprocess does for this model."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_DATASET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


class DomainABatches:
    """Endless batches of (images, tokens) from domain A's train split; no scene twice within a batch, so no
    caption in a batch also describes another image of it. A ``hard_negative_fraction`` of each batch are
    one-fact neighbours of the other items; a ``textured_fraction`` of the images have domain B's look (the
    texture is then in the caption too)."""

    def __init__(
        self,
        seed: int,
        batch_size: int,
        image_size: int,
        hard_negative_fraction: float = 0.0,
        textured_fraction: float = 0.0,
    ) -> None:
        self._scenes: list[Scene] = [s for s in all_domain_a_scenes() if s.split == "train"]
        self._train_keys = {s.key for s in self._scenes}
        self._hard_negatives = int(batch_size * hard_negative_fraction)
        self._textured_fraction = textured_fraction
        if batch_size > len(self._scenes):
            raise ValueError(
                f"batch_size {batch_size} exceeds the {len(self._scenes)} distinct training scenes"
            )
        self._rng = np.random.default_rng(seed)
        self._batch_size = batch_size
        self._image_size = image_size
        self._tokenizer = toy_tokenizer()
        self._token_cache: dict[str, torch.Tensor] = {}

    def _tokens(self, text: str) -> torch.Tensor:
        if text not in self._token_cache:
            self._token_cache[text] = self._tokenizer([text])[0]
        return self._token_cache[text]

    def sample_scenes(self) -> list[Scene]:
        picks = self._rng.choice(
            len(self._scenes), size=self._batch_size - self._hard_negatives, replace=False
        )
        batch = [self._scenes[int(index)] for index in picks]
        keys = {s.key for s in batch}
        for anchor in batch[: self._hard_negatives]:
            options = [
                n for n in domain_a_neighbours(anchor) if n.key in self._train_keys and n.key not in keys
            ]
            chosen = options[int(self._rng.integers(len(options)))] if options else None
            while chosen is None or chosen.key in keys:
                # A random scene stands in when every neighbour is held out or already taken.
                chosen = self._scenes[int(self._rng.integers(len(self._scenes)))]
            batch.append(chosen)
            keys.add(chosen.key)
        if self._textured_fraction > 0:  # no draws otherwise: the plain recipe's stream stays as it was
            batch = [self._with_texture(scene) for scene in batch]
        return batch

    def _with_texture(self, scene: Scene) -> Scene:
        """``scene``, or with ``textured_fraction`` probability the same scene on a textured background (scenes
        of a batch stay distinct: their plain keys were)."""
        if self._rng.random() >= self._textured_fraction:
            return scene
        texture = str(self._rng.choice([t for t in TEXTURES if t != "plain"]))
        return replace(scene, texture=texture)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, tokens = [], []
        for scene in self.sample_scenes():
            image = render_image(scene, self._rng, self._image_size)
            if scene.texture != "plain":  # B's sensor noise goes with B's look
                noise = self._rng.normal(0.0, B_FRAME_NOISE_STD, size=image.shape)
                image = np.clip(image + noise, 0, 255).astype(np.uint8)
            images.append(image)
            tokens.append(self._tokens(caption_a(scene, self._rng)))
        return normalize_images(np.stack(images)), torch.stack(tokens)


def _lr_at(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _optimizer(model: ToyClip, cfg: PretrainConfig) -> torch.optim.Optimizer:
    # open_clip's rule: no weight decay on gains, biases and the temperature.
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exempt = param.ndim < 2 or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def init_for_pretraining(model: ToyClip) -> None:
    """Start values that make a small CLIP learn its toy world within minutes (architecture unchanged)."""
    with torch.no_grad():
        # open_clip starts learnable position embeddings as small noise, far weaker than patch content, and
        # the model then takes thousands of steps to learn where things are (it matched captions on colour,
        # shape and size and ignored position words). Starting from the fixed 2D sin-cos table makes position
        # readable from the first step; the table stays trainable.
        visual = model.visual
        table = get_2d_sincos_pos_embed(
            visual.positional_embedding.shape[1], visual.grid_size[0], cls_token=True
        )
        visual.positional_embedding.copy_(torch.from_numpy(table).float())
        # A warmer start than CLIP's 1/0.07 for a model this small.
        model.logit_scale.fill_(math.log(10.0))


def contrastive_loss(model: ToyClip, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE over the batch, CLIP's loss."""
    image_features = model.encode_image(images, normalize=True)
    text_features = model.encode_text(tokens, normalize=True)
    logits = model.logit_scale.exp() * image_features @ text_features.T
    labels = torch.arange(len(images))
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def save_checkpoint(model: ToyClip, path: Path, info: dict[str, Any]) -> None:
    """fp16 safetensors of the full state dict (open_clip upcasts on load); written atomically.

    ``info`` is stored as ONE sorted-JSON metadata entry: safetensors writes several entries in a random
    order, which would make identical weights give different bytes.
    """
    state = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(state, str(tmp), metadata={CHECKPOINT_INFO_KEY: json.dumps(info, sort_keys=True)})
    tmp.chmod(0o644)  # a package data file, readable by whoever installs it
    tmp.replace(path)


def pretrain(
    out: Path,
    cfg: PretrainConfig = PretrainConfig(),
    deadline_minutes: float | None = None,
    log: Callable[[str], None] = print,
) -> PretrainResult:
    """Train the toy CLIP from random weights on domain A and save it to ``out``."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    model = create_toy_model(pretrained=False)
    model.train()
    init_for_pretraining(model)
    image_size = toy_model_config()["vision_cfg"]["image_size"]
    batches = DomainABatches(
        cfg.seed, cfg.batch_size, image_size, cfg.hard_negative_fraction, cfg.textured_fraction
    )
    optimizer = _optimizer(model, cfg)
    start = time.monotonic()
    loss_value, step, truncated = float("nan"), 0, False
    for step in range(cfg.steps):
        if deadline_minutes is not None and time.monotonic() - start > deadline_minutes * 60:
            truncated = True
            log(f"deadline of {deadline_minutes} min reached after {step} of {cfg.steps} steps; saving early")
            break
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg)
        images, tokens = batches.next()
        loss = contrastive_loss(model, images, tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        loss_value = float(loss.detach())
        if step % 50 == 0 or step == cfg.steps - 1:
            log(
                f"step {step:5d} loss {loss_value:.4f} scale {model.logit_scale.exp().item():.1f} "
                f"t {time.monotonic() - start:6.1f}s"
            )
    else:
        step = cfg.steps
    seconds = time.monotonic() - start
    info = {"model": TOY_MODEL_NAME, "recipe": asdict(cfg), "steps_done": step, "truncated": truncated}
    save_checkpoint(model, out, info)
    return PretrainResult(out, step, seconds, loss_value, truncated)

"""Datasets on disk: domain A still images or domain A/B videos, plus a ``captions.jsonl`` manifest.

Manifest lines are ``{"video" | "image": <path relative to the manifest's folder>, "caption": ..., "split",
"key", "scene": {...}, ...}``; the training package reads the same format for real data. Scenes within one
call are pairwise distinct (each caption matches exactly one item) and everything is a function of ``seed``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from videoseek.toy.captions import B_KNOWN_WORD_RATE, caption
from videoseek.toy.render import plan_video, render_image, render_video
from videoseek.toy.scene import Domain, Scene, Split, sample_distinct_scenes
from videoseek.toy.video_writer import resolve_codec, write_video

MANIFEST_NAME = "captions.jsonl"
DEFAULT_VIDEO_SIZE = 128
DEFAULT_FPS = 8
DEFAULT_DURATIONS_S: tuple[int, ...] = (4, 5, 6)


def _item_rng(seed: int, index: int) -> np.random.Generator:
    # One stream per item, so an item does not change when n changes.
    return np.random.default_rng([seed, index])


def _check_common(n: int, domain: str) -> Domain:
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if domain not in ("A", "B"):
        raise ValueError(f"domain must be 'A' or 'B', got {domain!r}")
    return domain  # type: ignore[return-value]


def _write_manifest(out_dir: Path, records: list[dict[str, Any]]) -> Path:
    path = out_dir / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
    tmp.replace(path)
    return path


def _scene_fields(scene: Scene) -> dict[str, Any]:
    return {"scene": scene.to_dict(), "key": scene.key, "split": scene.split, "domain": scene.domain}


def generate_images(
    out_dir: Path,
    n: int,
    seed: int,
    *,
    split: Split | None = None,
    size: int = 64,
    captions_per_item: int = 1,
) -> Path:
    """``n`` domain A still images (PNG) under ``out_dir/images``; returns the manifest path."""
    _check_common(n, "A")
    scenes = sample_distinct_scenes(np.random.default_rng(seed), "A", n, split)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for index, scene in enumerate(scenes):
        rng = _item_rng(seed, index)
        relative = f"images/{index:05d}.png"
        Image.fromarray(render_image(scene, rng, size)).save(out_dir / relative)
        for _ in range(captions_per_item):
            records.append({"image": relative, "caption": caption(scene, rng), **_scene_fields(scene)})
    return _write_manifest(out_dir, records)


def generate_videos(
    out_dir: Path,
    n: int,
    seed: int,
    domain: str = "B",
    codec: str = "h264",
    container: str | None = None,
    *,
    split: Split | None = None,
    size: int = DEFAULT_VIDEO_SIZE,
    fps: int = DEFAULT_FPS,
    durations_s: Sequence[int] = DEFAULT_DURATIONS_S,
    captions_per_item: int = 1,
    known_word_rate: float = B_KNOWN_WORD_RATE,
) -> Path:
    """``n`` encoded videos under ``out_dir/videos``; returns the manifest path.

    Domain B is the adaptation domain (events, textures, noise, B's vocabulary); domain A gives still scenes
    as videos in the pre-training vocabulary (the toy CLIP retrieves those well without an adapter).
    ``container`` defaults to the codec's usual one (mp4 for h264). ``split`` restricts scenes to one side of
    the deterministic train/test split; ``captions_per_item`` > 1 writes several paraphrases per video.
    ``known_word_rate`` is how often a B caption names a concept with the pre-training word (1.0: always); the
    videos do not depend on it (each is rendered before its captions are drawn).
    """
    scene_domain = _check_common(n, domain)
    _, container = resolve_codec(codec, container)
    if captions_per_item < 1:
        raise ValueError("captions_per_item must be at least 1")
    scenes = sample_distinct_scenes(np.random.default_rng(seed), scene_domain, n, split)
    records = []
    for index, scene in enumerate(scenes):
        rng = _item_rng(seed, index)
        duration = int(durations_s[int(rng.integers(len(durations_s)))])
        plan = plan_video(scene, rng, size, fps, duration)
        relative = f"videos/{index:05d}.{container}"
        write_video(out_dir / relative, render_video(plan, rng), fps, codec, container)
        for _ in range(captions_per_item):
            records.append(
                {
                    "video": relative,
                    "caption": caption(scene, rng, known_word_rate),
                    "duration_s": float(duration),
                    "fps": fps,
                    "n_frames": plan.n_frames,
                    "size": size,
                    **_scene_fields(scene),
                }
            )
    return _write_manifest(out_dir, records)

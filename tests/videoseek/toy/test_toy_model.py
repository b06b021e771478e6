"""The toy CLIP: its config registers with open_clip, and the committed checkpoint loads and retrieves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F  # noqa: N812 - the usual torch spelling

from videoseek.toy.captions import caption
from videoseek.toy.evaluate import encode_images, encode_texts, retrieval_scores, sample_frames_1fps
from videoseek.toy.generate import generate_videos
from videoseek.toy.model import (
    TOY_MODEL_NAME,
    checkpoint_info,
    register_toy_model_config,
    toy_checkpoint_path,
    toy_model_config,
)
from videoseek.toy.render import render_image
from videoseek.toy.scene import sample_distinct_scenes

MAX_CHECKPOINT_BYTES = 20 * 1024 * 1024


@pytest.fixture(scope="module")
def toy_clip() -> torch.nn.Module:
    register_toy_model_config()
    model = open_clip.create_model(TOY_MODEL_NAME, pretrained=str(toy_checkpoint_path()))
    return model.eval()


def test_registering_the_config_twice_is_harmless() -> None:
    register_toy_model_config()
    register_toy_model_config()
    assert open_clip.list_models().count(TOY_MODEL_NAME) == 1
    assert open_clip.get_model_config(TOY_MODEL_NAME) == toy_model_config()


def test_towers_have_equal_depth_for_the_cross_modal_adapter() -> None:
    config = toy_model_config()
    assert config["vision_cfg"]["layers"] == config["text_cfg"]["layers"]


def test_committed_checkpoint_is_small_and_half_precision() -> None:
    from safetensors import safe_open

    path = toy_checkpoint_path()
    assert path.is_file(), "run `videoseek toy pretrain` to rebuild the committed checkpoint"
    assert path.stat().st_size <= MAX_CHECKPOINT_BYTES
    with safe_open(str(path), framework="pt") as f:
        assert checkpoint_info(path)["model"] == TOY_MODEL_NAME
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}  # noqa: SIM118 - safe_open is not a dict
    assert dtypes == {"F16"}


def test_checkpoint_loads_every_tensor_through_open_clip(toy_clip: torch.nn.Module) -> None:
    from safetensors.torch import load_file

    stored = load_file(str(toy_checkpoint_path()))
    state = toy_clip.state_dict()
    assert set(stored) == set(state)
    for name, tensor in stored.items():
        assert torch.equal(state[name], tensor.float()), name


def test_checkpoint_retrieves_the_right_image_for_held_out_captions(toy_clip: torch.nn.Module) -> None:
    rng = np.random.default_rng(99)
    scenes = sample_distinct_scenes(rng, "A", 10, split="test")
    images = np.stack([render_image(s, rng, 64) for s in scenes])
    texts = [caption(s, rng) for s in scenes]
    similarity = encode_texts(toy_clip, texts) @ encode_images(toy_clip, images).T
    hits = (similarity.argmax(dim=1) == torch.arange(len(scenes))).sum().item()
    assert hits >= 9, f"only {hits}/10 held-out captions found their image"


def test_random_weights_do_not_retrieve(toy_clip: torch.nn.Module) -> None:
    # Guards the test above: a model that did not learn anything must fail it.
    torch.manual_seed(0)
    random_clip = open_clip.create_model(TOY_MODEL_NAME).eval()
    rng = np.random.default_rng(99)
    scenes = sample_distinct_scenes(rng, "A", 10, split="test")
    images = np.stack([render_image(s, rng, 64) for s in scenes])
    similarity = (
        encode_texts(random_clip, [caption(s, rng) for s in scenes]) @ encode_images(random_clip, images).T
    )
    assert (similarity.argmax(dim=1) == torch.arange(10)).sum().item() <= 5


def test_toy_checkpoint_loads_through_the_core_clip_loader(toy_clip: torch.nn.Module) -> None:
    from videoseek.clip import load_clip
    from videoseek.model_spec import ModelSpec

    loaded = load_clip(ModelSpec.parse("toy"))
    text = ["a big red circle in the center on a white background"]
    ours = open_clip.get_tokenizer(TOY_MODEL_NAME)(text)
    with torch.no_grad():
        assert torch.allclose(loaded.model.encode_text(loaded.tokenize(text)), toy_clip.encode_text(ours))
    assert loaded.image_size == toy_model_config()["vision_cfg"]["image_size"]


def _video_r1(model: torch.nn.Module, tmp_path: Path, domain: str, n: int) -> float:
    manifest = generate_videos(tmp_path / domain, n, seed=5, domain=domain, split="test", durations_s=(2, 3))
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    pooled = torch.stack(
        [
            F.normalize(
                encode_images(model, sample_frames_1fps(manifest.parent / r["video"])).mean(0), dim=-1
            )
            for r in records
        ]
    )
    scores = retrieval_scores(encode_texts(model, [r["caption"] for r in records]) @ pooled.T)
    return scores.r1


def test_toy_clip_finds_domain_a_videos_but_not_domain_b_ones_zero_shot(
    toy_clip: torch.nn.Module, tmp_path: Path
) -> None:
    # Encoded files, 1 fps frames, mean pooling: what an index without an adapter does. Domain A (the
    # pre-training vocabulary, still scenes) must work; domain B is built to need an adapter.
    a_r1 = _video_r1(toy_clip, tmp_path, "A", 12)
    b_r1 = _video_r1(toy_clip, tmp_path, "B", 12)
    assert a_r1 >= 0.9
    assert b_r1 <= a_r1 - 0.4

"""Adapter files: adapter-only content, shared tensors once, content-hash versions, base model checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from adapter_kit import TEXTS, TINY_NAME, random_adapter_file, random_images
from safetensors import safe_open
from safetensors.torch import save_file

from videoseek.adapter import (
    AdaptedClip,
    AdapterBank,
    AdapterBaseMismatch,
    AdapterConfig,
    AdapterFileError,
    adapter_tensor_shapes,
    backbone_shape,
    load_adapter,
    save_adapter,
    store_adapter,
)
from videoseek.adapter.files import CONFIG_FILE, WEIGHTS_FILE
from videoseek.clip import LoadedClip, load_clip, sha256_file
from videoseek.model_spec import ModelSpec

CONFIG = AdapterConfig(rank=4, shared_dim=8)


def _trained_like(tiny_clip: LoadedClip) -> AdaptedClip:
    adapted = AdaptedClip(tiny_clip, CONFIG)
    with torch.no_grad():
        for param in adapted.parameters():
            param.normal_(0, 0.2)  # far from init, as after training
    return adapted


def test_save_load_roundtrip_gives_identical_outputs(
    tiny_clip: LoadedClip, tiny_spec: ModelSpec, tmp_path: Path
) -> None:
    adapted = _trained_like(tiny_clip)
    version = adapted.save(tmp_path / "adapter", metadata={"collection": "demo"})
    loaded = load_adapter(tmp_path / "adapter", expected_base=tiny_clip.identity)
    assert loaded.version == version and loaded.metadata == {"collection": "demo"} and loaded.config == CONFIG
    restored = AdaptedClip(load_clip(tiny_spec), loaded.config, init=loaded)
    with torch.no_grad():
        for model in (adapted, restored):
            model.model.eval()
        assert torch.equal(
            adapted.encode_text(adapted.tokenize(TEXTS)), restored.encode_text(restored.tokenize(TEXTS))
        )
        images = random_images(3)
        assert torch.equal(adapted.encode_images(images), restored.encode_images(images))


def test_file_holds_the_adapter_only_with_shared_tensors_once(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    adapted = _trained_like(tiny_clip)
    adapted.save(tmp_path / "a")
    with safe_open(str(tmp_path / "a" / WEIGHTS_FILE), framework="pt") as handle:
        keys = set(handle.keys())
        shared_keys = {k for k in keys if k.startswith("shared.")}
        assert keys == set(adapter_tensor_shapes(CONFIG, adapted.injected.shape))
        assert len(shared_keys) == 2 * 2 * 2  # (weight, bias) x 2 sites x 2 layers: once, not per tower
        assert not any("shared" in k for k in keys - shared_keys)
        shared_weight = handle.get_tensor("shared.1.attn.weight")
    assert torch.equal(shared_weight, adapted.injected.shared[(1, "attn")].weight.detach())
    clip_bytes = sum(p.numel() * 4 for p in tiny_clip.model.parameters())
    file_bytes = (tmp_path / "a" / WEIGHTS_FILE).stat().st_size
    assert file_bytes < adapted.export().nbytes + 16_384 < clip_bytes
    document = json.loads((tmp_path / "a" / CONFIG_FILE).read_text())
    assert document["base_model"]["fingerprint"] == tiny_clip.identity.fingerprint
    assert document["adapter"] == CONFIG.to_dict()


def test_file_records_the_base_models_name_tag_and_checksum(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    weights = tmp_path / "base.safetensors"  # written before an adapter is injected into tiny_clip
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(weights))
    # Random weights: the tag says so and there is no file to hash.
    _trained_like(tiny_clip).save(tmp_path / "on-random")
    recorded = json.loads((tmp_path / "on-random" / CONFIG_FILE).read_text())["base_model"]
    assert (recorded["name"], recorded["tag"], recorded["checkpoint_sha256"]) == (TINY_NAME, "random", None)

    # A checkpoint file: its sha256 is recorded, and all of it survives a load.
    base = load_clip(ModelSpec.parse(f"{TINY_NAME}:{weights}"))
    adapter = random_adapter_file(base.identity, backbone_shape(base.model), CONFIG, seed=3)
    save_adapter(adapter, tmp_path / "on-file")
    recorded = json.loads((tmp_path / "on-file" / CONFIG_FILE).read_text())["base_model"]
    assert recorded["name"] == TINY_NAME and recorded["tag"] is None
    assert recorded["checkpoint_sha256"] == sha256_file(weights)
    assert (
        recorded["architecture"] == base.identity.architecture
        and recorded["spec"] == f"{TINY_NAME}:{weights}"
    )
    loaded = load_adapter(tmp_path / "on-file", expected_base=base.identity).base
    assert (loaded.name, loaded.tag, loaded.checkpoint_sha256) == (TINY_NAME, None, sha256_file(weights))
    assert loaded.fingerprint == base.identity.fingerprint


def test_version_is_the_content_hash(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    adapter = _trained_like(tiny_clip).export()
    first = save_adapter(adapter, tmp_path / "one")
    assert save_adapter(adapter, tmp_path / "two") == first == adapter.version
    assert (tmp_path / "one" / WEIGHTS_FILE).read_bytes() == (tmp_path / "two" / WEIGHTS_FILE).read_bytes()
    tensors = dict(adapter.tensors)
    tensors["text.0.mlp.down.bias"] = tensors["text.0.mlp.down.bias"] + 1e-3
    changed = type(adapter)(config=adapter.config, base=adapter.base, shape=adapter.shape, tensors=tensors)
    assert changed.version != first
    relabelled = type(adapter)(
        config=adapter.config,
        base=adapter.base,
        shape=adapter.shape,
        tensors=adapter.tensors,
        metadata={"x": 1},
    )
    assert relabelled.version != first  # the config document is part of the hash


def test_corrupted_file_is_refused(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    save_adapter(_trained_like(tiny_clip).export(), tmp_path / "a")
    weights = bytearray((tmp_path / "a" / WEIGHTS_FILE).read_bytes())
    weights[-1] ^= 0xFF
    (tmp_path / "a" / WEIGHTS_FILE).write_bytes(bytes(weights))
    with pytest.raises(AdapterFileError, match="do not match the recorded version"):
        load_adapter(tmp_path / "a")
    with pytest.raises(AdapterFileError, match=r"adapter_config\.json is missing"):
        load_adapter(tmp_path / "absent")


def test_adapter_for_another_base_model_is_refused(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    adapter = random_adapter_file(tiny_clip.identity, backbone_shape(tiny_clip.model), CONFIG, seed=1)
    save_adapter(adapter, tmp_path / "a")
    with torch.no_grad():
        tiny_clip.model.logit_scale.add_(1.0)
    weights = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_clip.model.state_dict().items()}, str(weights))
    other = load_clip(ModelSpec.parse(f"{tiny_clip.identity.name}:{weights}"))
    with pytest.raises(AdapterBaseMismatch, match=r"trained on base model .* but this process runs"):
        load_adapter(tmp_path / "a", expected_base=other.identity)
    with pytest.raises(AdapterBaseMismatch):
        AdaptedClip(other, CONFIG, init=adapter)
    with pytest.raises(AdapterBaseMismatch):
        AdapterBank(other, max_bytes=1 << 20).add(adapter.version, adapter)


def test_store_adapter_is_content_addressed_and_idempotent(tiny_clip: LoadedClip, tmp_path: Path) -> None:
    adapter = random_adapter_file(tiny_clip.identity, backbone_shape(tiny_clip.model), CONFIG, seed=2)
    version = store_adapter(adapter, tmp_path / "adapters")
    assert store_adapter(adapter, tmp_path / "adapters") == version
    assert [p.name for p in (tmp_path / "adapters").iterdir()] == [version]
    assert load_adapter(tmp_path / "adapters" / version).version == version

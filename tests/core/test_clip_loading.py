"""Loading the frozen CLIP: every spec form, frozen and in eval mode, never touching the network."""

from __future__ import annotations

import json
import time
from pathlib import Path

import huggingface_hub.constants
import open_clip
import pytest
import torch
from safetensors.torch import save_file
from test_adapter_kit import TEXTS, TINY_CONFIG, TINY_NAME

from videoseek.core.clip import (
    LoadedClip,
    ModelLoadError,
    WeightsNotFound,
    clear_clip_cache,
    get_clip,
    load_clip,
    resolve_device,
)
from videoseek.core.model_spec import ModelSpec


def _save_weights(clip: LoadedClip, path: Path) -> Path:
    save_file({k: v.contiguous() for k, v in clip.model.state_dict().items()}, str(path))
    return path


def test_loaded_clip_is_frozen_and_in_eval_mode(tiny_clip: LoadedClip) -> None:
    assert not tiny_clip.model.training
    assert all(not m.training for m in tiny_clip.model.modules())
    assert all(not p.requires_grad for p in tiny_clip.model.parameters())
    assert not tiny_clip.model.logit_scale.requires_grad
    assert tiny_clip.embed_dim == 32 and tiny_clip.image_size == 32 and tiny_clip.context_length == 16
    assert tiny_clip.preprocess is not None and tiny_clip.device == torch.device("cpu")


def test_random_weights_are_the_same_in_every_load(tiny_spec: ModelSpec) -> None:
    first, second = load_clip(tiny_spec), load_clip(tiny_spec)
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert first.identity.fingerprint == second.identity.fingerprint
    assert first.identity.checkpoint_sha256 is None and first.identity.tag == "random"


def test_checkpoint_file_and_local_dir_load_the_same_weights_and_identity(
    tiny_clip: LoadedClip, tmp_path: Path
) -> None:
    with torch.no_grad():
        for param in tiny_clip.model.parameters():
            param.add_(0.01)  # weights that differ from the seeded random ones
    weights = _save_weights(tiny_clip, tmp_path / "tiny.safetensors")
    from_file = load_clip(ModelSpec.parse(f"{TINY_NAME}:{weights}"))
    local = tmp_path / "local"
    local.mkdir()
    (local / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG, "preprocess_cfg": {}}))
    _save_weights(tiny_clip, local / "open_clip_model.safetensors")
    from_dir = load_clip(ModelSpec.parse(f"local-dir:{local}"))

    for loaded in (from_file, from_dir):
        assert all(not p.requires_grad for p in loaded.model.parameters())
        for name, value in tiny_clip.model.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], value), name
    assert from_file.identity.checkpoint_sha256 == from_dir.identity.checkpoint_sha256 is not None
    # The fingerprint depends on architecture and weights, not on how the spec spells them.
    assert from_file.identity.fingerprint == from_dir.identity.fingerprint != tiny_clip.identity.fingerprint


def test_missing_pretrained_weights_fail_fast_naming_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_clip tried to download")

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_network)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", no_network)
    started = time.monotonic()
    with pytest.raises(WeightsNotFound) as caught:
        load_clip(ModelSpec.parse("ViT-B-32:openai"))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "ViT-B-32:openai" in message
    assert "timm/vit_base_patch32_clip_224.openai" in message and "open_clip_model.safetensors" in message
    assert str(tmp_path / ".cache" / "clip" / "ViT-B-32.pt") in message


def test_missing_checkpoint_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "clip.pt"
    with pytest.raises(WeightsNotFound, match=str(missing)):
        load_clip(ModelSpec.parse(f"ViT-B-32:{missing}"))


def test_local_dir_without_weights_fails_fast(tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CONFIG}))
    with pytest.raises(WeightsNotFound, match="no weights file"):
        load_clip(ModelSpec.parse(f"local-dir:{tmp_path}"))


def test_unknown_model_or_tag_is_a_clear_error() -> None:
    with pytest.raises(ModelLoadError, match="unknown open_clip model 'NoSuch-1'"):
        load_clip(ModelSpec.parse("NoSuch-1:random"))
    with pytest.raises(ModelLoadError, match="unknown pretrained tag 'nosuchtag' for ViT-B-32; known tags:"):
        load_clip(ModelSpec.parse("ViT-B-32:nosuchtag"))


def test_get_clip_caches_one_model_per_spec_and_device(tiny_spec: ModelSpec) -> None:
    clear_clip_cache()
    try:
        assert get_clip(tiny_spec, "cpu") is get_clip(tiny_spec, "cpu")
        assert get_clip(tiny_spec, "auto" if not torch.cuda.is_available() else "cpu") is get_clip(tiny_spec)
    finally:
        clear_clip_cache()


def test_resolve_device_rejects_unknown_names() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_texts_cut_short_equal_a_model_with_that_context_length(tiny_clip: LoadedClip) -> None:
    short = 8
    truncated = open_clip.create_model(TINY_NAME, force_context_length=short)
    state = dict(tiny_clip.model.state_dict())
    state["positional_embedding"] = state["positional_embedding"][:short]
    truncated.load_state_dict(state)
    truncated.eval()
    tokens = tiny_clip.tokenize(TEXTS, context_length=short)
    assert tokens.shape == (len(TEXTS), tiny_clip.context_length) and not tokens[:, short:].any()
    with torch.no_grad():
        padded = tiny_clip.model.encode_text(tokens)
        reference = truncated.encode_text(open_clip.get_tokenizer(TINY_NAME)(TEXTS, context_length=short))
    torch.testing.assert_close(padded, reference, rtol=0, atol=1e-5)


def test_text_forward_runs_only_the_positions_texts_use_with_the_same_features_and_gradients(
    tiny_clip: LoadedClip,
) -> None:
    texts = [*TEXTS, "a"]  # lengths differ: the batch runs up to its longest end-of-text token
    tokens = tiny_clip.tokenize(texts, context_length=12)
    longest = int(tokens.argmax(dim=-1).max()) + 1
    assert longest < tiny_clip.context_length
    seen: list[int] = []
    hook = tiny_clip.model.transformer.register_forward_hook(
        lambda _m, args, _o: seen.append(args[0].shape[1])
    )
    tiny_clip.model.requires_grad_(True)  # full fine-tuning trains the position table and token embeddings
    try:
        full = tiny_clip.model.encode_text(tokens)
        short = tiny_clip.encode_text(tokens)
        torch.testing.assert_close(short, full, rtol=0, atol=1e-5)
        tables = (tiny_clip.model.positional_embedding, tiny_clip.model.token_embedding.weight)
        full_grads = torch.autograd.grad(full.square().sum(), tables)
        short_grads = torch.autograd.grad(short.square().sum(), tables)
    finally:
        hook.remove()
        tiny_clip.model.requires_grad_(False)
    assert seen == [tiny_clip.context_length, longest]
    for expected, got in zip(full_grads, short_grads, strict=True):  # float32 sums in another order
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))
    assert not short_grads[0][longest:].any()  # rows past the last end-of-text token never mattered


def test_toy_spec_loads_through_the_checkpoint_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toy = pytest.importorskip("videoseek.toy.model")
    toy.register_toy_model_config()
    checkpoint = Path(toy.toy_checkpoint_path())
    if not checkpoint.is_file():  # not committed yet: any weights of the toy architecture will do
        checkpoint = tmp_path / "toy.safetensors"
        save_file(open_clip.create_model(toy.TOY_MODEL_NAME).state_dict(), str(checkpoint))
        monkeypatch.setattr(toy, "toy_checkpoint_path", lambda: checkpoint)
    loaded = load_clip(ModelSpec.parse("toy"))
    same_file = load_clip(ModelSpec.parse(f"{toy.TOY_MODEL_NAME}:{checkpoint}"))
    assert loaded.identity.name == toy.TOY_MODEL_NAME and loaded.identity.checkpoint_sha256
    assert loaded.identity.fingerprint == same_file.identity.fingerprint
    assert all(not p.requires_grad for p in loaded.model.parameters()) and not loaded.model.training


def test_missing_toy_checkpoint_says_how_to_rebuild_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    toy = pytest.importorskip("videoseek.toy.model")
    monkeypatch.setattr(toy, "toy_checkpoint_path", lambda: tmp_path / "absent.safetensors")
    with pytest.raises(WeightsNotFound, match="videoseek toy pretrain"):
        load_clip(ModelSpec.parse("toy"))

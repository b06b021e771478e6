"""Loading the frozen CLIP: every spec form, frozen and in eval mode, never touching the network."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import huggingface_hub.constants
import open_clip
import pytest
import torch
from adapter_kit import TEXTS, TINY_CONFIG, TINY_NAME
from safetensors.torch import save_file

from videoseek.clip import (
    LoadedClip,
    ModelLoadError,
    WeightsNotFound,
    clear_clip_cache,
    get_clip,
    load_clip,
    resolve_device,
    sha256_file,
)
from videoseek.model_spec import ModelSpec


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
    _shifted(tiny_clip)
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


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Empty caches under ``tmp_path`` (HF hub cache, ``~/.cache/clip``) and any download an error."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path))

    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("load_clip tried to download")

    monkeypatch.setattr(open_clip.pretrained, "hf_hub_download", no_network)
    monkeypatch.setattr(open_clip.pretrained, "download_pretrained_from_url", no_network)
    return tmp_path


def _register_tag(monkeypatch: pytest.MonkeyPatch, tag: str, **cfg: object) -> None:
    """A pretrained tag for the tiny model, as open_clip's registry holds its own (there is no public API)."""
    tags = dict(open_clip.pretrained._PRETRAINED.get(TINY_NAME, {}))
    tags[tag] = open_clip.pretrained._pcfg(**cfg)
    monkeypatch.setitem(open_clip.pretrained._PRETRAINED, TINY_NAME, tags)


def _shifted(clip: LoadedClip) -> LoadedClip:
    with torch.no_grad():
        for param in clip.model.parameters():
            param.add_(0.01)  # weights that differ from the seeded random ones
    return clip


def _assert_same_weights(loaded: LoadedClip, expected: LoadedClip) -> None:
    state = loaded.model.state_dict()
    for name, value in expected.model.state_dict().items():
        assert torch.equal(state[name], value), name


def test_missing_pretrained_weights_fail_fast_naming_the_file(offline: Path) -> None:
    started = time.monotonic()
    with pytest.raises(WeightsNotFound) as caught:
        load_clip(ModelSpec.parse("ViT-B-32:openai"))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "ViT-B-32:openai" in message
    assert "timm/vit_base_patch32_clip_224.openai" in message and "open_clip_model.safetensors" in message
    assert (
        str(offline / ".cache" / "clip" / "ViT-B-32.pt") in message
    )  # OpenAI's archive: loadable, see below
    # OpenAI's weights need QuickGELU, which the plain ViT-B-32 config lacks: the advice names the twin that has it.
    assert "VIDEOSEEK_MODEL=ViT-B-32-quickgelu:/path/to/weights" in message
    assert "VIDEOSEEK_MODEL=ViT-B-32:" not in message
    assert open_clip.get_model_config("ViT-B-32-quickgelu")["quick_gelu"] is True
    # The three ways to weights: download them, copy a file by hand, or try the toy model.
    assert "VIDEOSEEK_MODEL_DOWNLOAD=never" in message and "videoseek models pull ViT-B-32:openai" in message
    assert str(offline / "hf" / "models--timm--vit_base_patch32_clip_224.openai") in message
    assert "VIDEOSEEK_MODEL=toy" in message


def test_auto_download_obeys_huggingface_offline_mode_and_says_what_to_do(offline: Path) -> None:
    with pytest.raises(WeightsNotFound) as caught:
        load_clip(ModelSpec.parse("ViT-B-32:openai"), download="auto")
    message = str(caught.value)
    assert "HF_HUB_OFFLINE is set" in message and "videoseek models pull ViT-B-32:openai" in message
    assert "VIDEOSEEK_MODEL=toy" in message


def test_pretrained_tag_loads_from_the_local_hugging_face_cache_without_network(
    offline: Path, monkeypatch: pytest.MonkeyPatch, tiny_clip: LoadedClip
) -> None:
    _register_tag(monkeypatch, "localhub", hf_hub="videoseek-test/tiny-clip/", quick_gelu=True)
    snapshot = offline / "hf" / "models--videoseek-test--tiny-clip" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    weights = _save_weights(_shifted(tiny_clip), snapshot / "open_clip_model.safetensors")

    loaded = load_clip(ModelSpec.parse(f"{TINY_NAME}:localhub"))
    _assert_same_weights(loaded, tiny_clip)
    assert loaded.identity.name == TINY_NAME and loaded.identity.tag == "localhub"
    assert loaded.identity.checkpoint_sha256 == sha256_file(weights)
    assert loaded.identity.architecture["quick_gelu"] is True


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # building a TorchScript archive to test with
def test_openai_torchscript_archive_in_the_clip_cache_loads_its_weights(
    offline: Path, monkeypatch: pytest.MonkeyPatch, tiny_clip: LoadedClip
) -> None:
    # OpenAI's files are TorchScript archives with a few non-weight entries; torch.load(weights_only=True),
    # which open_clip uses, refuses them.
    _register_tag(
        monkeypatch, "openaistyle", url="https://example.invalid/clip/tiny-openai.pt", quick_gelu=True
    )
    scripted = _shifted(tiny_clip).model
    scripted.register_buffer("input_resolution", torch.tensor(tiny_clip.image_size))
    archive = offline / ".cache" / "clip" / "tiny-openai.pt"
    archive.parent.mkdir(parents=True)
    torch.jit.save(torch.jit.script(scripted), str(archive))
    del scripted.input_resolution
    with pytest.raises(RuntimeError, match="TorchScript"), pytest.warns(UserWarning):
        torch.load(archive, map_location="cpu", weights_only=True)

    by_tag = load_clip(ModelSpec.parse(f"{TINY_NAME}:openaistyle"))
    by_path = load_clip(ModelSpec.parse(f"{TINY_NAME}:{archive}"))
    for loaded in (by_tag, by_path):
        _assert_same_weights(loaded, tiny_clip)
        assert loaded.identity.checkpoint_sha256 == sha256_file(archive)
    assert by_tag.identity.fingerprint == by_path.identity.fingerprint


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # building a TorchScript archive to test with
def test_torchscript_archive_for_a_gelu_architecture_is_refused_naming_the_quickgelu_spec(
    tmp_path: Path,
) -> None:
    archive = tmp_path / "ViT-B-32.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(archive))  # refused before it is read
    with pytest.raises(ModelLoadError, match=r"QuickGELU") as caught:
        load_clip(ModelSpec.parse(f"ViT-B-32:{archive}"))
    assert f"VIDEOSEEK_MODEL=ViT-B-32-quickgelu:{archive}" in str(caught.value)


def test_random_weights_are_announced_loudly(tiny_spec: ModelSpec, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="videoseek.clip"):
        load_clip(tiny_spec)
    loud = [r for r in caplog.records if r.name == "videoseek.clip" and r.levelno >= logging.WARNING]
    assert loud and "RANDOM weights" in loud[0].getMessage() and str(tiny_spec) in loud[0].getMessage()


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

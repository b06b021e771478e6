"""The adapter itself: the paper's parameter counts, placement, sharing, init and what training may change."""

from __future__ import annotations

import open_clip
import pytest
import torch
from adapter_kit import TEXTS, TINY_DEEP_NAME, random_images
from open_clip.transformer import ResidualAttentionBlock
from torch import nn

from videoseek.adapter import (
    PAPER_SETTINGS,
    AdaptedClip,
    AdapterConfig,
    AdapterConfigError,
    AlreadyAdapted,
    BackboneShape,
    CrossModalAdapter,
    SharedUpProjection,
    adapter_parameters,
    backbone_shape,
    count_parameters,
    inject_adapters,
    quick_gelu,
)
from videoseek.adapter.config import SITES, TOWERS
from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec

# The reference page's exact numbers for ViT-B/32: (r, d_s) -> (trainable, shared).
PAPER_COUNTS = {
    (8, 16): (519_168, 3_456),
    (8, 8): (520_896, None),
    (16, 64): (988_416, None),
    (16, 512): (805_632, None),
    (16, 16): (1_008_000, None),
}


@pytest.fixture(scope="module")
def vit_b32() -> LoadedClip:
    """ViT-B-32 with random weights, built once for this module (a few seconds on CPU)."""
    return load_clip(ModelSpec.parse("ViT-B-32:random"))


def _count_modules_only(shape: BackboneShape, config: AdapterConfig) -> tuple[int, int]:
    """Count by building the adapter modules alone (independent of the formula in count_parameters)."""
    shared = {
        (layer, site): SharedUpProjection(config.rank, config.shared_dim)
        for layer in range(12)
        for site in SITES
    }
    modules: list[nn.Module] = list(shared.values())
    for tower in TOWERS:
        for layer in range(shape.tower(tower).layers):
            for site in SITES:
                modules.append(
                    CrossModalAdapter(shape.tower(tower).width, config.rank, shared[(layer, site)])
                )
    unique = {id(p): p for m in modules for p in m.parameters()}
    shared_ids = {id(p) for m in shared.values() for p in m.parameters()}
    return sum(p.numel() for p in unique.values()), sum(unique[i].numel() for i in shared_ids)


def test_vit_b32_trainable_counts_equal_the_paper() -> None:
    shape = BackboneShape.from_open_clip_config(open_clip.get_model_config("ViT-B-32"))
    for (rank, shared_dim), (trainable, shared) in PAPER_COUNTS.items():
        config = AdapterConfig(rank=rank, shared_dim=shared_dim)
        counted = count_parameters(config, shape)
        assert counted.trainable == trainable, (rank, shared_dim)
        assert _count_modules_only(shape, config)[0] == trainable, (rank, shared_dim)
        if shared is not None:
            assert counted.shared == shared == _count_modules_only(shape, config)[1]
    assert {PAPER_SETTINGS[k] for k in PAPER_SETTINGS} == set(PAPER_COUNTS)


def test_injected_vit_b32_adapter_has_the_paper_count_and_init(vit_b32: LoadedClip) -> None:
    injected = inject_adapters(vit_b32.model, AdapterConfig(rank=8, shared_dim=16))
    params = adapter_parameters(vit_b32.model)
    assert len({id(p) for p in params}) == len(params)  # shared tensors listed once
    assert sum(p.numel() for p in params) == 519_168
    assert sum(p.numel() for s in injected.shared.values() for p in s.trainable_tensors().values()) == 3_456
    clip_params = sum(p.numel() for p in vit_b32.model.parameters()) - 519_168
    assert round(100 * 519_168 / clip_params, 2) == 0.34  # "0.52M is 0.34% of CLIP"
    weights = torch.cat(
        [p.detach().flatten() for n, p in injected.named_tensors().items() if n.endswith("weight")]
    )
    biases = [p for n, p in injected.named_tensors().items() if n.endswith("bias")]
    assert abs(weights.std().item() - 0.01) < 0.0005 and abs(weights.mean().item()) < 0.0005
    assert all(not b.any() for b in biases)


def test_unequal_tower_depths_are_refused_with_the_reason() -> None:
    shape = BackboneShape.from_open_clip_config(open_clip.get_model_config("ViT-L-14"))
    with pytest.raises(AdapterConfigError, match="24 vision and 12 text layers"):
        AdapterConfig().check_backbone(shape)
    AdapterConfig(share=False).check_backbone(shape)  # no sharing: nothing pairs layers


@pytest.mark.usefixtures("tiny_spec")
def test_unequal_depth_model_refuses_injection() -> None:
    deep = load_clip(ModelSpec.parse(f"{TINY_DEEP_NAME}:random"))
    with pytest.raises(AdapterConfigError, match="3 vision and 2 text layers"):
        inject_adapters(deep.model, AdapterConfig(rank=4, shared_dim=8))


def test_shared_dim_wider_than_a_tower_is_refused() -> None:
    shape = BackboneShape.from_open_clip_config(open_clip.get_model_config("ViT-B-32"))
    with pytest.raises(AdapterConfigError, match="shared_dim 513 is larger than a tower width"):
        AdapterConfig(rank=16, shared_dim=513).check_backbone(shape)
    assert count_parameters(AdapterConfig(rank=16, shared_dim=512), shape).trainable == 805_632


@pytest.mark.parametrize("bad", [{"rank": 0}, {"shared_dim": -1}, {"towers": "audio"}, {"init_std": 0.0}])
def test_invalid_config_values_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(AdapterConfigError):
        AdapterConfig(**bad)  # type: ignore[arg-type]


def test_shared_tensor_is_the_same_object_in_both_towers(tiny_clip: LoadedClip) -> None:
    injected = inject_adapters(tiny_clip.model, AdapterConfig(rank=4, shared_dim=8))
    for layer in range(2):
        for site in SITES:
            vision, text = (
                injected.adapters[("vision", layer, site)],
                injected.adapters[("text", layer, site)],
            )
            assert vision.shared is text.shared is injected.shared[(layer, site)]
            assert vision.shared.weight is text.shared.weight
            assert vision.down.weight is not text.down.weight


def test_shared_slice_writes_the_last_channels(tiny_clip: LoadedClip) -> None:
    injected = inject_adapters(tiny_clip.model, AdapterConfig(rank=4, shared_dim=8))
    adapter = injected.adapters[("text", 0, "mlp")]
    h = torch.randn(3, 5, 48)
    with torch.no_grad():
        before = adapter(h)
        adapter.shared.weight.add_(1.0)
        after = adapter(h)
        z = quick_gelu(adapter.down(h))
        expected = torch.cat([adapter.up(z), z @ adapter.shared.weight.t() + adapter.shared.bias], dim=-1)
    assert torch.equal(before[..., :40], after[..., :40]) and not torch.equal(
        before[..., 40:], after[..., 40:]
    )
    torch.testing.assert_close(after, expected)


def test_adapter_sits_on_each_sublayer_output_with_its_own_skip(tiny_clip: LoadedClip) -> None:
    injected = inject_adapters(tiny_clip.model, AdapterConfig(rank=4, shared_dim=8, init_std=0.2))
    block = tiny_clip.model.visual.transformer.resblocks[1]
    assert isinstance(block, ResidualAttentionBlock)
    attn_adapter, mlp_adapter = (
        injected.adapters[("vision", 1, "attn")],
        injected.adapters[("vision", 1, "mlp")],
    )
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        h = block.attention(block.ln_1(x))
        x1 = x + (h + attn_adapter(h))  # x = x + (h + A(h))
        m = block.mlp(block.ln_2(x1))
        expected = x1 + (m + mlp_adapter(m))
        torch.testing.assert_close(block(x), expected)


def test_only_adapter_params_get_gradients_and_change(tiny_clip: LoadedClip) -> None:
    adapted = AdaptedClip(tiny_clip, AdapterConfig(rank=4, shared_dim=8))
    frozen = {
        k: v.clone()
        for k, v in tiny_clip.model.state_dict().items()
        if "adapter" not in k and "delta" not in k
    }
    logit_scale = tiny_clip.model.logit_scale.detach().clone()
    adapter_before = [p.detach().clone() for p in adapted.parameters()]
    optimizer = torch.optim.AdamW(adapted.parameters(), lr=1e-2)

    text = adapted.encode_text(adapted.tokenize(TEXTS))
    image = adapted.encode_images(random_images(len(TEXTS)))
    logits = (
        tiny_clip.logit_scale
        * nn.functional.normalize(text, dim=-1)
        @ nn.functional.normalize(image, dim=-1).t()
    )
    target = torch.arange(len(TEXTS))
    loss = (nn.functional.cross_entropy(logits, target) + nn.functional.cross_entropy(logits.t(), target)) / 2
    loss.backward()

    adapter_ids = {id(p) for p in adapted.parameters()}
    for name, param in tiny_clip.model.named_parameters():
        if id(param) in adapter_ids:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None and not param.requires_grad, name
    optimizer.step()
    for name, value in frozen.items():
        assert torch.equal(tiny_clip.model.state_dict()[name], value), name
    assert torch.equal(tiny_clip.model.logit_scale.detach(), logit_scale)
    assert all(not torch.equal(p, q) for p, q in zip(adapted.parameters(), adapter_before, strict=True))


def test_single_tower_and_unshared_variants(tiny_spec: ModelSpec) -> None:
    vision_only = load_clip(tiny_spec)
    inject_adapters(vision_only.model, AdapterConfig(rank=4, towers="vision"))
    assert isinstance(vision_only.model.transformer.resblocks[0].ls_1, nn.Identity)
    shape = backbone_shape(vision_only.model)
    assert (
        sum(p.numel() for p in adapter_parameters(vision_only.model))
        == count_parameters(AdapterConfig(rank=4, towers="vision"), shape).trainable
        == 2 * 2 * (64 * 4 + 4 + 4 * 64 + 64)
    )

    unshared = load_clip(tiny_spec)
    injected = inject_adapters(unshared.model, AdapterConfig(rank=4, shared_dim=8, share=False))
    assert not injected.shared and all(a.shared is None for a in injected.adapters.values())
    assert (
        sum(p.numel() for p in adapter_parameters(unshared.model))
        == count_parameters(AdapterConfig(rank=4, shared_dim=8, share=False), shape).trainable
    )


def test_injecting_twice_is_refused(tiny_clip: LoadedClip) -> None:
    inject_adapters(tiny_clip.model, AdapterConfig(rank=4, shared_dim=8))
    with pytest.raises(AlreadyAdapted):
        inject_adapters(tiny_clip.model, AdapterConfig(rank=4, shared_dim=8))
    with pytest.raises(AlreadyAdapted):
        AdaptedClip(tiny_clip, AdapterConfig(rank=4, shared_dim=8))


def test_fresh_adapter_keeps_the_model_close_to_plain_clip(tiny_spec: ModelSpec) -> None:
    plain = load_clip(tiny_spec)
    adapted = AdaptedClip(load_clip(tiny_spec), AdapterConfig(rank=4, shared_dim=8))
    with torch.no_grad():
        reference = plain.model.encode_text(plain.tokenize(TEXTS))
        features = adapted.encode_text(adapted.tokenize(TEXTS))
    assert not torch.equal(features, reference)  # std 0.01 init is not zero-init...
    torch.testing.assert_close(features, reference, rtol=0, atol=0.05)  # ...but starts near the frozen CLIP

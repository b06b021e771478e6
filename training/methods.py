"""The methods the training loop compares: what each one makes trainable in the same frozen CLIP.

| method        | trainable                                           |
|---------------|-----------------------------------------------------|
| zero-shot     | nothing (evaluation only)                           |
| full          | every CLIP weight except ``logit_scale`` (CLIP4Clip) |
| lora          | peft LoRA on both towers' MLPs, the adapter's budget |
| vision        | adapters in the image tower only                    |
| text          | adapters in the text tower only                     |
| cma-noshare   | adapters in both towers, no shared weights          |
| cma           | Cross-Modal Adapter: both towers, up-projection slice shared |
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from training.activations import use_lean_activations
from training.config import METHODS, ConfigError, TrainConfig
from training.lora import inject_lora, lora_rank_for_budget
from videoseek.adapter import AdaptedClip, AdapterConfig, load_adapter
from videoseek.adapter.config import Towers
from videoseek.clip import LoadedClip


@dataclass(frozen=True)
class Method:
    """One row of the comparison. ``towers`` is None for the methods that use no adapter."""

    name: str
    summary: str
    towers: Towers | None = None
    share: bool = False
    trains_backbone: bool = False
    lora: bool = False  # peft LoRA at the Cross-Modal Adapter's parameter budget (training/lora.py)

    @property
    def trains(self) -> bool:
        return self.towers is not None or self.trains_backbone or self.lora

    def adapter_config(self, cfg: TrainConfig) -> AdapterConfig | None:
        if self.towers is None:
            return None
        return AdapterConfig(rank=cfg.rank, shared_dim=cfg.shared_dim, towers=self.towers, share=self.share)


REGISTRY: dict[str, Method] = {
    m.name: m
    for m in (
        Method("zero-shot", "frozen CLIP, no training"),
        Method("full", "full fine-tuning of every CLIP weight (CLIP4Clip-style)", trains_backbone=True),
        Method(
            "lora", "LoRA (peft) on both towers' MLP layers, rank matched to the adapter's size", lora=True
        ),
        Method("vision", "adapters in the image tower only", towers="vision"),
        Method("text", "adapters in the text tower only", towers="text"),
        Method("cma-noshare", "Cross-Modal Adapter without weight sharing", towers="both", share=False),
        Method("cma", "Cross-Modal Adapter (shared up-projection slice)", towers="both", share=True),
    )
}
assert tuple(REGISTRY) == METHODS


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}") from None


def method_of(config: AdapterConfig) -> Method:
    """The method that makes adapters of this kind: their towers, and whether both towers share weights."""
    shares = config.share and config.towers == "both"  # a one-tower adapter's ``share`` is moot
    for method in REGISTRY.values():
        if (method.towers, method.share) == (config.towers, shares):
            return method
    raise ConfigError(
        f"no training method makes a {config.towers} adapter with share={config.share}: this adapter was not "
        "made by videoseek train, so it cannot be continued; train a new one"
    )


def continue_from(cfg: TrainConfig, adapter_dir: Path) -> TrainConfig:
    """``cfg`` set to continue training the adapter in ``adapter_dir``: its method, rank and shared width win.

    Raises ``AdapterFileError`` for an unreadable adapter, ``ConfigError`` for one no method makes.
    """
    config = load_adapter(adapter_dir).config
    return replace(
        cfg,
        method=method_of(config).name,
        rank=config.rank,
        shared_dim=config.shared_dim,
        init_adapter=str(Path(adapter_dir).resolve()),  # the same folder reads the same way on --resume
    )


@dataclass(eq=False)
class Prepared:
    """A model set up for one method: the parameters to optimise and, for adapter methods, the adapter
    (``init_version``: the adapter it continues, if any)."""

    method: Method
    trainable: list[nn.Parameter]
    adapted: AdaptedClip | None
    init_version: str | None = None


def prepare(clip: LoadedClip, method: Method, cfg: TrainConfig) -> Prepared:
    """Inject adapters (adapter methods) and set ``requires_grad`` so exactly the method's tensors train.

    ``clip`` must be a private model (``load_clip``, not the process-wide ``get_clip``): it is changed in place,
    including its QuickGELUs, swapped for the memory-lean equivalent (same outputs) for every method alike.
    """
    model = clip.model
    use_lean_activations(model)
    adapter_cfg = method.adapter_config(cfg)
    init = load_adapter(Path(cfg.init_adapter), expected_base=clip.identity) if cfg.init_adapter else None
    if init is not None and adapter_cfg is not None:
        if method_of(init.config) != method:
            raise ConfigError(
                f"the adapter in {cfg.init_adapter} is a {method_of(init.config).name} adapter, not {method.name}: "
                "use methods.continue_from to take its method"
            )
        adapter_cfg = init.config  # its own: the fields no method sets (init_std, a moot share) included
    adapted = AdaptedClip(clip, adapter_cfg, init=init) if adapter_cfg is not None else None
    if adapted is not None:
        trainable = adapted.parameters()
    elif method.lora:
        trainable = inject_lora(model, lora_rank_for_budget(model, cfg.rank, cfg.shared_dim))
    elif method.trains_backbone:
        model.requires_grad_(True)
        trainable = [p for name, p in model.named_parameters() if name != "logit_scale"]
    else:
        model.requires_grad_(False)
        trainable = []
    # The temperature stays at the pre-trained value for every method (the paper freezes it).
    model.logit_scale.requires_grad_(False)
    return Prepared(method, trainable, adapted, init.version if init is not None else None)


def decay_groups(params: list[nn.Parameter], weight_decay: float) -> list[dict[str, object]]:
    """AdamW groups: decoupled weight decay on weight matrices only, none on biases, norms and scalars."""
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def count_parameters(params: list[nn.Parameter]) -> int:
    """Distinct elements (a tensor listed twice counts once)."""
    return sum(p.numel() for p in {id(p): p for p in params}.values())

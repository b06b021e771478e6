"""What one training run needs, validated up front so a bad value fails before any frame is decoded."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

from videoseek.pooling_defaults import POOLING_TAU, Pooling

OnBad = Literal["skip", "error"]

METHODS = ("zero-shot", "full", "lora", "vision", "text", "cma-noshare", "cma")
ADAPTER_METHODS = METHODS[3:]  # the ones that make an adapter (LoRA is a study baseline, training/lora.py)
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A training setting is out of range; the message names the option and the fix."""


@dataclass(frozen=True)
class SamplingConfig:
    """How frames are taken from a clip. Every field is part of the frame-cache key."""

    fps: float = 1.0
    max_frames: int = 12
    image_size: int = 224

    def __post_init__(self) -> None:
        _check(0 < self.fps <= 30, "--fps must be in (0, 30]")
        _check(1 <= self.max_frames <= 256, "--frames must be between 1 and 256")
        _check(8 <= self.image_size <= 1024, "image size must be between 8 and 1024 pixels")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``batch_size`` is the global contrastive batch; ``micro_batch`` what fits at once."""

    method: str = "cma"
    epochs: int = 5
    batch_size: int = 128
    micro_batch: int | None = None
    lr: float = 1e-5
    warmup_frac: float = 0.1
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)
    eps: float = 1e-6
    grad_clip: float = 1.0
    rank: int = 8
    shared_dim: int = 16
    frames: int = 12
    fps: float = 1.0
    text_context_length: int = 32
    pooling: Pooling = "text_conditioned"
    tau: float = POOLING_TAU
    seed: int = 42
    device: str = "auto"
    amp: bool = True
    eval_every: int = 1
    checkpoint_every: int = 0
    init_adapter: str | None = None  # an adapter folder to continue training (see methods.continue_from)
    # > 0: stop after this many evaluations without a better one and keep the best (training/early_stopping.py)
    patience: int = 0

    def __post_init__(self) -> None:
        _check(
            self.method in METHODS, f"--method {self.method!r} is unknown; choose one of {', '.join(METHODS)}"
        )
        _check(self.epochs >= 0, "--epochs must be >= 0")
        _check(self.batch_size >= 2, "--batch-size must be >= 2 (a contrastive batch needs negatives)")
        _check(
            self.micro_batch is None or 1 <= self.micro_batch <= self.batch_size,
            "--micro-batch must be between 1 and --batch-size",
        )
        _check(0 < self.lr < 1, "--lr must be in (0, 1), e.g. 1e-3 for the toy model, 1e-5 for ViT-B-32")
        _check(0 <= self.warmup_frac < 1, "warmup fraction must be in [0, 1)")
        _check(self.weight_decay >= 0, "weight decay must be >= 0")
        _check(all(0 <= b < 1 for b in self.betas), "Adam betas must be in [0, 1)")
        _check(self.eps > 0 and self.grad_clip > 0, "eps and grad clip must be > 0")
        _check(self.rank >= 1, "--rank must be >= 1")
        _check(self.shared_dim >= 0, "--shared-dim must be >= 0")
        _check(self.text_context_length >= 4, "text context length must be >= 4 tokens")
        _check(self.pooling in ("mean", "text_conditioned"), "--pooling must be mean or text_conditioned")
        _check(self.tau > 0, "--tau must be > 0")
        _check(self.device in DEVICES, f"--device must be one of {', '.join(DEVICES)}")
        _check(self.eval_every >= 1 and self.checkpoint_every >= 0, "eval/checkpoint intervals must be >= 0")
        _check(self.patience >= 0, "--patience must be >= 0 (0: no early stopping)")
        SamplingConfig(fps=self.fps, max_frames=self.frames)
        _check(
            self.init_adapter is None or self.method in ADAPTER_METHODS,
            f"--init-adapter continues an adapter: --method must be one of {', '.join(ADAPTER_METHODS)}",
        )

    @property
    def accumulation_steps(self) -> int:
        """Micro-batches per optimizer step (1: the whole batch is encoded at once)."""
        micro = self.micro_batch or self.batch_size
        return -(-self.batch_size // micro)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict` output (a checkpoint or report); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown training settings {unknown}: was this written by a newer videoseek?")
        values = dict(data)
        if "betas" in values:
            values["betas"] = tuple(values["betas"])
        return cls(**values)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)

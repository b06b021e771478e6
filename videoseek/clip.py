"""The frozen CLIP every videoseek process shares: loaded once from a :class:`ModelSpec`.

Every spec form ends in the same place: an open_clip architecture name (or ``local-dir:``) plus a weights file
on disk, or deliberate random weights. Pretrained tags are resolved to the file open_clip would download,
looked up in the local caches first; a missing one is downloaded only when the caller's policy says ``auto``
(``VIDEOSEEK_MODEL_DOWNLOAD``, :mod:`videoseek.pretrained_weights`), and otherwise fails at once with a message
naming the file and the ways to get it. The model is returned frozen (``requires_grad`` False everywhere,
``logit_scale`` included) and in eval mode.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import tempfile
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from open_clip.transformer import text_global_pool
from PIL.Image import Image
from torch import nn

from videoseek.model_errors import ModelLoadError as ModelLoadError
from videoseek.model_errors import WeightsNotFound as WeightsNotFound
from videoseek.model_spec import ModelSpec
from videoseek.pretrained_weights import (
    DownloadPolicy,
    HubWeights,
    download_weights,
    find_cached,
    how_to_get,
    looked_in,
)

log = logging.getLogger(__name__)

# Random weights are drawn from a fixed seed, so ``NAME:random`` is the same model in every process (tests and
# benchmarks compare runs, and adapters saved against it stay loadable).
RANDOM_WEIGHTS_SEED = 0
_PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode")
_HASH_CHUNK = 1 << 20


if TYPE_CHECKING:

    class ClipModel(nn.Module):
        """What videoseek uses of an open_clip ``CLIP``/``CustomTextCLIP`` (open_clip ships no type hints)."""

        visual: Any
        logit_scale: nn.Parameter

        def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

        def encode_image(self, image: torch.Tensor, normalize: bool = False) -> torch.Tensor: ...

else:
    ClipModel = nn.Module


@dataclass(frozen=True, eq=False)
class BaseModelIdentity:
    """What makes two frozen CLIPs interchangeable for an adapter: architecture and exact weights."""

    name: str
    tag: str | None
    checkpoint_sha256: str | None
    architecture: Mapping[str, Any]
    spec: str = ""

    @property
    def fingerprint(self) -> str:
        """Stable id of (architecture, weights); the spelling of the spec does not enter it."""
        weights = self.checkpoint_sha256 or f"random-seed-{RANDOM_WEIGHTS_SEED}"
        payload = json.dumps(
            {"architecture": self.architecture, "weights": weights}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def describe(self) -> str:
        return f"{self.spec or self.name} (fingerprint {self.fingerprint})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tag": self.tag,
            "checkpoint_sha256": self.checkpoint_sha256,
            "architecture": deepcopy(dict(self.architecture)),
            "spec": self.spec,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BaseModelIdentity:
        return cls(
            name=str(data["name"]),
            tag=data.get("tag"),
            checkpoint_sha256=data.get("checkpoint_sha256"),
            architecture=dict(data["architecture"]),
            spec=str(data.get("spec", "")),
        )


@dataclass(eq=False)
class LoadedClip:
    """A frozen open_clip CLIP with what is needed to feed it."""

    spec: ModelSpec
    model: ClipModel
    preprocess: Callable[[Image], torch.Tensor]
    tokenizer: Callable[..., torch.Tensor]
    identity: BaseModelIdentity
    image_size: int
    embed_dim: int
    context_length: int
    device: torch.device
    _pad_short_texts: bool = field(default=True, repr=False)

    @property
    def logit_scale(self) -> float:
        """The paper's multiplier: ``exp`` of the stored parameter (100 for OpenAI CLIP)."""
        return float(self.model.logit_scale.detach().exp().reshape(-1)[0])

    def tokenize(self, texts: Sequence[str], context_length: int = 32) -> torch.Tensor:
        """Token ids ``[B, model context]`` on the model's device, text cut to ``context_length`` tokens.

        The text tower is causal and pools at the end-of-text token, so a text cut at 32 tokens and zero-padded
        to the model's 77 gives exactly the features of a 32-token model (open_clip needs the full length).
        """
        if context_length < 2:
            raise ValueError(f"context_length must be >= 2 tokens, got {context_length}")
        length = min(context_length, self.context_length) if self._pad_short_texts else self.context_length
        tokens = self.tokenizer(list(texts), context_length=length)
        if length < self.context_length:
            tokens = torch.nn.functional.pad(tokens, (0, self.context_length - length))
        return tokens.to(self.device)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Projected, unnormalised text features of :meth:`tokenize`'s ids (see :func:`encode_text_tokens`)."""
        return encode_text_tokens(self.model, tokens)


def encode_text_tokens(model: ClipModel, tokens: torch.Tensor) -> torch.Tensor:
    """``model.encode_text(tokens)``, running only the positions up to the batch's last end-of-text token.

    Why it exists: open_clip always runs the whole context (77 positions for OpenAI CLIP), but its text tower is
    causal and pools at each text's end-of-text token (the highest id), so later positions cannot change any
    output; for the 32-token texts search uses that is ~2.4x the work (``bench/text_encoder.py`` measured 0.26x
    the time for 8 queries). The short forward mirrors ``open_clip.model.CLIP.encode_text`` of open_clip_torch
    3.3.0 (the pinned version) line for line, with the position table and causal mask cut to the length used;
    ``tests/videoseek/test_clip_text_forward.py`` pins it to ``model.encode_text`` on ViT-B-32 and the tiny config.
    Anything it does not mirror gets the plain call: other classes (``CustomTextCLIP``, a subclass overriding
    ``encode_text``), other pooling, a text tower without causal mask.
    """
    length = int(tokens.argmax(dim=-1).max()) + 1 if tokens.numel() else tokens.shape[-1]
    if not _mirrors_clip_encode_text(model) or length >= tokens.shape[-1]:
        return model.encode_text(tokens)
    tokens = tokens[:, :length]
    text: Any = model  # open_clip ships no type hints for these attributes
    cast_dtype = text.transformer.get_cast_dtype()
    x = text.token_embedding(tokens).to(cast_dtype) + text.positional_embedding[:length].to(cast_dtype)
    x = text.ln_final(text.transformer(x, attn_mask=text.attn_mask[:length, :length]))
    x = text_global_pool(x, tokens, text.text_pool_type, eos_token_id=getattr(text, "text_eos_id", None))
    if text.text_projection is None:
        return cast("torch.Tensor", x)
    if isinstance(text.text_projection, nn.Linear):
        return cast("torch.Tensor", text.text_projection(x))
    return cast("torch.Tensor", x @ text.text_projection)


def _mirrors_clip_encode_text(model: nn.Module) -> bool:
    """Whether :func:`encode_text_tokens`' short forward computes what ``model.encode_text`` does."""
    return (
        isinstance(model, open_clip.CLIP)
        and type(model).encode_text is open_clip.CLIP.encode_text  # a subclass may compute something else
        and getattr(model, "text_pool_type", None) == "argmax"  # pooling at the end-of-text token
        and getattr(model, "attn_mask", None) is not None  # causal: later positions cannot reach it
    )


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available. Call after forking: checking CUDA in a prefork parent is unsafe."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {device!r} requested but this torch build sees no CUDA GPU; set VIDEOSEEK_DEVICE=cpu"
            )
        return torch.device(device)
    raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N")


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _architecture(config: Mapping[str, Any], quick_gelu: bool = False) -> dict[str, Any]:
    """The effective architecture; ``quick_gelu`` always explicit so equal models get equal fingerprints."""
    architecture = deepcopy(dict(config))
    architecture["quick_gelu"] = bool(quick_gelu or architecture.get("quick_gelu", False))
    return architecture


@dataclass(frozen=True)
class _Source:
    """A spec resolved to what open_clip is given: a model name (or local-dir) and a file on disk."""

    model_name: str
    checkpoint: Path | None
    architecture: dict[str, Any]
    tag: str | None = None
    quick_gelu: bool = False
    preprocess: dict[str, Any] = field(default_factory=dict)


def _builtin_architecture(name: str) -> dict[str, Any]:
    config = open_clip.get_model_config(name)
    if config is None:
        raise ModelLoadError(
            f"unknown open_clip model {name!r}; known models include ViT-B-32, ViT-B-16 "
            f"(see open_clip.list_models()), or use local-dir:/path with an open_clip_config.json"
        )
    return _architecture(config)


def _check_towers(name: str, architecture: Mapping[str, Any]) -> None:
    # Adapters hook open_clip's own residual blocks; timm/HF towers have none (and may try the network).
    vision, text = architecture.get("vision_cfg", {}), architecture.get("text_cfg", {})
    foreign = [k for k in ("timm_model_name",) if vision.get(k)] + [
        k for k in ("hf_model_name", "hf_tokenizer_name") if text.get(k)
    ]
    if foreign:
        raise ModelLoadError(
            f"model {name!r} uses a timm/Hugging Face tower ({', '.join(foreign)}); videoseek needs open_clip's "
            "own transformer towers (e.g. ViT-B-32, ViT-B-16)"
        )


def has_open_clip_towers(name: str) -> bool:
    """Whether videoseek can use the open_clip architecture ``name``: its own towers, no timm/HF ones."""
    config = open_clip.get_model_config(name)
    if config is None:
        return False
    try:
        _check_towers(name, config)
    except ModelLoadError:
        return False
    return True


def _pretrained_file(name: str, tag: str, cfg: Mapping[str, Any], download: DownloadPolicy) -> Path:
    """The file open_clip would download for ``name:tag``: from the local caches, else downloaded (``auto``)."""
    if cfg.get("file"):
        candidate = Path(cfg["file"])
        if candidate.is_file():
            return candidate
        raise WeightsNotFound(f"weights for {name}:{tag} are not on disk: expected the file {candidate}")
    weights = HubWeights.from_pretrained_cfg(name, tag, dict(cfg))
    found = find_cached(weights)
    if found is not None:
        return found
    copy_hint = _checkpoint_spec_hint(name, cfg)
    if download == "auto":
        return download_weights(weights, copy_hint)
    raise WeightsNotFound(
        f"pretrained weights for {name}:{tag} are not on disk (looked in "
        + "; and ".join(looked_in(weights))
        + "), and VIDEOSEEK_MODEL_DOWNLOAD=never forbids downloading them. "
        + how_to_get(weights, copy_hint)
    )


def _checkpoint_spec_hint(name: str, cfg: Mapping[str, Any]) -> str:
    """How to name a copied weights file of ``name:tag`` so it is built with the activation it was trained with.

    A ``NAME:/path`` spec builds NAME's own config, and OpenAI's tags need QuickGELU where e.g. ViT-B-32's config
    has GELU: loading them into it works silently and gives wrong features, so point at the ``-quickgelu`` twin.
    """
    builtin = open_clip.get_model_config(name) or {}
    if not cfg.get("quick_gelu") or builtin.get("quick_gelu"):
        return f"set VIDEOSEEK_MODEL={name}:/path/to/weights"
    return _quick_gelu_spec(name, "/path/to/weights") + " (these weights need QuickGELU)"


def _quick_gelu_spec(name: str, path: str) -> str:
    """How to load the QuickGELU-trained weights file ``path`` as open_clip model (or local-dir spec) ``name``."""
    if name.startswith("local-dir:"):
        return 'set "quick_gelu": true in its open_clip_config.json'
    if open_clip.get_model_config(f"{name}-quickgelu") is not None:
        return f"set VIDEOSEEK_MODEL={name}-quickgelu:{path}"
    return 'use VIDEOSEEK_MODEL=local-dir:/path with "quick_gelu": true in its open_clip_config.json'


def _resolve_pretrained(spec: ModelSpec, download: DownloadPolicy) -> _Source:
    architecture = _builtin_architecture(spec.name)
    assert spec.tag is not None
    cfg = open_clip.get_pretrained_cfg(spec.name, spec.tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(spec.name)
        raise ModelLoadError(
            f"unknown pretrained tag {spec.tag!r} for {spec.name}; known tags: {', '.join(tags) or 'none'}"
        )
    _check_towers(spec.name, architecture)
    architecture = _architecture(architecture, quick_gelu=bool(cfg.get("quick_gelu", False)))
    quick_gelu = bool(architecture["quick_gelu"])
    return _Source(
        model_name=spec.name,
        checkpoint=_pretrained_file(spec.name, spec.tag, cfg, download),
        architecture=architecture,
        tag=spec.tag,
        quick_gelu=quick_gelu,
        preprocess={k: cfg[k] for k in _PREPROCESS_KEYS if k in cfg},
    )


def _resolve_checkpoint(name: str, path: Path) -> _Source:
    architecture = _builtin_architecture(name)
    if not path.is_file():
        raise WeightsNotFound(f"checkpoint for {name} not found: provide the file {path}")
    return _Source(model_name=name, checkpoint=path, architecture=architecture)


def _resolve_local_dir(spec: ModelSpec) -> _Source:
    assert spec.path is not None
    config_path = spec.path / "open_clip_config.json"
    if not config_path.is_file():
        raise WeightsNotFound(f"{spec}: missing {config_path} (open_clip's config with a 'model_cfg' key)")
    try:
        architecture = _architecture(json.loads(config_path.read_text(encoding="utf-8"))["model_cfg"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{config_path} is not an open_clip config with 'model_cfg': {exc}") from exc
    # The same rule open_clip applies, so the file hashed is the file loaded.
    checkpoint = open_clip.factory._find_checkpoint_in_dir(spec.path)
    if checkpoint is None:
        raise WeightsNotFound(
            f"{spec}: no weights file in {spec.path}; provide open_clip_model.safetensors (or *.bin / *.pth)"
        )
    return _Source(model_name=str(spec), checkpoint=Path(checkpoint), architecture=architecture)


def _resolve_toy() -> _Source:
    from videoseek.toy.model import TOY_MODEL_NAME, register_toy_model_config, toy_checkpoint_path

    register_toy_model_config()
    path = Path(toy_checkpoint_path())
    if not path.is_file():
        raise WeightsNotFound(
            f"toy CLIP checkpoint {path} not found; rebuild it with `videoseek toy pretrain`"
        )
    return _resolve_checkpoint(TOY_MODEL_NAME, path)


def _resolve(spec: ModelSpec, download: DownloadPolicy = "never") -> _Source:
    if spec.kind == "pretrained":
        return _resolve_pretrained(spec, download)
    if spec.kind == "checkpoint":
        assert spec.path is not None
        return _resolve_checkpoint(spec.name, spec.path)
    if spec.kind == "local-dir":
        return _resolve_local_dir(spec)
    if spec.kind == "toy":
        return _resolve_toy()
    return _Source(model_name=spec.name, checkpoint=None, architecture=_builtin_architecture(spec.name))


def check_model_spec(spec: ModelSpec, download: DownloadPolicy = "never") -> None:
    """Raise :class:`ModelLoadError` when ``spec`` cannot load here, without building the model.

    Catches an unknown architecture or tag and weights that are not on disk, so a server can refuse to start
    rather than serve without a model. ``download="auto"``: pretrained weights missing from the caches are
    downloaded first (:mod:`videoseek.pretrained_weights`), so a process that checks its model as it starts
    (``videoseek serve``, ``videoseek worker``) fetches it once, before taking work.
    """
    _resolve(spec, download)


def weights_file(spec: ModelSpec, download: DownloadPolicy = "never") -> Path | None:
    """The weights file ``spec`` loads (downloaded first with ``download="auto"``); None for random weights."""
    return _resolve(spec, download).checkpoint


def _build(source: _Source) -> ClipModel:
    _check_towers(source.model_name, source.architecture)
    kwargs: dict[str, Any] = {
        "force_quick_gelu": source.quick_gelu,
        "force_preprocess_cfg": source.preprocess or None,
        "pretrained_image": False,
        "pretrained_text": False,
        "device": "cpu",
    }
    try:
        if source.checkpoint is None:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                model = open_clip.create_model(source.model_name, pretrained=None, **kwargs)
        else:
            with _open_clip_readable(source) as weights:
                model = open_clip.create_model(source.model_name, pretrained=str(weights), **kwargs)
    except ModelLoadError:
        raise
    except (RuntimeError, ValueError, KeyError, OSError) as exc:
        raise ModelLoadError(f"open_clip could not build {source.model_name}: {exc}") from exc
    return cast("ClipModel", model)


# What TorchScript archives hold besides weights: OpenAI's metadata (open_clip drops the same keys when it reads
# one) and, in a CLIP scripted by open_clip itself (``jit=True``), the causal mask, a non-persistent buffer that
# TorchScript saves anyway.
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size", "attn_mask")


def _is_torchscript_archive(path: Path) -> bool:
    """OpenAI's CLIP files (``~/.cache/clip/ViT-B-32.pt``) are TorchScript archives, not ``torch.save`` files."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(n.endswith("/constants.pkl") or "/code/__torch__/" in n for n in archive.namelist())


@contextmanager
def _open_clip_readable(source: _Source) -> Iterator[Path]:
    """The checkpoint as a file open_clip can read.

    open_clip reads checkpoints with ``torch.load(weights_only=True)``, which refuses TorchScript archives (torch
    >= 2.6), so an OpenAI archive is read with ``torch.jit.load`` and its state dict handed over as a temporary
    ``torch.save`` file (same tensors; open_clip converts and checks them as for any checkpoint). The identity
    still hashes the file the user gave.
    """
    assert source.checkpoint is not None
    if not _is_torchscript_archive(source.checkpoint):
        yield source.checkpoint
        return
    if not source.architecture.get("quick_gelu"):
        raise ModelLoadError(
            f"{source.checkpoint} is a TorchScript archive (OpenAI's CLIP format) and OpenAI's CLIPs use QuickGELU, "
            f"but {source.model_name} is built with GELU, which would give wrong features: "
            + _quick_gelu_spec(source.model_name, str(source.checkpoint))
        )
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # torch.jit.load is deprecated, yet the only reader of it
        archive = torch.jit.load(str(source.checkpoint), map_location="cpu")
    state = {k: v for k, v in archive.state_dict().items() if k not in _ARCHIVE_EXTRAS}
    del archive
    with tempfile.TemporaryDirectory(prefix="videoseek-clip-") as directory:
        converted = Path(directory) / "state_dict.pt"
        torch.save(state, converted)
        del state
        yield converted


@functools.lru_cache(maxsize=16)
def _tokenizer(model_name: str) -> Callable[..., torch.Tensor]:
    # Building open_clip's BPE tokenizer reads its vocabulary file; it is stateless after that, so share it.
    return cast("Callable[..., torch.Tensor]", open_clip.get_tokenizer(model_name))


def _text_module(model: nn.Module) -> Any:
    return getattr(model, "text", model)


def _image_size(model: ClipModel) -> int:
    size = model.visual.preprocess_cfg["size"]
    return int(max(size)) if isinstance(size, list | tuple) else int(size)


def load_clip(spec: ModelSpec, device: str = "cpu", download: DownloadPolicy = "never") -> LoadedClip:
    """Build a fresh frozen CLIP for ``spec`` on ``device`` (``auto``, ``cpu``, ``cuda``). Prefer :func:`get_clip`.

    ``download``: ``never`` (the default here) loads only weights already on disk; ``auto`` downloads missing
    pretrained weights first. Processes pass their ``Settings.model_download``.
    """
    torch_device = resolve_device(device)
    source = _resolve(spec, download)
    if source.checkpoint is None:
        log.warning(
            "!!! model %s has RANDOM weights (seed %d): its embeddings mean nothing; use it for tests and "
            "benchmarks only !!!",
            spec,
            RANDOM_WEIGHTS_SEED,
        )
    model = _build(source)
    model.requires_grad_(False)
    model.eval()
    model.to(torch_device)
    text = _text_module(model)
    identity = BaseModelIdentity(
        name=source.model_name,
        tag=source.tag if spec.kind == "pretrained" else ("random" if spec.kind == "random" else None),
        checkpoint_sha256=sha256_file(source.checkpoint) if source.checkpoint is not None else None,
        architecture=source.architecture,
        spec=str(spec),
    )
    causal_pooling = getattr(text, "attn_mask", None) is not None and getattr(
        text, "text_pool_type", getattr(text, "pool_type", "argmax")
    ) in ("argmax", "eos")
    return LoadedClip(
        spec=spec,
        model=model,
        preprocess=image_transform_v2(PreprocessCfg(**model.visual.preprocess_cfg), is_train=False),
        tokenizer=_tokenizer(source.model_name),
        identity=identity,
        image_size=_image_size(model),
        embed_dim=int(source.architecture["embed_dim"]),
        context_length=int(text.context_length),
        device=torch_device,
        _pad_short_texts=causal_pooling,
    )


_CACHE: dict[tuple[str, str], LoadedClip] = {}
_CACHE_LOCK = threading.Lock()


def get_clip(spec: ModelSpec, device: str = "cpu", download: DownloadPolicy = "never") -> LoadedClip:
    """The process-wide CLIP for ``(spec, device)``, loaded on first use (after fork, never at import)."""
    key = (str(spec), str(resolve_device(device)))
    with _CACHE_LOCK:
        loaded = _CACHE.get(key)
        if loaded is None:
            loaded = load_clip(spec, key[1], download)
            _CACHE[key] = loaded
        return loaded


def clear_clip_cache() -> None:
    """Forget cached models (tests; a process that switches models)."""
    with _CACHE_LOCK:
        _CACHE.clear()

"""The small CLIP of the toy world: its open_clip config and the committed checkpoint.

The architecture is an ordinary open_clip model config (``model_configs/videoseek-toy.json``), registered with
open_clip's own ``add_model_config`` so that ``open_clip.create_model(TOY_MODEL_NAME, pretrained=path)`` and
``open_clip.get_tokenizer(TOY_MODEL_NAME)`` work exactly as for any built-in model with a local checkpoint.
Vision and text towers have the same depth (4 layers), as the Cross-Modal Adapter's weight sharing requires.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import open_clip

TOY_MODEL_NAME = "videoseek-toy"
# open_clip's CLIP class; open_clip ships no type information, so this is Any to the type checker.
ToyClip = Any
_PACKAGE_DIR = Path(__file__).resolve().parent
_CONFIG_PATH = _PACKAGE_DIR / "model_configs" / f"{TOY_MODEL_NAME}.json"
_CHECKPOINT_PATH = _PACKAGE_DIR / "weights" / "toy-clip.safetensors"
# The safetensors metadata entry holding how a checkpoint was made (JSON: model, recipe, steps_done, ...).
CHECKPOINT_INFO_KEY = "videoseek_toy"


class ToyCheckpointMissing(FileNotFoundError):
    """The committed toy checkpoint is not where the package expects it."""


def register_toy_model_config() -> None:
    """Make ``TOY_MODEL_NAME`` known to open_clip; calling it again does nothing."""
    if TOY_MODEL_NAME not in open_clip.list_models():
        open_clip.add_model_config(_CONFIG_PATH)


def toy_model_config() -> dict[str, Any]:
    """The architecture as a plain dict (a copy; editing it changes nothing)."""
    config: dict[str, Any] = json.loads(_CONFIG_PATH.read_text())
    return config


def toy_checkpoint_path() -> Path:
    """Where the committed checkpoint lives inside the installed package (it may be absent in a fresh clone
    that skipped large files; :func:`create_toy_model` says how to rebuild it)."""
    return _CHECKPOINT_PATH


def checkpoint_info(path: Path) -> dict[str, Any]:
    """How a toy checkpoint was made, from its metadata (empty if it carries none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(CHECKPOINT_INFO_KEY)
    return dict(json.loads(text)) if text else {}


def create_toy_model(checkpoint: Path | None = None, *, pretrained: bool = True) -> ToyClip:
    """The toy CLIP in eval mode: from ``checkpoint`` (default: the committed one) or with fresh random
    weights when ``pretrained`` is False (pre-training starts there)."""
    register_toy_model_config()
    if not pretrained:
        return open_clip.create_model(TOY_MODEL_NAME, pretrained=None)
    path = checkpoint or toy_checkpoint_path()
    if not path.is_file():
        raise ToyCheckpointMissing(
            f"toy CLIP checkpoint {path} not found; rebuild it with `videoseek toy pretrain`"
        )
    model = open_clip.create_model(TOY_MODEL_NAME, pretrained=str(path))
    model.eval()
    return model


def toy_tokenizer() -> Any:
    """open_clip's standard tokenizer at the toy model's context length."""
    register_toy_model_config()
    return open_clip.get_tokenizer(TOY_MODEL_NAME)

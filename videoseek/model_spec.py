"""The textual model spec (``VIDEOSEEK_MODEL``, ``--model``) and its parsed form.

Accepted forms:
  ``ViT-B-32:openai``           open_clip model name + pretrained tag (weights from the local cache, or downloaded)
  ``ViT-B-32:/path/ckpt.pt``    open_clip model name + local checkpoint file
  ``local-dir:/path/to/dir``    open_clip's local directory form (open_clip_config.json + weights)
  ``ViT-B-32:random``           architecture only, random weights (tests and benchmarks)
  ``toy``                       the small CLIP this project trains on its toy world
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

SpecKind = Literal["pretrained", "checkpoint", "local-dir", "random", "toy"]

_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".ckpt")


class ModelSpec(BaseModel):
    """What CLIP to load; ``str(spec)`` gives back the textual form."""

    model_config = ConfigDict(frozen=True)

    kind: SpecKind
    name: str
    tag: str | None = None
    path: Path | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        text = text.strip()
        if text == "toy":
            return cls(kind="toy", name="toy")
        if text.startswith("local-dir:"):
            directory = text.removeprefix("local-dir:")
            if not directory:
                raise ValueError("local-dir: needs a directory, e.g. local-dir:/models/my-clip")
            return cls(kind="local-dir", name=text, path=Path(directory))
        name, sep, tag = text.partition(":")
        if not name or not sep or not tag:
            raise ValueError(
                f"model spec {text!r} needs NAME:TAG (e.g. ViT-B-32:openai), NAME:/path/to/checkpoint.pt, "
                "local-dir:/path, NAME:random or toy"
            )
        if tag == "random":
            return cls(kind="random", name=name)
        if "/" in tag or tag.endswith(_CHECKPOINT_SUFFIXES):
            return cls(kind="checkpoint", name=name, path=Path(tag))
        return cls(kind="pretrained", name=name, tag=tag)

    def __str__(self) -> str:
        if self.kind == "toy":
            return "toy"
        if self.kind == "local-dir":
            return self.name
        if self.kind == "random":
            return f"{self.name}:random"
        if self.kind == "checkpoint":
            return f"{self.name}:{self.path}"
        return f"{self.name}:{self.tag}"

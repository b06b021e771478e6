"""Adapter files: a directory holding ``adapter_config.json`` and ``adapter.safetensors`` (the adapter only).

The version of an adapter is the sha256 of its contents (the safetensors bytes followed by the canonical JSON of
its config document), so a version names exactly one adapter, files can be stored under ``adapters/<version>``,
and loading re-checks the hash. Shared up-projections are stored once, under ``shared.<layer>.<site>.*``.
The base model the adapter was trained on is recorded, and loading it against another base model is refused.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from videoseek.adapter.config import (
    AdapterConfig,
    AdapterConfigError,
    BackboneShape,
    adapter_tensor_shapes,
)
from videoseek.clip import BaseModelIdentity

FORMAT = "videoseek-cross-modal-adapter"
FORMAT_VERSION = 1
CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter.safetensors"


class AdapterFileError(ValueError):
    """An adapter directory is missing, unreadable, inconsistent or corrupt."""


class AdapterBaseMismatch(AdapterFileError):
    """The adapter was trained on another base model than the one it is being loaded onto."""


def _canonical(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _content_version(weights: bytes, document: Mapping[str, Any]) -> str:
    return hashlib.sha256(weights + b"\n" + _canonical(document)).hexdigest()


@dataclass(frozen=True, eq=False)
class AdapterFile:
    """One adapter in memory: config, the base model it belongs to, and its tensors (CPU, float32)."""

    config: AdapterConfig
    base: BaseModelIdentity
    shape: BackboneShape
    tensors: Mapping[str, torch.Tensor]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    _version: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        expected = adapter_tensor_shapes(self.config, self.shape)
        if set(expected) != set(self.tensors):
            missing, extra = (
                sorted(set(expected) - set(self.tensors)),
                sorted(set(self.tensors) - set(expected)),
            )
            raise AdapterFileError(
                f"adapter tensors do not match its config (missing {missing[:3]}, unexpected {extra[:3]})"
            )
        for name, dims in expected.items():
            if tuple(self.tensors[name].shape) != dims:
                raise AdapterFileError(f"{name} has shape {tuple(self.tensors[name].shape)}, expected {dims}")

    @property
    def nbytes(self) -> int:
        """Bytes of the adapter's tensors (shared ones once)."""
        return sum(t.numel() * t.element_size() for t in self.tensors.values())

    def document(self) -> dict[str, Any]:
        """The config document (what ``adapter_config.json`` holds, minus the version)."""
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "adapter": self.config.to_dict(),
            "backbone": self.shape.to_dict(),
            "base_model": self.base.to_dict(),
            "metadata": dict(self.metadata),
        }

    def weights_bytes(self) -> bytes:
        tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.tensors.items()}
        return save_safetensors(tensors, metadata={"format": FORMAT})

    @property
    def version(self) -> str:
        """sha256 of the safetensors bytes and the canonical config document."""
        if self._version is None:
            object.__setattr__(self, "_version", _content_version(self.weights_bytes(), self.document()))
        assert self._version is not None
        return self._version

    def check_base(self, identity: BaseModelIdentity) -> None:
        """Refuse to use this adapter on a different base model than the one it was trained on."""
        if self.base.fingerprint != identity.fingerprint:
            raise AdapterBaseMismatch(
                f"adapter {self.version[:12]} was trained on base model {self.base.describe()}, but this "
                f"process runs {identity.describe()}; retrain the adapter on this model or set "
                f"VIDEOSEEK_MODEL={self.base.spec or self.base.name}"
            )


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_adapter(adapter: AdapterFile, directory: Path) -> str:
    """Write ``adapter`` into ``directory`` (created if needed); returns its version."""
    weights, document = adapter.weights_bytes(), adapter.document()
    version = _content_version(weights, document)
    directory.mkdir(parents=True, exist_ok=True)
    _write_atomic(directory / WEIGHTS_FILE, weights)
    _write_atomic(directory / CONFIG_FILE, json.dumps({**document, "version": version}, indent=2).encode())
    return version


def store_adapter(adapter: AdapterFile, root: Path) -> str:
    """Write ``adapter`` to ``root/<version>`` (content-addressed, idempotent); returns the version."""
    version = adapter.version
    target = root / version
    if (target / CONFIG_FILE).is_file():
        return version
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=f".{version[:12]}."))
    try:
        save_adapter(adapter, staging)
        try:
            staging.rename(target)
        except OSError:
            if not (target / CONFIG_FILE).is_file():  # not a concurrent writer of the same version
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version


def _read_document(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AdapterFileError(f"no adapter at {path.parent}: {path.name} is missing") from exc
    except (OSError, ValueError) as exc:
        raise AdapterFileError(f"cannot read {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise AdapterFileError(f"{path} is not a videoseek adapter config (format {FORMAT!r})")
    if document.get("format_version") != FORMAT_VERSION:
        raise AdapterFileError(
            f"{path} has format_version {document.get('format_version')!r}; this videoseek reads {FORMAT_VERSION}"
        )
    return document


def load_adapter(directory: Path, expected_base: BaseModelIdentity | None = None) -> AdapterFile:
    """Read and verify an adapter directory; with ``expected_base``, refuse an adapter of another base model."""
    directory = Path(directory)
    document = _read_document(directory / CONFIG_FILE)
    recorded_version = document.pop("version", None)
    try:
        weights = (directory / WEIGHTS_FILE).read_bytes()
    except OSError as exc:
        raise AdapterFileError(f"cannot read {directory / WEIGHTS_FILE}: {exc}") from exc
    version = _content_version(weights, document)
    if recorded_version is not None and recorded_version != version:
        raise AdapterFileError(
            f"{directory}: contents do not match the recorded version {str(recorded_version)[:12]} "
            "(file changed or corrupt); re-export the adapter"
        )
    try:
        tensors = load_safetensors(weights)
        adapter = AdapterFile(
            config=AdapterConfig.from_dict(document["adapter"]),
            base=BaseModelIdentity.from_dict(document["base_model"]),
            shape=BackboneShape.from_dict(document["backbone"]),
            tensors=tensors,
            metadata=document.get("metadata", {}),
            _version=version,
        )
    except (SafetensorError, KeyError, TypeError, AdapterConfigError) as exc:
        raise AdapterFileError(f"{directory} is not a valid adapter: {exc}") from exc
    if expected_base is not None:
        adapter.check_base(expected_base)
    return adapter

"""Where a bank gets an adapter that is not resident: a loader, e.g. one reading the data directory."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from videoseek.adapter.files import AdapterFile, AdapterFileError, load_adapter
from videoseek.clip import BaseModelIdentity

AdapterLoader = Callable[[str], AdapterFile]
_VERSION_RE = re.compile(r"[0-9a-f]{64}")


class AdapterNotFound(LookupError):
    """An adapter version is neither resident nor loadable."""


def directory_loader(root: Path, base: BaseModelIdentity) -> AdapterLoader:
    """A loader reading ``root/<version>`` (the layout ``store_adapter`` writes), checked against ``base``."""

    def load(version: str) -> AdapterFile:
        if not _VERSION_RE.fullmatch(version):
            raise AdapterNotFound(f"invalid adapter version {version!r}: expected a sha256 hex digest")
        adapter = load_adapter(root / version, expected_base=base)
        if adapter.version != version:
            raise AdapterFileError(f"{root / version} holds adapter {adapter.version}, not {version}")
        return adapter

    return load

"""The Edge store's catalog on disk: aliases and per-version metadata, as small JSON files.

Qdrant Edge has one shard per directory and no notion of collections or aliases, so the store keeps them:

    <root>/aliases.json          {"format": 1, "aliases": {"<name>": "vs__<name>__<n>"}}
    <root>/vs__<name>__<n>/      one Edge shard per physical version
    <root>/vs__<name>__<n>.json  that version's VersionMeta
    <root>/frames/vs__<name>__<n>/  that version's frame vectors, an Edge shard of their own (versions made
                                 before issue 17's split have none: their frames are in the main shard)

Every write goes to a temporary file that replaces the old one with ``os.replace``, so a crash leaves either
the old or the new file, never half of one: switching an alias is atomic.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from videoseek.store.base import StoreError, VersionMeta, parse_physical, physical_name

ALIASES_FILE = "aliases.json"
FRAMES_DIR = "frames"
_FORMAT = 1


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)  # atomic on POSIX: readers see the old or the new file
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StoreError(f"cannot read {path}: {exc}; restore it from a backup or delete the store") from exc
    if not isinstance(data, dict):
        raise StoreError(f"{path} is not a JSON object; restore it from a backup or delete the store")
    return data


class EdgeCatalog:
    """Aliases and version metadata under one root directory. Not locked: the store serialises writers."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._aliases_path = root / ALIASES_FILE
        self._aliases = self._load_aliases()

    def _load_aliases(self) -> dict[str, str]:
        if not self._aliases_path.exists():
            return {}
        data = _read_json(self._aliases_path)
        if data.get("format") != _FORMAT or not isinstance(data.get("aliases"), dict):
            raise StoreError(f"{self._aliases_path}: unknown catalog format {data.get('format')!r}")
        return {str(k): str(v) for k, v in data["aliases"].items()}

    # aliases ---------------------------------------------------------------------------------------

    def aliases(self) -> dict[str, str]:
        return dict(self._aliases)

    def alias(self, name: str) -> str | None:
        return self._aliases.get(name)

    def set_alias(self, name: str, physical: str | None) -> None:
        """Point ``name`` at ``physical`` (None removes it), durably and atomically."""
        aliases = dict(self._aliases)
        if physical is None:
            aliases.pop(name, None)
        else:
            aliases[name] = physical
        write_json_atomic(self._aliases_path, {"format": _FORMAT, "aliases": aliases})
        self._aliases = aliases

    # versions --------------------------------------------------------------------------------------

    def shard_dir(self, physical: str) -> Path:
        return self.root / physical

    def frames_dir(self, physical: str) -> Path:
        """Where a version keeps its frames shard, outside ``root``'s own entries so ``versions`` never sees it."""
        return self.root / FRAMES_DIR / physical

    def _meta_path(self, physical: str) -> Path:
        return self.root / f"{physical}.json"

    def read_meta(self, physical: str) -> VersionMeta | None:
        path = self._meta_path(physical)
        return VersionMeta.from_json(_read_json(path)) if path.exists() else None

    def write_meta(self, physical: str, meta: VersionMeta) -> None:
        write_json_atomic(self._meta_path(physical), meta.to_json())

    def versions(self, name: str) -> list[str]:
        """Every physical version of ``name`` on disk, active, pending or left over from a crash."""
        found: set[str] = set()
        for entry in self.root.iterdir():
            stem = entry.name.removesuffix(".json")
            parsed = parse_physical(stem)
            if parsed is not None and parsed[0] == name:
                found.add(stem)
        return sorted(found, key=lambda p: parse_physical(p)[1])  # type: ignore[index]

    def next_physical(self, name: str) -> str:
        used = [parse_physical(p)[1] for p in self.versions(name)]  # type: ignore[index]
        return physical_name(name, max(used, default=0) + 1)

    def remove_version_files(self, physical: str) -> None:
        """Drop a version's metadata; the caller removes the (closed) shard directory first."""
        self._meta_path(physical).unlink(missing_ok=True)

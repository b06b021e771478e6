"""A collection's versions as its owner sees them: the live one and the earlier ones kept for rollback.

A switch (re-index, retrain) keeps the version that served before (``AdapterSettings.versions_kept`` of them),
so putting one back is a switch of the alias plus the few videos that changed since
(:func:`videoseek.reindex.rollback_to_version`). Each version names its adapter; what the retrain measured
about that adapter (the guard's validation, the pairs it learned from) is kept beside the adapter's files as
``training.json`` and listed with every version that uses it.

That record also says how the version's searches pool a clip's frames (``serving.pooling``): a retrain picks
the pooling that ranks the collection's own dev pairs best (``training/retrain.py``), so a rollback puts back
the pooling with the vectors. A version without one (plain CLIP, an adapter made elsewhere, a retrain told not
to choose) is searched with ``settings.search.pooling``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from videoseek.layout import DataLayout
from videoseek.pooling_defaults import POOLINGS, Pooling
from videoseek.store import ClipStore, VersionInfo

log = logging.getLogger(__name__)

TRAINING_RECORD = "training.json"  # beside adapter_config.json: not part of the adapter's content hash


class NoVersionToRestore(LookupError):
    """The collection has no earlier version to put back (or not the one asked for)."""


@dataclass(frozen=True)
class VersionView:
    """One version with what its adapter's training recorded (None: plain CLIP, or an adapter made elsewhere)."""

    info: VersionInfo
    record: dict[str, Any] | None


def write_training_record(layout: DataLayout, adapter_version: str, record: dict[str, Any]) -> None:
    """Keep what a retrain measured beside the installed adapter (rewritten by a later retrain that makes the
    same adapter again)."""
    path = layout.adapter_dir(adapter_version) / TRAINING_RECORD
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)


def read_training_record(layout: DataLayout, adapter_version: str | None) -> dict[str, Any] | None:
    if adapter_version is None:
        return None
    path: Path = layout.adapter_dir(adapter_version) / TRAINING_RECORD
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:  # a damaged record costs its metrics, never the listing
        log.warning("cannot read %s: %s", path, exc)
        return None
    return record if isinstance(record, dict) else None


def version_pooling(
    layout: DataLayout, adapter_version: str | None, default: Pooling, *, use_chosen: bool = True
) -> Pooling:
    """The pooling the searches of a version with ``adapter_version`` use: its retrain's choice (where
    ``use_chosen``: ``adapters.choose_pooling``), else ``default`` (``search.pooling``)."""
    if not use_chosen or adapter_version is None:
        return default
    return recorded_pooling(read_training_record(layout, adapter_version), default)


def recorded_pooling(record: dict[str, Any] | None, default: Pooling, *, use_chosen: bool = True) -> Pooling:
    """:func:`version_pooling` of a version whose adapter's training record is ``record`` (None: none; a
    damaged or missing ``serving.pooling``: ``default``)."""
    serving = (record or {}).get("serving") if use_chosen else None
    pooling = serving.get("pooling") if isinstance(serving, dict) else None
    return next((known for known in POOLINGS if pooling == known), default)  # the Literal's own value


def list_versions(store: ClipStore, layout: DataLayout, name: str) -> list[VersionView]:
    """The live version first, then the kept ones, most recently served first."""
    return [
        VersionView(info, read_training_record(layout, info.adapter_version))
        for info in store.list_versions(name)
    ]


def rollback_target(store: ClipStore, name: str, physical: str | None = None) -> VersionInfo:
    """The kept version a rollback puts back: ``physical``, or by default the one that served most recently.

    Raises ``NoVersionToRestore`` (with what to do) and ``CollectionNotFound``.
    """
    versions = store.list_versions(name)
    kept = [v for v in versions if not v.live]
    if physical is None:
        if not kept:
            raise NoVersionToRestore(
                f"collection {name!r} has no earlier version to roll back to: versions are kept from the "
                "next re-index or retrain on"
            )
        return kept[0]
    for version in kept:
        if version.physical == physical:
            return version
    live = next(v.physical for v in versions if v.live)
    if physical == live:
        raise NoVersionToRestore(f"{physical!r} is the live version of {name!r} already")
    raise NoVersionToRestore(
        f"{physical!r} is not a version of {name!r} kept for rollback; kept: "
        f"{', '.join(v.physical for v in kept) or 'none'}"
    )

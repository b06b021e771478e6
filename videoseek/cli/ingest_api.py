"""``videoseek ingest --api URL``: the same ingest, through a running server's HTTP API instead of the data dir.

What a user runs while ``videoseek serve`` holds the data directory (an embedded data directory admits one
writing process): the files are uploaded (``POST /collections/{name}/videos``, created first with
``POST /collections`` if missing) and their jobs followed with ``GET /jobs/{id}``, so the summary is the one
the local mode prints. A full ingest queue (429) is waited out as its ``Retry-After`` says.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from videoseek.cli.api_client import ApiClient, ApiError
from videoseek.cli.common import fail
from videoseek.cli.ingest_captions import upload_field
from videoseek.cli.ingest_summary import Entry
from videoseek.jobs import Job, JobStage
from videoseek.pairs import PairDraft

# Answers about one file (too big, not a video, bad metadata): that file fails, the others go on.
_FILE_REFUSALS = frozenset({413, 415, 422})
_DEFAULT_RETRY_S = 2.0


def ensure_collection_via_api(client: ApiClient, name: str, adapter: Path | None) -> None:
    """Create the collection on the server unless it exists; like the local mode, an existing collection must
    already have ``adapter`` (its version is compared) when one is given."""
    info = _collection(client, name)
    if info is None:
        payload: dict[str, Any] = {"name": name}
        if adapter is not None:  # a directory the server reads: the same machine (the embedded server's)
            payload["adapter"] = str(adapter.resolve())
        try:
            client.post_json("/collections", payload)
            return
        except ApiError as exc:
            if exc.status != 409:  # 409: created meanwhile by someone else; check it below
                raise
        info = _collection(client, name)
        if info is None:
            raise fail(f"collection {name!r} was created and deleted again meanwhile: run the command again")
    if adapter is not None:
        from videoseek.adapter import load_adapter

        wanted = load_adapter(adapter).version
        if info.get("adapter_version") != wanted:
            raise fail(
                f"collection {name!r} exists with adapter {info.get('adapter_version') or 'none'}; --adapter "
                "only applies when the collection is created (delete it first, or re-index it with the new "
                "adapter)",
            )


def _collection(client: ApiClient, name: str) -> dict[str, Any] | None:
    try:
        info: dict[str, Any] = client.get(f"/collections/{name}")
    except ApiError as exc:
        if exc.status == 404:
            return None
        raise
    return info


def submit_all_via_api(
    client: ApiClient,
    collection: str,
    entries: list[Entry],
    metadata: dict[str, Any],
    captions: dict[Path, list[PairDraft]] | None = None,
) -> None:
    """Upload every readable entry (with its captions); a file the server refuses fails alone with the
    server's reason."""
    captions = captions or {}
    for entry in entries:
        if entry.failure is not None or entry.path is None:
            continue
        fields = {"metadata": json.dumps(metadata)}
        if captions.get(entry.path):
            fields["captions"] = upload_field(captions[entry.path])
        try:
            accepted = _upload(client, collection, entry.path, fields)
        except OSError as exc:
            entry.failure = f"cannot read the file: {exc.strerror or exc}"
            continue
        except ApiError as exc:
            if exc.status not in _FILE_REFUSALS:
                raise
            entry.failure = exc.reason
            continue
        entry.job_id, entry.video_id = str(accepted["job_id"]), str(accepted["video_id"])


def _upload(client: ApiClient, collection: str, path: Path, fields: dict[str, str]) -> dict[str, Any]:
    while True:
        try:
            accepted: dict[str, Any] = client.upload(f"/collections/{collection}/videos", path, fields)
            return accepted
        except ApiError as exc:
            if exc.status != 429:
                raise
            time.sleep(exc.retry_after_s or _DEFAULT_RETRY_S)  # the server's queue is full: as it asks


def job_getter(client: ApiClient) -> Callable[[str], Job | None]:
    """``job_id -> Job | None`` read from ``GET /jobs/{id}`` (None: the server knows no such job)."""

    def get(job_id: str) -> Job | None:
        try:
            data = client.get(f"/jobs/{job_id}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        return job_from_api(data)

    return get


def job_from_api(data: dict[str, Any]) -> Job:
    """A job resource of the API as the job record the summary reads."""
    # A server without duplicate_of still says duplicate: an owner nobody can look up reads as indexed before.
    duplicate_of = data.get("duplicate_of") or ("" if data.get("duplicate") else None)
    return Job(
        job_id=str(data["job_id"]),
        collection=str(data["collection"]),
        video_id=str(data["video_id"]),
        source=str(data["source"]),
        stage=JobStage(data["stage"]),
        progress=float(data["progress"]),
        reason=data.get("reason"),
        duplicate_of=duplicate_of,
        clips=int(data["clips"]),
        problems=[str(p) for p in data.get("problems", [])],
    )

"""What ``videoseek ingest`` reports, whichever way it ingests (here, or through a server's API): the inputs
it was given, the wait for their jobs, and the summary of what became of each one.

Every file given (and every video file found under a directory given) ends in exactly one list: indexed,
skipped (already in the collection) or failed (with the reason).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from videoseek.jobs import Job

JobLookup = Callable[[str], Job | None]

# What a directory contributes: files with these suffixes (any case), found recursively. Files named
# explicitly are always submitted, whatever their name: the decoder, not the suffix, decides.
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".mpg", ".mpeg", ".wmv", ".flv",
    ".3gp", ".3g2", ".ogv", ".gif", ".ivf", ".mxf", ".asf", ".vob",
    ".264", ".h264", ".265", ".h265", ".hevc",  # raw H.264/H.265 streams (probe.RAW_STREAM_DEMUXERS)
})  # fmt: skip
_POLL_S = 0.25


@dataclass
class Entry:
    """One input file and, once submitted, its job."""

    file: str
    path: Path | None = None
    job_id: str | None = None
    video_id: str | None = None
    failure: str | None = None  # set when the file could not even be submitted


def collect_inputs(paths: list[Path]) -> list[Entry]:
    """Files to ingest, in order, without repeats: given files as they are, directories' video files."""
    entries: list[Entry] = []
    seen: set[Path] = set()

    def add(label: str, path: Path | None, failure: str | None = None) -> None:
        key = path.resolve() if path is not None else None
        if key is not None and key in seen:
            return
        if key is not None:
            seen.add(key)
        entries.append(Entry(label, path, failure=failure))

    for given in paths:
        if given.is_dir():
            found = sorted(
                p
                for p in given.rglob("*")
                if p.is_file()
                and p.suffix.lower() in VIDEO_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(given).parts)
            )
            if not found:
                typer.echo(f"warning: no video files under {given}", err=True)
            for path in found:
                add(str(path), path)
        elif given.is_file():
            add(str(given), given)
        else:
            add(str(given), None, failure="no such file or directory")
    return entries


def wait_for(get_job: JobLookup, entries: list[Entry], timeout: float | None, quiet: bool) -> None:
    """Wait until every submitted job is finished (or ``timeout``), showing progress on stderr."""
    from tqdm import tqdm

    waiting = {e.job_id for e in entries if e.job_id is not None}
    deadline = None if timeout is None else time.monotonic() + timeout
    with tqdm(total=len(entries), desc="ingest", unit="file", file=sys.stderr, disable=quiet) as bar:
        bar.update(len(entries) - len(waiting))
        while waiting:
            for job_id in list(waiting):
                job = get_job(job_id)
                if job is None or job.stage.terminal:
                    waiting.discard(job_id)
                    bar.update(1)
                elif not quiet:
                    bar.set_postfix_str(f"{job.source}: {job.stage} {job.progress:.0%}", refresh=False)
            if waiting and deadline is not None and time.monotonic() > deadline:
                return
            if waiting:
                time.sleep(_POLL_S)


def summarize(
    get_job: JobLookup, entries: list[Entry], timeout: float | None, unfinished: str
) -> dict[str, list[dict[str, Any]]]:
    """The three lists; a duplicate of a file whose own ingest failed counts as failed with that reason.

    ``unfinished`` says what becomes of a job still running when the wait ends."""
    from videoseek.jobs import JobStage

    summary: dict[str, list[dict[str, Any]]] = {"indexed": [], "skipped": [], "failed": []}
    for entry in entries:
        job = get_job(entry.job_id) if entry.job_id else None
        base = {"file": entry.file, "video_id": entry.video_id, "job_id": entry.job_id}
        if entry.failure is not None or job is None:
            summary["failed"].append({**base, "reason": entry.failure or "the job record disappeared"})
        elif not job.stage.terminal:
            summary["failed"].append(
                {**base, "reason": f"not finished after {timeout} s (still {job.stage}; {unfinished})"}
            )
        elif job.stage is JobStage.FAILED:
            summary["failed"].append({**base, "reason": job.reason or "failed"})
        elif job.duplicate:
            owner = get_job(job.duplicate_of) if job.duplicate_of else None
            if owner is not None and owner.stage is JobStage.FAILED:
                summary["failed"].append({**base, "reason": owner.reason or "failed"})
            else:
                summary["skipped"].append(
                    {**base, "duplicate_of": job.duplicate_of, "reason": "already indexed"}
                )
        else:
            summary["indexed"].append({**base, "clips": job.clips, "problems": list(job.problems)})
    return summary


def print_summary(summary: dict[str, list[dict[str, Any]]]) -> None:
    for item in summary["indexed"]:
        typer.echo(f"indexed  {item['file']}  ({item['clips']} clips, video {item['video_id'][:12]})")
        for problem in item.get("problems", []):  # indexed, but part of the file did not decode
            typer.echo(f"         partly: {problem}")
    for item in summary["skipped"]:
        typer.echo(f"skipped  {item['file']}  (already in the collection as {item['video_id'][:12]})")
    for item in summary["failed"]:
        typer.echo(f"failed   {item['file']}: {item['reason']}")
    counts = {k: len(v) for k, v in summary.items()}
    damaged = sum(1 for item in summary["indexed"] if item.get("problems"))
    partly = f" ({damaged} with parts that did not decode)" if damaged else ""
    typer.echo(f"{counts['indexed']} indexed{partly}, {counts['skipped']} skipped, {counts['failed']} failed")

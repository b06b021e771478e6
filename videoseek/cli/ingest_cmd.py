"""``videoseek ingest``: index local video files into a collection and report what became of each one.

Runs the pipeline in this process (embedded mode, holding the data directory: see
:mod:`videoseek.data_dir_lock`), hands jobs to Celery workers (``VIDEOSEEK_REDIS_URL`` set), or with
``--api URL`` uploads the files to a running server (``ingest_api.py``), and waits for them; ``--captions``
stores captions of the files as their training pairs (``ingest_captions.py``). Every file given
(and every video file found under a directory given) ends in exactly one list of the summary: indexed, skipped
(already in the collection) or failed (with the reason).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from videoseek.cli.api_client import ApiError
from videoseek.cli.common import fail, hold_data_dir
from videoseek.cli.ingest_captions import CaptionFileError, captions_by_file
from videoseek.cli.ingest_summary import Entry, collect_inputs, print_summary, summarize, wait_for
from videoseek.pairs import PairDraft
from videoseek.runtime.base import Runtime
from videoseek.settings import Settings, SettingsError, load_settings


def ensure_collection(runtime: Runtime, name: str, adapter: Path | None) -> None:
    """Create the collection (settings' model, optional adapter) unless it exists with a matching adapter."""
    from videoseek.collections import create_collection, get_collection, install_adapter

    context = runtime.context
    info = get_collection(context.store, name)
    if info is None:
        create_collection(context, name, adapter)
        return
    if adapter is not None and install_adapter(context.settings, adapter) != info.adapter_version:
        raise fail(
            f"collection {name!r} exists with adapter {info.adapter_version or 'none'}; --adapter only applies "
            "when the collection is created (delete it first, or re-index it with the new adapter)"
        )


def submit_all(
    runtime: Runtime,
    collection: str,
    entries: list[Entry],
    metadata: dict[str, Any],
    captions: dict[Path, list[PairDraft]] | None = None,
) -> None:
    captions = captions or {}
    for entry in entries:
        if entry.failure is not None or entry.path is None:
            continue
        pairs = captions.get(entry.path, [])
        try:
            result = runtime.submit_ingest(collection, entry.path, entry.path.name, metadata, pairs=pairs)
        except OSError as exc:
            entry.failure = f"cannot read the file: {exc.strerror or exc}"
            continue
        entry.job_id, entry.video_id = result.job_id, result.video_id


def ingest(
    paths: Annotated[
        list[Path], typer.Argument(help="Video files and/or directories (searched recursively).")
    ],
    collection: Annotated[str, typer.Option("--collection", "-c", help="Collection (created if missing).")],
    adapter: Annotated[
        Path | None, typer.Option(help="Adapter directory for a NEW collection (copied into the data dir).")
    ] = None,
    metadata: Annotated[
        str | None, typer.Option(help="JSON object stored with every clip, e.g. '{\"a\": 1}'.")
    ] = None,
    captions: Annotated[
        Path | None,
        typer.Option(
            help='A captions.jsonl file (the training manifest\'s format: {"video", "caption", "start_s"?, '
            '"end_s"?} a line): each caption is stored as a training pair of the file it names (a path relative '
            "to the captions file, or a file name)."
        ),
    ] = None,
    timeout: Annotated[float | None, typer.Option(help="Stop waiting after this many seconds.")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the summary as one JSON object.")
    ] = False,
    api: Annotated[
        str | None,
        typer.Option(
            help="Upload the files to the videoseek server at this URL (e.g. http://127.0.0.1:8000) instead "
            "of writing the data directory: what to use while `videoseek serve` runs on it."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="VIDEOSEEK_API_KEY", help="With --api: an API key with the ingest scope."),
    ] = None,
) -> None:
    """Index video files into a collection; exit status 1 if any file failed."""
    try:
        user_metadata = _parse_metadata(metadata)
        settings = None if api is not None else load_settings()
    except (SettingsError, ValueError) as exc:
        raise fail(str(exc)) from exc
    entries = collect_inputs(paths)
    try:
        drafts = {} if captions is None else captions_by_file(captions, entries)
    except CaptionFileError as exc:
        raise fail(str(exc)) from exc
    work = (entries, user_metadata, drafts)
    try:
        if api is not None:
            summary = _run_via_api(api, api_key, collection, adapter, work, timeout, json_output)
        else:
            assert settings is not None
            summary = _run_here(settings, collection, adapter, work, timeout, json_output)
    except typer.Exit:
        raise
    except ApiError as exc:
        said = exc.reason if exc.status == 0 else f"the server at {api} answered {exc.status}: {exc.reason}"
        raise fail(said) from exc
    except Exception as exc:  # store locked, model missing, Redis down: one line, not a traceback
        raise fail(f"{type(exc).__name__}: {exc}") from exc
    if json_output:
        typer.echo(json.dumps(summary))
    else:
        print_summary(summary)
    if summary["failed"]:
        raise typer.Exit(code=1)


def _parse_metadata(text: str | None) -> dict[str, Any]:
    """--metadata, checked by the same rules as an upload's; ValueError naming the rule and where it broke."""
    from videoseek.metadata import InvalidMetadata, parse_metadata

    if text is None:
        return {}
    try:
        return parse_metadata(text)
    except InvalidMetadata as exc:
        raise ValueError(f"--metadata breaks the {exc.rule!s} rule: {exc}") from exc


def _send_through(collection: str) -> Callable[[str], str]:
    """What ``ingest`` suggests when a server holds the data directory: the same files through its API."""
    return lambda url: (
        f", or send the files through the running server: videoseek ingest --api {url} "
        f"--collection {collection} FILE..."
    )


# What to ingest: the entries, the metadata every clip gets, and the captions of each file.
Work = tuple[list[Entry], dict[str, Any], dict[Path, list[PairDraft]]]


def _run_here(
    settings: Settings,
    collection: str,
    adapter: Path | None,
    work: Work,
    timeout: float | None,
    quiet: bool,
) -> dict[str, list[dict[str, Any]]]:
    from videoseek.cli.runtime import open_runtime, run_mode

    if run_mode(settings) == "embedded":  # this process embeds the videos: its model must load
        from videoseek.cli.models_cmd import ensure_model

        ensure_model(settings)
    # Room for every file: the command waits for all of them anyway, and must never be refused.
    runtime = open_runtime(settings, queue_size=max(len(work[0]), settings.worker.queue_size))
    try:
        hold_data_dir(runtime, "videoseek ingest", _send_through(collection))  # embedded: before any write
        ensure_collection(runtime, collection, adapter)
        return _run(runtime, collection, work, timeout, quiet)
    finally:
        runtime.close()


def _run(
    runtime: Runtime, collection: str, work: Work, timeout: float | None, quiet: bool
) -> dict[str, list[dict[str, Any]]]:
    entries, metadata, captions = work
    runtime.start()
    submit_all(runtime, collection, entries, metadata, captions)
    if runtime.runs_elsewhere:
        runtime.context.release_store()  # the workers write now (an embedded Edge store admits one process)
    jobs = runtime.context.jobs
    started = time.monotonic()
    wait_for(jobs.get, entries, timeout, quiet)
    # Embedded: the playback copies of videos browsers cannot play are written after indexing; wait for them
    # too rather than cut one off at the stop (it would be written again at the next start).
    runtime.wait_idle(None if timeout is None else max(0.0, timeout - (time.monotonic() - started)))
    then = "a worker keeps running it" if runtime.runs_elsewhere else "it resumes at the next run"
    return summarize(jobs.get, entries, timeout, then)


def _run_via_api(
    url: str,
    api_key: str | None,
    collection: str,
    adapter: Path | None,
    work: Work,
    timeout: float | None,
    quiet: bool,
) -> dict[str, list[dict[str, Any]]]:
    from videoseek.cli.api_client import ApiClient
    from videoseek.cli.ingest_api import ensure_collection_via_api, job_getter, submit_all_via_api

    entries, metadata, captions = work
    client = ApiClient(url, api_key)
    ensure_collection_via_api(client, collection, adapter)
    submit_all_via_api(client, collection, entries, metadata, captions)
    get_job = job_getter(client)
    wait_for(get_job, entries, timeout, quiet)
    return summarize(get_job, entries, timeout, "the server keeps running it")


def register(app: typer.Typer) -> None:
    app.command("ingest")(ingest)

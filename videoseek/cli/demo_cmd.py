"""``videoseek demo``: a toy video collection with its adapter, indexed and served, with example queries that work.

The demo is always embedded (one process, no Redis, Qdrant Edge under ``--data-dir``) and needs no downloads: it
uses the committed toy CLIP and, when this checkout has it, the committed toy adapter
(:mod:`videoseek.toy.adapter`). The example queries it prints are checked against the running server first,
so a user who tries them sees the right clip.

``videoseek demo --api URL`` instead seeds the same collection on a server that is already running (what the
compose file's one-shot ``demo-seed`` does): created through the API with the toy adapter if that server accepts
it, the videos uploaded and followed to the end, the working examples printed; nothing is served.
"""

from __future__ import annotations

import functools
import json
import time
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from videoseek.cli.common import cli_settings, fail
from videoseek.cli.runtime import training_work
from videoseek.cli.serve_cmd import (
    base_url,
    check_serve_settings,
    hold_for_serving,
    port_free,
    prefer_passive_openmp_wait,
    run_server,
)
from videoseek.context import PipelineContext
from videoseek.examples import write_examples
from videoseek.layout import DataLayout
from videoseek.model_spec import ModelSpec
from videoseek.runtime.embedded import EmbeddedRuntime
from videoseek.settings import QdrantSettings, SearchSettings, Settings

DEMO_COLLECTION = "demo"
DEMO_SEED = 7
EXAMPLES = 3
PAGE_EXAMPLES = 8  # checked captions the web page offers under the search box
READY_TIMEOUT_S = 180.0


def demo_search(search: SearchSettings) -> SearchSettings:
    """The demo's search: mean pooling unless ``VIDEOSEEK_SEARCH__POOLING`` says otherwise. On the toy world it
    puts the right video first for 33.6% of the 500-video demo's captions, text-conditioned pooling for 19.8%
    (docs/benchmarks.md "Pooling on the toy world"); the paper's result for text-conditioned pooling is on real
    footage with a web-scale CLIP, which is what ``settings.search.pooling``'s default keeps."""
    return search if "pooling" in search.model_fields_set else search.model_copy(update={"pooling": "mean"})


def _usable_adapter(settings: Settings, adapter: Path | None) -> Path | None:
    """The adapter if it fits the toy CLIP this package ships; otherwise a warning and plain CLIP."""
    if adapter is None:
        return None
    from videoseek.adapter import AdapterFileError, load_adapter
    from videoseek.clip import get_clip

    try:
        load_adapter(adapter, expected_base=get_clip(settings.model, settings.device).identity)
    except AdapterFileError as exc:
        typer.echo(f"warning: not using the toy adapter in {adapter}: {exc}", err=True)
        return None
    return adapter


def _generate(videos_dir: Path, count: int, with_adapter: bool) -> list[dict[str, Any]]:
    """Held-out domain B videos drawn like the adapter's training data, or domain A ones for plain CLIP."""
    from videoseek.toy.adapter import DEMO_KNOWN_WORD_RATE
    from videoseek.toy.generate import MANIFEST_NAME, generate_videos

    manifest = videos_dir / MANIFEST_NAME
    marker = videos_dir / ".demo.json"
    domain, known = ("B", DEMO_KNOWN_WORD_RATE) if with_adapter else ("A", 1.0)
    wanted = {"count": count, "domain": domain, "seed": DEMO_SEED, "known_word_rate": known}
    if not (manifest.is_file() and marker.is_file() and json.loads(marker.read_text()) == wanted):
        typer.echo(f"generating {count} toy videos in {videos_dir} ...")
        generate_videos(videos_dir, count, DEMO_SEED, domain=domain, split="test", known_word_rate=known)
        marker.write_text(json.dumps(wanted))
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def _ensure_collection(context: PipelineContext, adapter: Path | None) -> None:
    from videoseek.adapter import load_adapter
    from videoseek.collections import create_collection, delete_collection
    from videoseek.store import CollectionNotFound

    wanted_version = load_adapter(adapter).version if adapter is not None else None
    try:
        info = context.store.get_collection(DEMO_COLLECTION)
    except CollectionNotFound:
        create_collection(context, DEMO_COLLECTION, adapter_dir=adapter)
        return
    if info.adapter_version != wanted_version:  # the demo changed since last time: start over
        delete_collection(context, DEMO_COLLECTION)
        create_collection(context, DEMO_COLLECTION, adapter_dir=adapter)


def _ingest(runtime: EmbeddedRuntime, videos_dir: Path, records: list[dict[str, Any]]) -> None:
    from videoseek.jobs import JobStage

    jobs = runtime.context.jobs
    started = time.monotonic()
    job_ids = []
    for record in records:
        result = runtime.submit_ingest(DEMO_COLLECTION, videos_dir / record["video"])
        if not result.duplicate:
            job_ids.append(result.job_id)
    if job_ids:
        typer.echo(f"ingesting {len(job_ids)} videos (embedded worker) ...")
        runtime.runner.join()
    failed = [j for j in (jobs.get(i) for i in job_ids) if j is not None and j.stage is JobStage.FAILED]
    for job in failed:
        typer.echo(f"  warning: {job.source}: {job.reason}", err=True)
    typer.echo(f"collection '{DEMO_COLLECTION}' ready in {time.monotonic() - started:.1f}s")


def _request(url: str, payload: dict[str, Any] | None = None) -> Any:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_ready(base: str) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            _request(base + "readyz")
            return True
        except (urllib.error.URLError, OSError):
            time.sleep(0.25)
    return False


def working_examples(
    base: str, records: list[dict[str, Any]], search: Callable[[dict[str, Any]], Any] | None = None
) -> list[str]:
    """The captions whose own video the running server ranks first (searched as a user would).

    ``search(body)``: how to POST /search (default: unauthenticated, to ``base``)."""
    search = search or functools.partial(_request, base + "search")
    working = []
    for record in records:
        body = search({"collection": DEMO_COLLECTION, "query": record["caption"], "limit": 1})
        top = body["results"][0]["source_name"] if body["results"] else None
        if top == Path(record["video"]).name:
            working.append(str(record["caption"]))
    return working


def _announce(
    base: str, records: list[dict[str, Any]], adapter: Path | None, open_browser: bool, layout: DataLayout
) -> None:
    """Print example queries checked against the running server, offer them on the page (the collection's
    example queries), then open the first in a browser."""
    if not _wait_ready(base):
        typer.echo(f"\nOpen {base} (the server did not report ready in {READY_TIMEOUT_S:.0f}s)")
        return
    working = working_examples(base, records)
    write_examples(layout, DEMO_COLLECTION, working[:PAGE_EXAMPLES])
    which = "the toy adapter" if adapter else "no adapter, plain toy CLIP"
    typer.echo(f"\n{len(working)} of {len(records)} demo captions find their own video first ({which}).")
    examples = working[:: max(1, len(working) // EXAMPLES)][:EXAMPLES]
    links = [f"{base}?collection={DEMO_COLLECTION}&q={quote(q)}" for q in examples]
    typer.echo(f"Open {base} and try:")
    for query, link in zip(examples, links, strict=True):
        typer.echo(f'  "{query}"\n      {link}')
    typer.echo("(Ctrl+C stops the server)")
    if open_browser:
        webbrowser.open(links[0] if links else base)


def _seed_via_api(settings: Settings, api: str, api_key: str | None, count: int) -> None:
    """The demo collection on a running server (``docker compose up`` runs this once): created with the toy
    adapter if the server accepts it, filled with the toy videos uploaded through its API, examples checked."""
    from videoseek.cli.api_client import ApiClient, ApiError
    from videoseek.cli.ingest_api import ensure_collection_via_api, job_getter, submit_all_via_api
    from videoseek.cli.ingest_summary import collect_inputs, print_summary, summarize, wait_for
    from videoseek.toy.adapter import toy_adapter_dir

    client = ApiClient(api, api_key)
    try:
        existing = _demo_videos_on(client)
        if existing:
            typer.echo(
                f"collection '{DEMO_COLLECTION}' on {api} already has {existing} videos: nothing to seed"
            )
            return
        adapter = _usable_adapter(settings, toy_adapter_dir())
        try:
            ensure_collection_via_api(client, DEMO_COLLECTION, adapter)
        except ApiError as exc:
            if adapter is None or exc.status != 422:
                raise
            typer.echo(
                f"warning: the server refused the toy adapter ({exc.reason}); plain CLIP then", err=True
            )
            adapter = None
            ensure_collection_via_api(client, DEMO_COLLECTION, None)
        videos_dir = settings.data_dir / "toy-videos"
        records = _generate(videos_dir, count, with_adapter=adapter is not None)
        entries = collect_inputs([videos_dir / record["video"] for record in records])
        submit_all_via_api(client, DEMO_COLLECTION, entries, {})
        get_job = job_getter(client)
        wait_for(get_job, entries, None, False)
        print_summary(summarize(get_job, entries, None, "the server keeps running it"))
        working = working_examples(api, records, functools.partial(client.post_json, "/search"))
    except ApiError as exc:
        said = exc.reason if exc.status == 0 else f"the server at {api} answered {exc.status}: {exc.reason}"
        raise fail(said) from exc
    typer.echo(f"{len(working)} of {len(records)} demo captions find their own video first; try:")
    for query in working[:EXAMPLES]:
        typer.echo(f'  "{query}"')


def _demo_videos_on(client: Any) -> int:
    from videoseek.cli.api_client import ApiError

    try:
        return int(client.get(f"/collections/{DEMO_COLLECTION}").get("videos") or 0)
    except ApiError as exc:
        if exc.status == 404:
            return 0
        raise


def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its videos and index.")] = Path(
        "videoseek-demo"
    ),
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    videos: Annotated[int, typer.Option(min=1, max=500, help="How many toy videos to generate.")] = 24,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    api: Annotated[
        str | None,
        typer.Option(
            help="Seed the demo collection on the running server at this URL instead (through its API; "
            "what `docker compose up` does); nothing is served."
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="VIDEOSEEK_API_KEY", help="With --api: a key with the admin and ingest scopes."),
    ] = None,
) -> None:
    """Generate a toy video collection, index it with its adapter, and serve it with example queries."""
    from videoseek.toy.adapter import toy_adapter_dir

    prefer_passive_openmp_wait()
    # The demo is always embedded, whatever VIDEOSEEK_REDIS_URL / QDRANT__URL this shell has.
    settings = cli_settings(data_dir=data_dir, model=ModelSpec.parse("toy"), host=host, port=port)
    settings = settings.model_copy(
        update={"redis_url": None, "qdrant": QdrantSettings(), "search": demo_search(settings.search)}
    )
    if api is not None:
        _seed_via_api(settings, api, api_key, videos)
        return
    check_serve_settings(settings, host)
    # One runtime for the whole demo: it ingests the videos, then the server runs on it (an Edge store admits
    # one opener). It holds the data directory from the first write (the collection) until the server stops.
    # The demo queues all its videos at once, faster than the worker threads take them: the queue holds them all.
    queue_size = max(settings.worker.queue_size, videos)
    runtime = EmbeddedRuntime(settings.for_api(), training_work(), queue_size=queue_size)
    hold_for_serving(runtime, "videoseek demo", host, port)
    if not port_free(host, port):
        raise fail(
            f"port {port} on {host} is in use: pass --port with a free port (`make demo PORT={port + 1}` "
            "through make)"
        )
    adapter = _usable_adapter(settings, toy_adapter_dir())
    records = _generate(data_dir / "toy-videos", videos, with_adapter=adapter is not None)
    _ensure_collection(runtime.context, adapter)
    runtime.start()
    _ingest(runtime, data_dir / "toy-videos", records)
    base = base_url(host, port) + "/"
    announce = functools.partial(
        _announce, base, records, adapter, not no_browser, DataLayout(settings.data_dir)
    )
    run_server(runtime, host, port, "warning", on_started=announce)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)

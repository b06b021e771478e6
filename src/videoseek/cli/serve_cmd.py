"""``videoseek serve`` (the API + web page) and ``videoseek demo`` (a toy collection, ingested and served).

``serve`` with no configuration runs everything in one process: the API, the ingest worker thread and Qdrant
Edge under the data directory. With ``VIDEOSEEK_REDIS_URL`` and ``VIDEOSEEK_QDRANT__URL`` set it runs only the
API; ingest tasks go to Celery workers (``videoseek worker``).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import webbrowser
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from videoseek.core.model_spec import ModelSpec
from videoseek.core.settings import QdrantSettings, Settings, SettingsError, load_settings

log = logging.getLogger("videoseek.cli")

DEMO_COLLECTION = "demo"
DEMO_SEED = 7


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=code)


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise _fail(str(exc)) from exc


def check_serve_settings(settings: Settings, host: str) -> None:
    """Refuse configurations that would be unsafe or cannot work, with the fix in the message."""
    from videoseek.service.main import bind_is_safe

    if not bind_is_safe(settings, host):
        raise _fail(
            f"no API keys are configured, so the embedded server only listens on this machine; refusing "
            f'--host {host}. Set VIDEOSEEK_API_KEYS (e.g. \'[{{"key": "...", "scopes": ["admin"]}}]\') '
            "or use --host 127.0.0.1"
        )
    if not settings.embedded and not settings.qdrant.url:
        raise _fail(
            "VIDEOSEEK_REDIS_URL is set (distributed mode) but VIDEOSEEK_QDRANT__URL is not: Celery workers "
            "cannot share the embedded store. Set a Qdrant URL, or unset the Redis URL for embedded mode"
        )


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def run_server(settings: Settings, host: str, port: int, log_level: str, on_started: Any = None) -> None:
    """Serve the app with uvicorn in this process until interrupted."""
    import uvicorn

    from videoseek.service.main import create_app

    if not _port_free(host, port):
        raise _fail(f"port {port} on {host} is in use: pass --port with a free port")
    app = create_app(settings)
    mode = (
        "embedded: API + ingest worker thread + Qdrant Edge" if settings.embedded else "distributed: API only"
    )
    typer.echo(f"videoseek serving http://{_url_host(host)}:{port}/ ({mode}; data in {settings.data_dir})")
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, workers=1, access_log=False)
    server = uvicorn.Server(config)
    if on_started is not None:
        threading.Thread(target=_when_started, args=(server, on_started), daemon=True).start()
    server.run()


def _when_started(server: Any, callback: Any) -> None:
    while not server.started and not server.should_exit:
        time.sleep(0.05)
    if server.started:
        callback()


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: VIDEOSEEK_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: VIDEOSEEK_PORT).")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (default: VIDEOSEEK_DATA_DIR).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model spec, e.g. ViT-B-32:openai or toy.")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Run the search API and web page (embedded mode needs no other service)."""
    settings = _settings(host=host, port=port, data_dir=data_dir, model=model)
    check_serve_settings(settings, settings.host)
    run_server(settings, settings.host, settings.port, log_level)


# ----------------------------------------------------------------------------------------------- demo


def _demo_adapter() -> Path | None:
    """A toy adapter shipped with the package, if one was trained and committed.

    Looked up as ``videoseek.toy.adapter.toy_adapter_dir()`` when the toy package offers it, else as any
    adapter directory (``adapter_config.json`` + ``adapter.safetensors``) under ``videoseek/toy/weights/``.
    """
    try:
        from videoseek.toy import adapter as toy_adapter  # type: ignore[attr-defined]

        found = toy_adapter.toy_adapter_dir()
        return Path(found) if found is not None and Path(found).is_dir() else None
    except (ImportError, AttributeError):
        pass
    weights = Path(__file__).resolve().parents[1] / "toy" / "weights"
    candidates = sorted(p.parent for p in weights.glob("*/adapter_config.json"))
    return candidates[0] if candidates else None


def _usable_adapter(settings: Settings, adapter: Path | None) -> Path | None:
    """The adapter if it fits the toy CLIP this package ships; otherwise a warning and plain CLIP."""
    if adapter is None:
        return None
    from videoseek.core.adapter import AdapterFileError, load_adapter
    from videoseek.core.clip import get_clip

    try:
        load_adapter(adapter, expected_base=get_clip(settings.model, settings.device).identity)
    except AdapterFileError as exc:
        typer.echo(f"warning: not using the toy adapter in {adapter}: {exc}", err=True)
        return None
    return adapter


def _generate(videos_dir: Path, count: int, domain: str) -> list[dict[str, Any]]:
    from videoseek.toy.generate import MANIFEST_NAME, generate_videos

    manifest = videos_dir / MANIFEST_NAME
    marker = videos_dir / ".demo.json"
    wanted = {"count": count, "domain": domain, "seed": DEMO_SEED}
    if not (manifest.is_file() and marker.is_file() and json.loads(marker.read_text()) == wanted):
        typer.echo(f"generating {count} toy videos in {videos_dir} ...")
        generate_videos(videos_dir, count, DEMO_SEED, domain=domain)
        marker.write_text(json.dumps(wanted))
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


def _ensure_collection(settings: Settings, adapter: Path | None) -> None:
    from videoseek.core.collections import create_collection, delete_collection, shared_store
    from videoseek.core.store import CollectionNotFound

    try:
        info = shared_store(settings).get_collection(DEMO_COLLECTION)
    except CollectionNotFound:
        create_collection(settings, DEMO_COLLECTION, adapter_dir=adapter)
        return
    if (info.adapter_version is None) != (adapter is None):  # the demo changed since last time: start over
        delete_collection(settings, DEMO_COLLECTION)
        create_collection(settings, DEMO_COLLECTION, adapter_dir=adapter)


def _ingest(settings: Settings, videos_dir: Path, records: list[dict[str, Any]]) -> None:
    from videoseek.worker.jobs import JobStage, get_job_store
    from videoseek.worker.runner import get_embedded_runner
    from videoseek.worker.submit import submit_ingest

    runner = get_embedded_runner(settings)
    jobs = get_job_store(settings)
    started = time.monotonic()
    job_ids = []
    for record in records:
        result = submit_ingest(DEMO_COLLECTION, videos_dir / record["video"], settings=settings)
        if not result.duplicate:
            job_ids.append(result.job_id)
    if job_ids:
        typer.echo(f"ingesting {len(job_ids)} videos (embedded worker) ...")
        runner.join()
    failed = [j for j in (jobs.get(i) for i in job_ids) if j is not None and j.stage is JobStage.FAILED]
    for job in failed:
        typer.echo(f"  warning: {job.source}: {job.reason}", err=True)
    typer.echo(f"collection '{DEMO_COLLECTION}' ready in {time.monotonic() - started:.1f}s")


def _examples(records: list[dict[str, Any]], n: int = 3) -> list[str]:
    captions = [str(r["caption"]) for r in records if r.get("caption")]
    step = max(1, len(captions) // n)
    return captions[::step][:n]


def demo(
    data_dir: Annotated[Path, typer.Option(help="Where the demo keeps its videos and index.")] = Path(
        "videoseek-demo"
    ),
    port: Annotated[int, typer.Option(help="Port to serve on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    videos: Annotated[int, typer.Option(min=1, max=500, help="How many toy videos to generate.")] = 24,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
) -> None:
    """Generate a toy video collection, index it, and serve it with example queries (no setup needed)."""
    # The demo is always embedded, whatever VIDEOSEEK_REDIS_URL / QDRANT__URL this shell has.
    settings = _settings(data_dir=data_dir, model=ModelSpec.parse("toy"), host=host, port=port).model_copy(
        update={"redis_url": None, "qdrant": QdrantSettings()}
    )
    check_serve_settings(settings, host)
    if not _port_free(host, port):
        raise _fail(f"port {port} on {host} is in use: pass --port with a free port")
    adapter = _usable_adapter(settings, _demo_adapter())
    records = _generate(data_dir / "toy-videos", videos, domain="B" if adapter else "A")
    _ensure_collection(settings, adapter)
    _ingest(settings, data_dir / "toy-videos", records)
    base = f"http://{_url_host(host)}:{port}/"
    typer.echo(f"\nOpen {base} and try (adapter: {'toy adapter' if adapter else 'none, plain toy CLIP'}):")
    links = [f"{base}?collection={DEMO_COLLECTION}&q={quote(q)}" for q in _examples(records)]
    for query, link in zip(_examples(records), links, strict=True):
        typer.echo(f'  "{query}"\n      {link}')
    opener = None if no_browser else (lambda: webbrowser.open(links[0] if links else base))
    run_server(settings, host, port, "warning", on_started=opener)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("demo")(demo)

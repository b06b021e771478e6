"""``videoseek serve``: the API + web page.

``serve`` with no configuration runs everything in one process: the API, the ingest worker thread and Qdrant
Edge under the data directory, which it holds for as long as it runs (one writing process per embedded data
directory: :mod:`videoseek.data_dir_lock`). With ``VIDEOSEEK_REDIS_URL`` and ``VIDEOSEEK_QDRANT__URL`` set
it runs only the API; ingest tasks go to Celery workers (``videoseek worker``).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from videoseek.cli.common import cli_settings, fail, hold_data_dir
from videoseek.runtime.base import Runtime
from videoseek.settings import Settings

if TYPE_CHECKING:
    pass

log = logging.getLogger("videoseek.cli")

DEMO_COLLECTION = "demo"
DEMO_SEED = 7


def check_serve_settings(settings: Settings, host: str) -> None:
    """Refuse configurations that would be unsafe or cannot work, with the fix in the message."""
    from service.main import bind_is_safe
    from videoseek.cli.runtime import distributed_store_problem, run_mode

    if not bind_is_safe(settings, run_mode(settings), host):
        raise fail(
            f"no API keys are configured, so the embedded server only listens on this machine; refusing "
            f'--host {host}. Set VIDEOSEEK_API_KEYS (e.g. \'[{{"key": "...", "scopes": ["admin"]}}]\') '
            "or use --host 127.0.0.1"
        )
    problem = distributed_store_problem(settings)
    if problem is not None:
        raise fail(problem)
    from videoseek.cli.models_cmd import ensure_model

    ensure_model(settings)  # downloads a missing pretrained model first (VIDEOSEEK_MODEL_DOWNLOAD=auto)


def prefer_passive_openmp_wait() -> None:
    """Let idle OpenMP threads sleep instead of spinning, unless ``OMP_WAIT_POLICY`` is set already.

    The API process runs torch on several threads (the query encoder, re-ranking, the embedded ingest runner),
    each with its own OpenMP team. libgomp's default keeps a team's threads spinning after every parallel
    region, so on a small machine the teams take each other's cores: on 2 cores (ViT-B-32, 10k clips) /search
    p50 went from 71 to 50 ms and a cached query from 10.7 to 4.9 ms with passive waiting. libgomp reads the
    variable when torch loads it, so this must run before anything imports torch.
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def base_url(host: str, port: int) -> str:
    """Where a server listening on ``host:port`` answers on this machine."""
    return f"http://{url_host(host)}:{port}"


def _use_the_server(url: str) -> str:
    """What ``serve`` (and ``demo``) suggest when a server holds the data directory already."""
    return f", or use the server it runs at {url} (videoseek ingest --api {url} ... sends files to it)"


def hold_for_serving(runtime: Runtime, command: str, host: str, port: int) -> None:
    """The data directory for this server, recording where it answers (embedded; distributed: nothing)."""
    hold_data_dir(runtime, command, _use_the_server, api_url=base_url(host, port))


def run_server(runtime: Runtime, host: str, port: int, log_level: str, on_started: Any = None) -> None:
    """Serve the app on ``runtime`` with uvicorn in this process until interrupted (the app starts the
    runtime and closes it at shutdown, releasing the data directory it holds)."""
    import uvicorn

    from service.main import access_note, create_app

    settings = runtime.context.settings
    if not port_free(host, port):
        raise fail(f"port {port} on {host} is in use: pass --port with a free port")
    app = create_app(runtime)
    mode = (
        "distributed: API only; Celery workers ingest"
        if runtime.runs_elsewhere
        else "embedded: API + ingest worker thread + Qdrant Edge"
    )
    typer.echo(f"videoseek serving {base_url(host, port)}/ ({mode}; data in {settings.data_dir})")
    typer.echo(access_note(settings, app.state.keys))
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


def url_host(host: str) -> str:
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
    prefer_passive_openmp_wait()
    from videoseek.cli.runtime import open_api_runtime

    settings = cli_settings(host=host, port=port, data_dir=data_dir, model=model)
    check_serve_settings(settings, settings.host)
    runtime = open_api_runtime(settings)
    hold_for_serving(runtime, "videoseek serve", settings.host, settings.port)
    run_server(runtime, settings.host, settings.port, log_level)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)

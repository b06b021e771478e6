"""``videoseek models list`` and ``videoseek models pull NAME:TAG``: the CLIP weights this machine has or can get.

``pull`` downloads a pretrained tag's weights through huggingface_hub into its usual cache (with a progress bar),
verifies them against the hub's checksum, builds the model once from them, and says where the file went. Every
command that loads the model does the same for a missing one when ``VIDEOSEEK_MODEL_DOWNLOAD=auto`` (the
default) through :func:`ensure_model`; ``never`` keeps a machine off the network (the error says what to do).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from videoseek.cli.common import cli_settings, fail
from videoseek.model_spec import ModelSpec
from videoseek.settings import Settings

models_app = typer.Typer(
    help="CLIP weights: which pretrained models exist and are on disk, and downloading one.",
    no_args_is_help=True,
)


def ensure_model(settings: Settings) -> None:
    """Exit 2 with the reason and the fix unless ``settings.model`` can load here; a missing pretrained model is
    downloaded first when ``settings.model_download`` is ``auto`` (so a server or worker fetches it as it starts,
    before taking work, rather than in the middle of a request)."""
    from videoseek.clip import ModelLoadError, check_model_spec

    try:
        check_model_spec(settings.model, settings.model_download)
    except ModelLoadError as exc:
        raise fail(f"VIDEOSEEK_MODEL={settings.model} cannot be loaded: {exc}") from exc


def _rows(downloaded_only: bool) -> list[dict[str, Any]]:
    import open_clip

    from videoseek.clip import has_open_clip_towers
    from videoseek.pretrained_weights import HubWeights, find_cached

    rows: list[dict[str, Any]] = [
        {"model": "toy", "on_disk": "shipped with videoseek", "source": "videoseek/toy/weights"}
    ]
    usable = {name: has_open_clip_towers(name) for name in open_clip.list_models()}
    for name, tag in open_clip.list_pretrained():
        if not usable.get(name):
            continue  # timm / Hugging Face towers: videoseek's adapters need open_clip's own blocks
        weights = HubWeights.from_pretrained_cfg(name, tag, open_clip.get_pretrained_cfg(name, tag))
        found = find_cached(weights)
        if downloaded_only and found is None:
            continue
        rows.append(
            {
                "model": weights.spec,
                "on_disk": str(found) if found is not None else None,
                "source": weights.repo_id or weights.url,
            }
        )
    return rows


def list_models(
    downloaded: Annotated[bool, typer.Option("--downloaded", help="Only the models on disk.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the pretrained NAME:TAG specs videoseek can use, and which are on disk (no network)."""
    from videoseek.pretrained_weights import hub_cache_dir

    rows = _rows(downloaded)
    if json_output:
        for row in rows:
            typer.echo(json.dumps(row))
        return
    width = max(len(row["model"]) for row in rows)
    typer.echo(f"{'MODEL':<{width}}  ON DISK  SOURCE")
    for row in rows:
        typer.echo(f"{row['model']:<{width}}  {'yes' if row['on_disk'] else '-':<7}  {row['source']}")
    typer.echo(
        f"\nHugging Face cache: {hub_cache_dir()} (HF_HUB_CACHE). Download one with "
        "`videoseek models pull NAME:TAG`; use it with VIDEOSEEK_MODEL=NAME:TAG."
    )


def pull(
    model: Annotated[
        str | None,
        typer.Argument(help="NAME:TAG, e.g. ViT-B-32:openai (default: VIDEOSEEK_MODEL)."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
) -> None:
    """Download a model's weights into the Hugging Face cache (progress on stderr), verify them, say where."""
    settings = cli_settings()
    try:
        spec = ModelSpec.parse(model) if model is not None else settings.model
    except ValueError as exc:
        raise fail(str(exc)) from exc
    report = _pull(spec)
    if json_output:
        typer.echo(json.dumps(report))
        return
    typer.echo(f"{report['model']}: {report['status']}")
    for key in ("file", "cache", "sha256", "fingerprint", "use"):
        if report.get(key):
            typer.echo(f"  {key + ':':<12} {report[key]}")


def _pull(spec: ModelSpec) -> dict[str, Any]:
    from videoseek.clip import ModelLoadError, load_clip, weights_file

    if spec.kind != "pretrained":
        try:
            path = weights_file(spec)
        except ModelLoadError as exc:
            raise fail(str(exc)) from exc
        what = "random weights" if path is None else f"its weights file is {path}"
        return {"model": str(spec), "status": f"nothing to download ({what})", "file": str(path or "")}
    hub = _hub_weights(spec)
    from videoseek.pretrained_weights import (
        find_cached,
        hub_cache_dir,
        hub_repo_cache_dir,
        verify_cached_file,
    )

    before = find_cached(hub)
    try:
        path = weights_file(spec, "auto")
        assert path is not None
        sha256 = verify_cached_file(path)
        fingerprint = load_clip(spec).identity.fingerprint  # the weights fit the architecture
    except ModelLoadError as exc:
        raise fail(str(exc)) from exc
    size_mb = Path(path).resolve().stat().st_size / 1e6
    status = "already on disk" if before is not None else f"downloaded {size_mb:.1f} MB"
    cache = (
        hub_repo_cache_dir(hub.repo_id) if hub.repo_id and hub_cache_dir() in path.parents else path.parent
    )
    return {
        "model": str(spec),
        "status": f"{status}, checksum verified, loads",
        "downloaded": before is None,
        "file": str(path),
        "cache": f"{cache} (copy this folder to the same place on another machine to use it offline there)",
        "sha256": sha256,
        "fingerprint": fingerprint,
        "use": f"VIDEOSEEK_MODEL={spec}",
    }


def _hub_weights(spec: ModelSpec) -> Any:
    import open_clip

    from videoseek.pretrained_weights import HubWeights

    assert spec.tag is not None
    cfg = open_clip.get_pretrained_cfg(spec.name, spec.tag)
    if not cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(spec.name)) or "none"
        raise fail(
            f"unknown pretrained tag {spec.tag!r} for {spec.name}; known tags: {tags} (see `videoseek models list`)"
        )
    return HubWeights.from_pretrained_cfg(spec.name, spec.tag, cfg)


models_app.command("list")(list_models)
models_app.command("pull")(pull)


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")

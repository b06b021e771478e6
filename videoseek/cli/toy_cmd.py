"""``videoseek toy``: generate the toy world, pre-train its small CLIP, and measure it zero-shot."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

toy_app = typer.Typer(help="The generated toy video world and its small CLIP (offline tests and demo).")


class DatasetKind(StrEnum):
    videos = "videos"
    images = "images"


class Domain(StrEnum):
    A = "A"
    B = "B"


class SplitChoice(StrEnum):
    train = "train"
    test = "test"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(message, err=True)
    return typer.Exit(code=code)


@toy_app.command("generate")
def generate(
    out: Annotated[Path, typer.Option(help="Output folder; captions.jsonl is written there.")],
    domain: Annotated[
        DatasetKind, typer.Option(help="videos (domain B by default) or images (domain A).")
    ] = (DatasetKind.videos),
    n: Annotated[int, typer.Option(help="Number of distinct scenes.")] = 200,
    seed: Annotated[int, typer.Option(help="Everything generated is a function of the seed.")] = 1,
    scenes: Annotated[Domain | None, typer.Option(help="Scene domain for videos: B (default) or A.")] = None,
    split: Annotated[
        SplitChoice | None, typer.Option(help="Only scenes of this deterministic split.")
    ] = None,
    codec: Annotated[str, typer.Option(help="h264, hevc, vp9, vp8, mpeg4, mjpeg or av1.")] = "h264",
    container: Annotated[
        str | None, typer.Option(help="mp4, webm, avi, mkv or mov (default: codec's).")
    ] = None,
    captions_per_item: Annotated[int, typer.Option(help="Paraphrases written per item.")] = 1,
    known_word_rate: Annotated[
        float | None,
        typer.Option(
            help="How often a domain B caption names a concept with the pre-training word "
            "(default 0.35; 1.0: every word known, only visuals, grammar and events shift)."
        ),
    ] = None,
) -> None:
    """Write toy videos or images plus captions.jsonl; prints {"manifest", "items", "lines"} as JSON."""
    from videoseek.toy.captions import B_KNOWN_WORD_RATE
    from videoseek.toy.generate import generate_images, generate_videos
    from videoseek.toy.scene import SceneError, Split
    from videoseek.toy.video_writer import UnsupportedVideoFormat

    split_value: Split | None = {SplitChoice.train: "train", SplitChoice.test: "test", None: None}[split]
    try:
        if domain is DatasetKind.images:
            if scenes is Domain.B:
                raise _fail("--domain images makes domain A stills; domain B exists only as videos")
            manifest = generate_images(out, n, seed, split=split_value, captions_per_item=captions_per_item)
        else:
            scene_domain = (scenes or Domain.B).value
            manifest = generate_videos(
                out,
                n,
                seed,
                scene_domain,
                codec,
                container,
                split=split_value,
                captions_per_item=captions_per_item,
                known_word_rate=B_KNOWN_WORD_RATE if known_word_rate is None else known_word_rate,
            )
    except (SceneError, UnsupportedVideoFormat, ValueError) as exc:
        raise _fail(f"toy generate: {exc}") from exc
    lines = manifest.read_text().count("\n")
    typer.echo(json.dumps({"manifest": str(manifest), "items": n, "lines": lines}))


@toy_app.command("pretrain")
def pretrain(
    out: Annotated[Path | None, typer.Option(help="Checkpoint to write (default: the packaged one).")] = None,
    minutes: Annotated[float | None, typer.Option(help="Stop early (and say so) after this long.")] = None,
    steps: Annotated[int | None, typer.Option(help="Override the recipe's step count.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the recipe.")] = 0,
    textured_fraction: Annotated[
        float, typer.Option(help="Share of images with domain B's textured, cluttered, noisy look (0-1).")
    ] = 0.0,
    threads: Annotated[
        int | None, typer.Option(help="torch threads (default 1; weights are reproducible per thread count).")
    ] = None,
) -> None:
    """Pre-train the toy CLIP on domain A from scratch; prints the run summary as JSON."""
    from videoseek.toy.model import toy_checkpoint_path
    from videoseek.toy.pretrain import PretrainConfig
    from videoseek.toy.pretrain import pretrain as run_pretrain

    base = PretrainConfig()
    try:
        cfg = PretrainConfig(
            steps=steps or base.steps,
            seed=seed,
            threads=threads or base.threads,
            textured_fraction=textured_fraction,
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    target = out or toy_checkpoint_path()
    result = run_pretrain(target, cfg, deadline_minutes=minutes, log=lambda line: typer.echo(line, err=True))
    summary = {
        "checkpoint": str(result.checkpoint),
        "steps_done": result.steps_done,
        "seconds": round(result.seconds, 1),
        "final_loss": round(result.final_loss, 4),
        "truncated": result.truncated,
        "size_bytes": result.checkpoint.stat().st_size,
    }
    typer.echo(json.dumps(summary))


@toy_app.command("eval")
def evaluate(
    checkpoint: Annotated[Path | None, typer.Option(help="Checkpoint (default: the packaged one).")] = None,
    images: Annotated[int, typer.Option(help="Domain A candidates.")] = 500,
    videos: Annotated[int, typer.Option(help="Domain B candidate videos.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the held-out sets.")] = 1234,
) -> None:
    """Zero-shot text-to-image R@1 on held-out domain A and text-to-video R@1 on domain B, as JSON."""
    import torch

    from videoseek.toy.evaluate import eval_images, eval_videos
    from videoseek.toy.model import ToyCheckpointMissing, create_toy_model

    torch.set_num_threads(2)
    try:
        model = create_toy_model(checkpoint)
    except ToyCheckpointMissing as exc:
        raise _fail(str(exc)) from exc
    a = eval_images(model, images, seed)
    b = eval_videos(model, videos, seed)
    typer.echo(json.dumps({"text_to_image_A": a.to_dict(), "text_to_video_B_meanpool": b.to_dict()}))


def register(app: typer.Typer) -> None:
    app.add_typer(toy_app, name="toy")

"""Datasets on disk: deterministic by seed, real decodable videos, manifests in the shared format."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from videoseek.cli.app import app
from videoseek.toy.generate import MANIFEST_NAME, generate_images, generate_videos
from videoseek.toy.video_writer import UnsupportedVideoFormat


def _records(manifest: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def _digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "vp8", "mpeg4", "mjpeg", "av1"])
def test_same_seed_gives_identical_videos_and_manifest(tmp_path: Path, codec: str) -> None:
    first = generate_videos(tmp_path / "a", 2, seed=11, codec=codec, durations_s=(2,))
    second = generate_videos(tmp_path / "b", 2, seed=11, codec=codec, durations_s=(2,))
    other = generate_videos(tmp_path / "c", 2, seed=12, codec=codec, durations_s=(2,))
    assert _digest(first.parent) == _digest(second.parent)
    assert _digest(first.parent) != _digest(other.parent)


@pytest.mark.parametrize(("codec", "container"), [("h264", "mp4"), ("vp9", "webm"), ("mpeg4", "avi")])
def test_videos_decode_to_expected_frame_count_and_size(tmp_path: Path, codec: str, container: str) -> None:
    manifest = generate_videos(tmp_path, 2, seed=5, codec=codec, container=container, durations_s=(2, 3))
    for record in _records(manifest):
        path = manifest.parent / record["video"]
        assert path.suffix == f".{container}"
        frames = _decode(path)
        assert len(frames) == record["n_frames"] == record["fps"] * record["duration_s"]
        assert {f.shape for f in frames} == {(128, 128, 3)}


def test_decoded_frames_match_the_rendered_ones(tmp_path: Path) -> None:
    from videoseek.toy.generate import _item_rng
    from videoseek.toy.render import plan_video, render_video
    from videoseek.toy.scene import Scene

    manifest = generate_videos(tmp_path, 1, seed=21, durations_s=(2,))
    (record,) = _records(manifest)
    rng = _item_rng(21, 0)
    rng.integers(1)  # the duration draw
    plan = plan_video(Scene.from_dict(record["scene"]), rng, 128, record["fps"], 2)
    rendered = list(render_video(plan, rng))
    decoded = _decode(manifest.parent / record["video"])
    errors = [np.abs(r.astype(int) - d.astype(int)).mean() for r, d in zip(rendered, decoded, strict=True)]
    assert max(errors) < 8  # lossy codec, same picture


def test_manifest_lines_have_the_shared_format(tmp_path: Path) -> None:
    manifest = generate_videos(tmp_path, 4, seed=2, split="train", captions_per_item=2)
    assert manifest.name == MANIFEST_NAME
    records = _records(manifest)
    assert len(records) == 8 and len({r["video"] for r in records}) == 4
    for record in records:
        assert (manifest.parent / record["video"]).is_file()
        assert isinstance(record["caption"], str) and record["caption"]
        assert record["split"] == "train" and record["scene"]["domain"] == "B"


def test_images_are_written_with_captions(tmp_path: Path) -> None:
    manifest = generate_images(tmp_path, 5, seed=3)
    records = _records(manifest)
    assert len({r["key"] for r in records}) == 5
    for record in records:
        with Image.open(manifest.parent / record["image"]) as image:
            assert image.size == (64, 64) and image.mode == "RGB"


def test_unsupported_codec_container_pair_is_rejected_before_writing(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedVideoFormat, match="webm"):
        generate_videos(tmp_path / "x", 1, seed=1, codec="h264", container="webm")
    assert not (tmp_path / "x").exists()


def test_cli_generate_writes_videos_and_reports_json(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["toy", "generate", "--domain", "videos", "--n", "2", "--seed", "1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["items"] == 2 and Path(summary["manifest"]).is_file()


def test_cli_generate_fails_clearly_on_impossible_request(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["toy", "generate", "--domain", "images", "--n", "7000", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "distinct" in result.stderr

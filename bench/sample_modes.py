"""Toy-world retrieval with each ingest sample mode (``exact``, ``keyframes``) on the same videos.

The videos are the demo adapter's held-out test set (``videoseek toy generate --n 200 --seed 2 --split test
--known-word-rate 1.0``), evaluated the way ``videoseek eval --model toy --adapter <demo adapter>`` does (the
training package's evaluation: 1 fps samples through the ingest sampler, at most 12 per video, T2V R@1 with
mean and text-conditioned pooling), once per sample mode. Toy videos are 4-6 s at 8 fps with x264's default
keyframe spacing (250 frames, longer than any toy video: one keyframe at 0 s plus the ones x264's scene-cut
detection adds where an event switches), so the same videos are also measured re-encoded with a keyframe every
2 s (``gop_2s``, scene cuts still detected, as streaming and phone encoders do) and every 2 s exactly
(``gop_2s_no_scenecut``), where the keyframes mode has most to choose from. Prints one JSON object.

    .venv/bin/python bench/sample_modes.py [--videos 200] [--tolerances 1.0 0.5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import av
import numpy as np

from training.config import TrainConfig
from training.data import load_dataset
from training.run import DataPlan, run_eval
from videoseek.model_spec import ModelSpec
from videoseek.settings import IngestSettings
from videoseek.toy.adapter import DEMO_KNOWN_WORD_RATE, toy_adapter_dir
from videoseek.toy.generate import generate_videos
from videoseek.video import sample_frames

GOP_VARIANTS: dict[str, dict[str, str] | None] = {
    "as_generated": None,
    "gop_2s": {"preset": "veryfast", "crf": "23", "threads": "1"},
    "gop_2s_no_scenecut": {"preset": "veryfast", "crf": "23", "threads": "1", "x264-params": "scenecut=0"},
}


def reencode(source: Path, target: Path, options: dict[str, str]) -> None:
    """``source`` re-encoded with a keyframe every 2 s (same frames, same rate)."""
    with av.open(str(source)) as src, av.open(str(target), "w") as out:
        in_stream = src.streams.video[0]
        rate = in_stream.average_rate or 8
        stream = out.add_stream("libx264", rate=rate, options={**options, "g": str(2 * int(rate))})
        stream.width, stream.height, stream.pix_fmt = in_stream.width, in_stream.height, "yuv420p"
        for frame in src.decode(in_stream):
            fresh = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
            for packet in stream.encode(fresh):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def video_set(root: Path, manifest: Path, variant: str) -> Path:
    """The manifest of ``variant``: the generated videos, or copies re-encoded next to a copy of it."""
    options = GOP_VARIANTS[variant]
    if options is None:
        return manifest
    folder = root / variant
    (folder / "videos").mkdir(parents=True)
    shutil.copy(manifest, folder / manifest.name)
    for video in sorted((manifest.parent / "videos").iterdir()):
        reencode(video, folder / "videos" / video.name, options)
    return folder / manifest.name


def keyframe_stats(manifest: Path) -> dict[str, float]:
    """Keyframes per video, and the share of the 1 fps ticks that sit on one."""
    keys, on_tick, ticks = [], 0, 0
    for video in sorted((manifest.parent / "videos").iterdir()):
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert stream.time_base is not None
            times = [
                float(p.pts * stream.time_base) for p in container.demux(stream) if p.size and p.is_keyframe
            ]
            duration = float(stream.frames) / float(stream.average_rate or 8)
        keys.append(len(times))
        grid = np.arange(0, duration, 1.0)
        ticks += len(grid)
        on_tick += int(sum(np.min(np.abs(np.asarray(times) - t)) < 1e-6 for t in grid))
    return {
        "keyframes_per_video": round(float(np.mean(keys)), 2),
        "ticks_on_a_keyframe": round(on_tick / ticks, 3),
    }


def frames_per_video(manifest: Path, limits: IngestSettings) -> dict[str, float]:
    """What the sampler keeps and decodes per video in this mode, on average."""
    kept, decoded = [], []
    for video in sorted((manifest.parent / "videos").iterdir()):
        sampled = sample_frames(video, limits, fps=1.0)
        kept.append(len(sampled))
        decoded.append(sampled.decoded_frames)
    return {
        "frames_kept": round(float(np.mean(kept)), 2),
        "frames_decoded": round(float(np.mean(decoded)), 2),
    }


def evaluate(manifest: Path, limits: IngestSettings, cache_dir: Path, adapter: Path | None) -> dict[str, Any]:
    data = DataPlan(train=None, eval=load_dataset(manifest), cache_dir=cache_dir, limits=limits)
    cfg = TrainConfig(method="zero-shot", frames=12, fps=1.0, device="cpu")
    metrics = run_eval(ModelSpec.parse("toy"), cfg, data, adapter)["metrics"]
    return {
        "t2v_r1_mean": metrics["mean"]["t2v"]["R@1"],
        "t2v_r1_text_conditioned": metrics["text_conditioned"]["t2v"]["R@1"],
        **frames_per_video(manifest, limits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--videos", type=int, default=200)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1.0, 0.5])
    parser.add_argument("--variants", nargs="+", default=list(GOP_VARIANTS), choices=list(GOP_VARIANTS))
    parser.add_argument("--no-adapter", action="store_true", help="the plain toy CLIP (zero-shot)")
    args = parser.parse_args()
    adapter = None if args.no_adapter else toy_adapter_dir()
    report: dict[str, Any] = {"videos": args.videos, "seed": args.seed, "adapter": str(adapter)}
    with tempfile.TemporaryDirectory(prefix="videoseek-sample-modes-") as scratch:
        root = Path(scratch)
        manifest = generate_videos(
            root / "generated", args.videos, args.seed, split="test", known_word_rate=DEMO_KNOWN_WORD_RATE
        )
        cache = root / "frame-cache"  # one cache for every mode: its keys must keep them apart
        for variant in args.variants:
            videos = video_set(root, manifest, variant)
            row: dict[str, Any] = {**keyframe_stats(videos)}
            row["exact"] = evaluate(videos, IngestSettings(), cache, adapter)
            for tolerance in args.tolerances:
                limits = IngestSettings(sample_mode="keyframes", keyframe_tolerance=tolerance)
                row[f"keyframes_tolerance_{tolerance:g}"] = evaluate(videos, limits, cache, adapter)
            report[variant] = row
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()

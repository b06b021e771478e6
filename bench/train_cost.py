"""Training cost of the Cross-Modal Adapter vs full fine-tuning, side by side in one run (prints one JSON object).

ViT-B-32 with random weights (the cost does not depend on the weights), a batch of 8 videos x 12 frames and
their 8 captions, through the real training loop (frame cache, text-conditioned InfoNCE, AdamW, grad clip),
each method in a fresh process of its own (peak RSS and first-use costs are not shared). Reported per method:
median step time, wall and process CPU (the first step, which allocates optimizer state, is a warm-up), and
peak memory above what was resident before training (CUDA: allocator peak; CPU: peak RSS with glibc's mmap
threshold fixed, see training/memory.py), plus that peak with the model's own weights added; then the ratios adapter / full
(paper: ~0.70x time, ~0.78x memory).

    .venv/bin/python bench/train_cost.py [--steps 4] [--device auto] [--model ViT-B-32:random]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import SamplingConfig, TrainConfig
from training.data import ClipDataset, ClipRecord
from training.frame_cache import FrameCache
from training.loop import train
from training.memory import count_tensors_not_allocator_slack, tensor_bytes
from videoseek.clip import load_clip
from videoseek.model_spec import ModelSpec

BATCH_VIDEOS = 8
FRAMES = 12
MIB = 1024 * 1024


def _write_video(path: Path, seconds: int, seed: int) -> None:
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=4)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for _ in range(seconds * 4):
            frame = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _dataset(folder: Path, n: int) -> ClipDataset:
    records = []
    for i in range(n):
        path = folder / f"{i}.mp4"
        if not path.exists():
            _write_video(path, FRAMES, seed=i)
        records.append(ClipRecord(path, f"a synthetic clip number {i} with some moving noise"))
    return ClipDataset(records, "synthetic")


def measure(spec: ModelSpec, method: str, folder: Path, steps: int, device: str) -> dict[str, Any]:
    """One method's cost, in this (fresh) process: steps through the real loop, peak memory over them."""
    clip = load_clip(spec, device)
    dataset = _dataset(folder, BATCH_VIDEOS * steps)
    cache = FrameCache(folder / "cache", SamplingConfig(max_frames=FRAMES, image_size=clip.image_size))
    cache.warm(dataset.records)  # decoding is not training cost
    cfg = TrainConfig(method=method, epochs=1, batch_size=BATCH_VIDEOS, frames=FRAMES, lr=1e-5, device=device)
    result = train(clip, cfg, dataset, cache, log=lambda _: None)
    steady = result.step_seconds[1:] or result.step_seconds
    steady_cpu = result.step_cpu_seconds[1:] or result.step_cpu_seconds
    peak = result.peak_memory_bytes
    weights = tensor_bytes(clip.model)
    return {
        "device": str(clip.device),
        "trainable_params": result.trainable_params,
        "steps": result.steps,
        "step_seconds_median": round(statistics.median(steady), 3),
        "step_seconds": [round(s, 3) for s in result.step_seconds],
        "step_cpu_seconds_median": round(statistics.median(steady_cpu), 3),
        "peak_training_mib": None if peak is None else round(peak / MIB, 1),
        "peak_with_weights_mib": None if peak is None else round((peak + weights) / MIB, 1),
    }


def _in_child(method: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    # A fresh process per method: the peak RSS, the allocator and the libraries' first-use costs are its own.
    command = [sys.executable, __file__, "--child", method, "--folder", str(folder), "--steps", str(args.steps),
               "--device", args.device, "--model", args.model]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} run failed:\n{done.stderr[-2000:]}")
    return dict(json.loads(done.stdout))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4, help="Optimizer steps per method (first is warm-up).")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model", default="ViT-B-32:random")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    spec = ModelSpec.parse(args.model)
    if args.child:
        # Peak RSS should count what training holds, not glibc's slack (see memory.py), as CUDA's allocator
        # peak counts live tensors only.
        count_tensors_not_allocator_slack()
        print(json.dumps(measure(spec, args.child, args.folder, args.steps, args.device)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        _dataset(folder, BATCH_VIDEOS * args.steps)
        results = {method: _in_child(method, args, folder) for method in ("cma", "full")}
    cma, full = results["cma"], results["full"]

    def ratio(key: str) -> float | None:
        return None if not full[key] or cma[key] is None else round(cma[key] / full[key], 3)

    print(
        json.dumps(
            {
                "model": str(spec),
                "device": cma.pop("device"),
                "torch_threads": torch.get_num_threads(),
                "batch": f"{BATCH_VIDEOS} videos x {FRAMES} frames",
                "cma": cma,
                "full": {k: v for k, v in full.items() if k != "device"},
                "time_ratio": ratio("step_seconds_median"),
                # CPU time of the process: robust to other work on a shared machine (CPU runs only).
                "cpu_time_ratio": ratio("step_cpu_seconds_median"),
                "memory_ratio": ratio("peak_training_mib"),
                "memory_ratio_with_weights": ratio("peak_with_weights_mib"),
                "paper": {"time_ratio": 0.70, "memory_ratio": 0.78},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

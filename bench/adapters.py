"""Adapter serving benchmark: what adapters cost on one frozen ViT-B-32 (random weights), side by side, one run.

    .venv/bin/python bench/adapters.py [--repeats 5] [--adapters 1000] [--device cpu] [--threads 1]

Reported (each a ratio of two measurements taken interleaved in this run; best of ``--repeats``, since on a
shared machine other processes only ever add time; medians are printed too):

* ``text_adapted_over_plain``: a batch of 32 queries through one adapter (the bank's routed CLIP) vs. a
  separately loaded, unwrapped CLIP of the same architecture and weights, so the overhead includes the wrapped
  sites, the routing and the bank's bookkeeping; target <= 1.10;
* ``frames_adapted_over_plain``: a batch of 48 frames, same comparison; target <= 1.10;
* ``mixed_over_single``: 32 queries each on its own adapter (32 adapters) vs. the same batch on one adapter;
  target <= 1.3;
* ``memory_per_adapter_over_tensor_bytes``: memory growth per adapter with ``--adapters`` resident (process
  RSS on CPU, allocated GPU memory on CUDA), over the adapter's tensor bytes (as stored in its file);
  target <= 1.2.

One intra-op thread by default: on a shared CPU, oversubscribed OpenMP threads make timings erratic.

Prints one JSON object. Absolute times depend on the machine; the ratios are the point.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from videoseek.adapter import (
    AdapterBank,
    AdapterConfig,
    AdapterFile,
    adapter_tensor_shapes,
    backbone_shape,
)
from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec

TEXT_BATCH = 32
FRAME_BATCH = 48
CONFIG = AdapterConfig(rank=8, shared_dim=16)  # the paper's MSR-VTT setting, 519,168 parameters


def memory_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return int(torch.cuda.memory_allocated(device))
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def make_adapter(clip: LoadedClip, seed: int) -> AdapterFile:
    generator = torch.Generator().manual_seed(seed)
    shape = backbone_shape(clip.model)
    tensors = {
        name: torch.randn(dims, generator=generator) * 0.01
        for name, dims in adapter_tensor_shapes(CONFIG, shape).items()
    }
    return AdapterFile(config=CONFIG, base=clip.identity, shape=shape, tensors=tensors)


def paired_times(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Seconds of each run of ``first`` and ``second``, run alternately (after one warm-up each)."""
    first(), second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, sink in ((first, times[0]), (second, times[1])):
            started = time.perf_counter()
            fn()
            if torch.cuda.is_initialized():
                torch.cuda.synchronize()
            sink.append(time.perf_counter() - started)
    return times


def plain_text(plain: LoadedClip, texts: list[str]) -> torch.Tensor:
    """What the bank does for a text batch, minus everything adapter-related."""
    with torch.no_grad():
        return plain.encode_text(plain.tokenize(texts))


def plain_frames(plain: LoadedClip, frames: torch.Tensor) -> torch.Tensor:
    weight = next(plain.model.parameters())
    with torch.no_grad():
        return plain.model.encode_image(frames.to(device=weight.device, dtype=weight.dtype))


def speed(clip: LoadedClip, plain: LoadedClip, repeats: int) -> dict[str, float]:
    """``clip`` gets the bank's routed sites; ``plain`` is an unwrapped copy (same spec, so same weights)."""
    bank = AdapterBank(clip, max_bytes=1 << 30)
    versions = [f"adapter-{i:02d}" for i in range(TEXT_BATCH)]
    for i, version in enumerate(versions):
        bank.add(version, make_adapter(clip, seed=i))
    texts = [
        f"a {c} object number {i} moves across a quiet street" for i, c in enumerate(["red", "blue"] * 16)
    ]
    frames = torch.randn(
        FRAME_BATCH, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(0)
    )
    one = versions[0]

    pairs = {
        "text": paired_times(
            lambda: bank.encode_text(texts, [one] * TEXT_BATCH), lambda: plain_text(plain, texts), repeats
        ),
        "frames": paired_times(
            lambda: bank.encode_images(frames, [one] * FRAME_BATCH),
            lambda: plain_frames(plain, frames),
            repeats,
        ),
        "mixed": paired_times(
            lambda: bank.encode_text(texts, versions),
            lambda: bank.encode_text(texts, [one] * TEXT_BATCH),
            repeats,
        ),
    }
    names = {
        "text": ("text_adapted", "text_plain", "text_adapted_over_plain"),
        "frames": ("frames_adapted", "frames_plain", "frames_adapted_over_plain"),
        "mixed": ("mixed_32_adapters", "single_adapter", "mixed_over_single"),
    }
    result: dict[str, float] = {}
    for key, (first, second) in pairs.items():
        first_name, second_name, ratio_name = names[key]
        result[f"{first_name}_ms"] = round(1000 * min(first), 2)
        result[f"{second_name}_ms"] = round(1000 * min(second), 2)
        result[ratio_name] = round(min(first) / min(second), 3)
        result[f"{ratio_name}_of_medians"] = round(statistics.median(first) / statistics.median(second), 3)
    return result


def memory(clip: LoadedClip, count: int) -> dict[str, float]:
    sample = make_adapter(clip, seed=0)
    bank = AdapterBank(clip, max_bytes=2 * count * sample.nbytes)
    gc.collect()
    before = memory_bytes(clip.device)
    for i in range(count):
        bank.add(f"resident-{i:05d}", make_adapter(clip, seed=i))  # each file object is dropped after add
    gc.collect()
    grown = memory_bytes(clip.device) - before
    assert len(bank.resident_versions) == count
    return {
        "adapters_resident": count,
        "adapter_tensor_bytes": sample.nbytes,
        "bank_bytes_per_adapter": bank.resident_bytes / count,
        "bank_held_bytes_per_adapter": bank.held_bytes / count,  # pool capacity, free slots included
        "memory_growth_bytes": grown,
        "memory_per_adapter_over_tensor_bytes": round(grown / (count * sample.nbytes), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--adapters", type=int, default=1000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.ERROR)
    spec = ModelSpec.parse("ViT-B-32:random")  # seeded: both loads have the same weights
    clip, plain = load_clip(spec, args.device), load_clip(spec, args.device)
    result: dict[str, object] = {
        "model": "ViT-B-32:random",
        "device": str(clip.device),
        "torch_threads": torch.get_num_threads(),
        "adapter": CONFIG.to_dict(),
    }
    result.update(speed(clip, plain, args.repeats))
    del plain
    result.update(memory(clip, args.adapters))
    result["targets"] = {
        "text_adapted_over_plain": 1.10,
        "frames_adapted_over_plain": 1.10,
        "mixed_over_single": 1.3,
        "memory_per_adapter_over_tensor_bytes": 1.2,
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

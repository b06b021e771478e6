"""Text tower cost: open_clip's full-context forward against videoseek's forward cut at the last end-of-text.

    .venv/bin/python bench/text_encoder.py [--model ViT-B-32:random] [--batches 1 8 32] [--repeats 20]

Search texts are cut at 32 tokens (``search.text_context_length``) and zero-padded to the model's context (77
for OpenAI CLIP); ``LoadedClip.encode_text`` runs only the positions up to the batch's last end-of-text token,
with the same features. Both forwards run here side by side, alternating, on the same token batches; reported
per batch size: median milliseconds of each, their ratio, and the largest feature difference. Prints one JSON
object; compare the ratios, not the absolute times (they depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from videoseek.clip import LoadedClip, load_clip
from videoseek.model_spec import ModelSpec

QUERIES = [
    "a dog catches a frisbee on the beach",
    "two people dancing in a kitchen at night",
    "a red car drives through the rain past a gas station and stops at the lights",
    "snow",
    "a chef slices onions very quickly on a wooden board while talking to the camera about the recipe",
    "children play football in a park",
]


def _median_ms(run: Callable[[], torch.Tensor], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(clip: LoadedClip, batch: int, repeats: int, context_length: int) -> dict[str, Any]:
    """Both forwards on one batch of ``batch`` queries, alternating rounds so load changes hit both."""
    tokens = clip.tokenize([QUERIES[i % len(QUERIES)] for i in range(batch)], context_length)
    with torch.no_grad():
        full, short = clip.model.encode_text(tokens), clip.encode_text(tokens)  # also warms up both
        full_ms, short_ms = [], []
        for _ in range(5):
            full_ms.append(_median_ms(lambda: clip.model.encode_text(tokens), repeats))
            short_ms.append(_median_ms(lambda: clip.encode_text(tokens), repeats))
    full_p50, short_p50 = statistics.median(full_ms), statistics.median(short_ms)
    return {
        "batch": batch,
        "positions_full": int(tokens.shape[1]),
        "positions_short": int(tokens.argmax(dim=-1).max()) + 1,
        "full_ms": round(full_p50, 2),
        "short_ms": round(short_p50, 2),
        "short_over_full": round(short_p50 / full_p50, 3),
        "max_feature_diff": float((full - short).abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32:random")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--context-length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clip = load_clip(ModelSpec.parse(args.model), "cpu")
    rows = [measure(clip, batch, args.repeats, args.context_length) for batch in args.batches]
    print(json.dumps({"model": args.model, "threads": args.threads, "results": rows}, indent=2))


if __name__ == "__main__":
    main()

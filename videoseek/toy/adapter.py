"""The toy Cross-Modal Adapter that ``videoseek demo`` serves, and the recipe that made it.

It adapts the committed toy CLIP to domain B videos (noise, clutter, textures, events seen across frames) whose
captions use the pre-training words (``known_word_rate`` 1.0): the shift the demo shows is visual, which is
what a collection's adapter is for. ``DEMO_ADAPTER_RECIPE`` lists the commands that rebuild it; the demo
generates its own videos from the same distribution (held-out scenes, another seed).
"""

from __future__ import annotations

from pathlib import Path

DEMO_ADAPTER_DIR = Path(__file__).parent / "weights" / "demo-adapter"
# Captions of the demo's videos are drawn exactly as the adapter's training captions were.
DEMO_KNOWN_WORD_RATE = 1.0
DEMO_ADAPTER_RECIPE = (
    "videoseek toy generate --out train --n 1200 --seed 1 --split train --captions-per-item 3 "
    "--known-word-rate 1.0",
    "videoseek toy generate --out test --n 200 --seed 2 --split test --known-word-rate 1.0",
    "videoseek train --data train/captions.jsonl --eval-data test/captions.jsonl --model toy --method cma "
    "--out run --epochs 3 --batch-size 32 --lr 1e-2 --device cpu",
    "cp run/adapter/* videoseek/toy/weights/demo-adapter/",
)


def toy_adapter_dir() -> Path | None:
    """The committed demo adapter's folder, or None when this checkout has none."""
    return DEMO_ADAPTER_DIR if (DEMO_ADAPTER_DIR / "adapter_config.json").is_file() else None

"""Data-size study: held-out R@1 against the number of training videos, one line per method.

    .venv/bin/python bench/study.py --out runs/study [--variants b known noisy] [--sizes 40 120 400 1200]
        [--seeds 0 1] [--methods zero-shot full lora vision text cma-noshare cma] [--target-steps 300] [--rank 8]
        [--quick]

Every cell (variant, method, training videos, learning rate, seed) is one run of the real training loop on the
toy CLIP, with the product's recipe for that many pairs (``training/recipe.py``: batch, step budget, evaluation
and early stopping on the validation split), only the learning rate set by the study:

* data: the toy world's domain B (``b``, 65% of the concept words new), the same videos with every concept
  named by its pre-training word (``known``), or domain B's videos with 30% of the training captions another
  video's (``noisy``: mislabelled clips, one draw for the whole study; validation and test stay right); 1,200
  train-split videos x 3 captions, of which each seed draws its own ``n`` videos (so the spread covers which
  videos a collection happens to have); a validation split of 100 and a test split of 200 test-split videos,
  one caption each, generated here on first use;
* learning rate: each method's grid (``LR_GRID``, three points half a decade apart around the method's usual
  value, scaled with the square root of the batch like the recipe) is run at seed 0; the point with the best
  validation score (T2V MRR, the early-stopping score) is then run at every other seed. Test metrics are never
  used to choose anything;
* step budget and rank: the recipe's (``TARGET_STEPS``, about 300 steps; the adapter's bottleneck rank 8)
  unless ``--target-steps`` or ``--rank`` sets another, which makes its own cells (``...-steps<N>.json``,
  ``...-rank<R>.json``) and its own rows and dashed lines, grid and all;
* reported per (variant, method, size, step budget, rank): the chosen lr, the mean steps run (early stopping), test
  T2V R@1 mean and standard deviation over seeds, R@5, MRR, trainable parameters, train seconds.

Resumable: each finished cell writes ``OUT/cells/<variant>/<method>/n<size>/lr<lr>-s<seed>.json`` (atomically)
and a rerun with the same settings skips it, so a long study survives a stop; the tables cover every finished
cell under ``OUT``, and the other seeds run at the lr that is best on validation among all grid points run so
far (``--lr-steps`` runs fewer, or more, of them). ``OUT/study.json``,
``OUT/study.md`` (the table) and ``OUT/study.png`` (R@1 vs training videos) are rewritten after every cell. Prints
one JSON object at the end: ``{"out", "cells", "rows"}``.

``--quick``: 96 training videos, sizes 24 and 48, seeds 0 and 1, a one-point grid, 40 validation and 60 test
videos: a smoke run of the whole pipeline, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from training.config import METHODS, SamplingConfig, TrainConfig
from training.data import ClipDataset, load_dataset
from training.early_stopping import selection_score
from training.evaluate import evaluate
from training.frame_cache import FrameCache, warm_dataset
from training.loop import train
from training.recipe import TARGET_STEPS, recommended_config
from videoseek.clip import load_clip
from videoseek.model_spec import ModelSpec
from videoseek.toy.pretrain import PretrainConfig
from videoseek.toy.scene import Split

SPEC = ModelSpec.parse("toy")


@dataclass(frozen=True)
class Variant:
    """A study's data: the captions' known-word rate and the share of training captions that are wrong."""

    known_word_rate: float
    # Each training caption is, with this probability, another video's: a collection's mislabelled clips (or
    # clicks on wrong results), where the paper's argument expects full fine-tuning to overfit and an adapter
    # to hold. Validation and test captions stay right.
    caption_noise: float = 0.0
    # Another variant's generated videos (same files, same frame cache), or None: the variant's own.
    videos: str | None = None
    title: str = ""
    # The frozen CLIP: a pre-training recipe of CLIPS (pre-trained under OUT/clips on first use), or None: the
    # committed toy CLIP.
    clip: str | None = None


VARIANTS = {
    "b": Variant(0.35, title="new words"),
    "known": Variant(1.0, title="known words"),
    "noisy": Variant(0.35, caption_noise=0.3, videos="b", title="new words, 30% of training captions wrong"),
    "known-textured": Variant(
        1.0, videos="known", clip="textured", title="known words, CLIP pre-trained on textured stills too"
    ),
    "b-textured": Variant(
        0.35, videos="b", clip="textured", title="new words, CLIP pre-trained on textured stills too"
    ),
}
# Richer pre-trainings of the toy CLIP (docs/toy-world.md), for the paper's regime: a CLIP that already knows
# the downstream videos' look and words, so what is left to learn is the events and two-object scenes.
CLIPS = {"textured": PretrainConfig(steps=1200, textured_fraction=0.5)}
NOISE_SEED = 7  # one draw of wrong captions for every method, size and seed of a study
CAPTIONS_PER_VIDEO = 3
SEEDS = {"train": 1, "val": 3, "test": 2}  # the test seed is docs/training.md's held-out set
# Three points half a decade apart around each method's usual toy-CLIP lr at batch 32 (docs/training.md).
LR_AT_BATCH_32 = {"full": 1e-4, "lora": 1e-2, "vision": 1e-2, "text": 1e-2, "cma-noshare": 1e-2, "cma": 1e-2}
LR_STEPS = (1 / 3, 1.0, 3.0)


DEFAULT_RANK = TrainConfig().rank


@dataclass(frozen=True, order=True)
class Variation:
    """How a cell's recipe departs from the product's: its step budget and the adapter's bottleneck rank (LoRA's
    rank is matched to the size of the adapter of that rank). Each variation has its own cells, rows and lr pick."""

    target_steps: int = TARGET_STEPS
    rank: int = DEFAULT_RANK

    @classmethod
    def of(cls, cell: dict[str, Any]) -> Variation:
        """A cell's or a row's (ones from before a setting was recorded ran the recipe's)."""
        rank = cell.get("rank", cell.get("config", {}).get("rank", DEFAULT_RANK))
        return cls(int(cell.get("target_steps", TARGET_STEPS)), int(rank))

    @property
    def suffix(self) -> str:
        """What a cell's file name adds (the recipe's own: nothing, as cells from before variations were)."""
        steps = "" if self.target_steps == TARGET_STEPS else f"-steps{self.target_steps}"
        return steps + ("" if self.rank == DEFAULT_RANK else f"-rank{self.rank}")

    @property
    def label(self) -> str:
        """The plot's legend addition: empty for the recipe's own."""
        parts = [f"{self.target_steps} steps"] if self.target_steps != TARGET_STEPS else []
        return ", ".join(parts + ([f"rank {self.rank}"] if self.rank != DEFAULT_RANK else []))


@dataclass(frozen=True)
class Scale:
    train_videos: int
    sizes: tuple[int, ...]
    seeds: tuple[int, ...]
    lr_steps: tuple[float, ...]
    val_videos: int
    test_videos: int
    variation: Variation = field(default_factory=Variation)  # the recipe's own unless a study sets it


FULL = Scale(1200, (40, 120, 400, 1200), (0, 1), LR_STEPS, 100, 200)
QUICK = Scale(96, (24, 48), (0, 1), (1.0,), 40, 60)


@dataclass(frozen=True)
class Data:
    train: ClipDataset
    val: ClipDataset
    test: ClipDataset
    cache: FrameCache
    spec: ModelSpec = SPEC  # the frozen CLIP every cell of the variant starts from


def clip_spec(root: Path, name: str | None) -> ModelSpec:
    """The committed toy CLIP, or the toy architecture pre-trained with ``CLIPS[name]`` (once, under
    ``root/clips``; a file made with another recipe, or cut short, is made again)."""
    if name is None:
        return SPEC
    from videoseek.toy.model import TOY_MODEL_NAME, checkpoint_info, register_toy_model_config
    from videoseek.toy.pretrain import pretrain

    recipe = CLIPS[name]
    path = root / "clips" / f"{name}.safetensors"
    info = checkpoint_info(path) if path.is_file() else {}
    if info.get("recipe") != asdict(recipe) or info.get("truncated", True):
        print(f"pre-training the {name!r} toy CLIP ({recipe.steps} steps) into {path}", file=sys.stderr)
        pretrain(path, recipe, log=lambda line: print(line, file=sys.stderr, flush=True))
    register_toy_model_config()
    return ModelSpec.parse(f"{TOY_MODEL_NAME}:{path}")


def generate(folder: Path, n: int, seed: int, split: Split, captions: int, known_word_rate: float) -> Path:
    """The toy world's videos and ``captions.jsonl`` in ``folder`` (generated once; same seed, same files)."""
    from videoseek.toy.generate import generate_videos

    manifest = folder / "captions.jsonl"
    if not manifest.is_file():
        generate_videos(
            folder, n, seed, "B", split=split, captions_per_item=captions, known_word_rate=known_word_rate
        )  # writes captions.jsonl last: a generation cut short is redone
    return manifest


def load_data(root: Path, variant: str, scale: Scale, cache_dir: Path) -> Data:
    spec = VARIANTS[variant]
    rate = spec.known_word_rate
    folder = root / "data" / (spec.videos or variant)
    sets = {
        "train": load_dataset(
            generate(
                folder / f"train-{scale.train_videos}",
                scale.train_videos,
                SEEDS["train"],
                "train",
                CAPTIONS_PER_VIDEO,
                rate,
            )
        ),
        "val": load_dataset(
            generate(folder / f"val-{scale.val_videos}", scale.val_videos, SEEDS["val"], "test", 1, rate)
        ),
        "test": load_dataset(
            generate(folder / f"test-{scale.test_videos}", scale.test_videos, SEEDS["test"], "test", 1, rate)
        ),
    }
    clip = clip_spec(root, spec.clip)
    image_size = load_clip(clip, "cpu").image_size
    cache = FrameCache(cache_dir, SamplingConfig(max_frames=TrainConfig().frames, image_size=image_size))
    warmed = {name: warm_dataset(dataset, cache) for name, dataset in sets.items()}
    train = with_wrong_captions(warmed["train"], spec.caption_noise, NOISE_SEED)
    return Data(train, warmed["val"], warmed["test"], cache, clip)


def with_wrong_captions(dataset: ClipDataset, share: float, seed: int) -> ClipDataset:
    """``dataset`` with each caption, with probability ``share``, replaced by a caption of another video."""
    records = dataset.records
    if share <= 0 or len({r.clip_key for r in records}) < 2:
        return dataset
    draw = random.Random(seed)
    noisy = []
    for record in records:
        if draw.random() < share:
            wrong = draw.choice(records)
            while wrong.clip_key == record.clip_key:
                wrong = draw.choice(records)
            record = replace(record, caption=wrong.caption)
        noisy.append(record)
    return ClipDataset(noisy, f"{dataset.source}[{share:.0%} wrong captions]", dataset.skipped)


def videos_subset(dataset: ClipDataset, n: int, seed: int) -> ClipDataset:
    """All captions of ``n`` of the dataset's videos, drawn by ``seed``."""
    clips, _ = dataset.clips()
    if n > len(clips):
        raise SystemExit(f"--sizes {n}: the training split has only {len(clips)} videos")
    chosen = {c.clip_key for c in random.Random(seed).sample(clips, n)}
    return ClipDataset([r for r in dataset.records if r.clip_key in chosen], f"{dataset.source}[{n}@{seed}]")


def cell_config(
    method: str, pairs: int, lr_step: float, seed: int, variation: Variation = Variation()
) -> TrainConfig:
    """The recipe for ``pairs`` pairs (batch, epochs, evaluation, patience) at the variation's step budget and
    rank, the method's lr for this grid point."""
    base = TrainConfig(method=method, seed=seed, device="cpu", rank=variation.rank)
    cfg = recommended_config(pairs, SPEC, base, target_steps=variation.target_steps)
    if method == "zero-shot":
        return replace(cfg, epochs=0)
    lr = LR_AT_BATCH_32[method] * math.sqrt(cfg.batch_size / 32) * lr_step
    return replace(cfg, lr=float(f"{lr:.3g}"))


def run_cell(
    data: Data, method: str, subset: ClipDataset, size: int, cfg: TrainConfig, variation: Variation
) -> dict[str, Any]:
    """Train one cell on a fresh CLIP (early stopping on validation), then score the kept weights on test."""
    clip = load_clip(data.spec, "cpu")
    started = time.perf_counter()
    result = train(clip, cfg, subset, data.cache, eval_set=data.val, log=lambda _: None)
    seconds = time.perf_counter() - started
    val = result.final_metrics or evaluate(clip, data.val, data.cache, tau=cfg.tau)
    by_pooling = {
        pooling: m["t2v"] for pooling, m in evaluate(clip, data.test, data.cache, tau=cfg.tau).items()
    }
    test = by_pooling[cfg.pooling]
    return {
        "method": method,
        "size": size,
        "target_steps": variation.target_steps,
        "rank": variation.rank,
        "pairs": len(subset),
        "config": cfg.to_dict(),
        "val_score": selection_score(val, cfg.pooling),
        "test": {"R@1": test["R@1"], "R@5": test["R@5"], "MRR": 100.0 * test["MRR"]},
        # the other pooling too (settings.search.pooling serves either): R@1 by pooling
        "test_R@1_by_pooling": {pooling: m["R@1"] for pooling, m in by_pooling.items()},
        "steps": result.steps,
        "best_epoch": result.best_epoch,
        "trainable_params": result.trainable_params,
        "train_s": round(seconds, 1),
        "test_videos": len(data.test),  # bench/quality_plot.py keeps no row of a smaller (--quick) test split
        "clip_sha256": clip.identity.checkpoint_sha256,  # which frozen CLIP (Variant.clip)
    }


def cell_path(
    out: Path, variant: str, method: str, size: int, cfg: TrainConfig, variation: Variation
) -> Path:
    return out / "cells" / variant / method / f"n{size}" / f"lr{cfg.lr:g}-s{cfg.seed}{variation.suffix}.json"


def row_key(cell: dict[str, Any]) -> tuple[str, str, int, Variation]:
    """What a table row stands for, of a cell or a row: (variant, method, training videos, variation)."""
    return cell["variant"], cell["method"], cell["size"], Variation.of(cell)


def cached_cell(path: Path, cfg: TrainConfig) -> dict[str, Any] | None:
    """The finished cell at ``path`` if it was run with exactly ``cfg``, else None (rerun)."""
    try:
        cell: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return cell if cell.get("config") == json.loads(json.dumps(cfg.to_dict())) else None


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def summarize(cells: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (variant, method, size, variation): the lr picked on validation at seed 0, test metrics
    over seeds."""
    rows = []
    groups: dict[tuple[str, str, int, Variation], list[dict[str, Any]]] = {}
    for cell in cells:
        groups.setdefault(row_key(cell), []).append(cell)
    for (variant, method, size, variation), group in sorted(
        groups.items(), key=lambda g: (g[0][0], METHODS.index(g[0][1]), g[0][3], g[0][2])
    ):
        lr = pick_lr(group)
        runs = [c for c in group if c["config"]["lr"] == lr]
        r1 = [c["test"]["R@1"] for c in runs]
        rows.append({
            "variant": variant, "method": method, "size": size, "target_steps": variation.target_steps,
            "rank": variation.rank, "lr": lr,
            "seeds": len(runs), "steps": round(statistics.mean(c.get("steps", 0) for c in runs)),
            "R@1": round(statistics.mean(r1), 2), "R@1_sd": round(statistics.stdev(r1), 2) if len(r1) > 1 else None,
            "R@5": round(statistics.mean(c["test"]["R@5"] for c in runs), 2),
            "MRR": round(statistics.mean(c["test"]["MRR"] for c in runs), 2),
            "trainable_params": runs[0]["trainable_params"],
            "train_s": round(statistics.mean(c["train_s"] for c in runs), 1),
            "test_videos": min(test_videos(c) for c in runs),
            "R@1_mean_pooling": _mean_or_none([c.get("test_R@1_by_pooling", {}).get("mean") for c in runs]),
        })  # fmt: skip
    return rows


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean, rounded, if every value is there (cells from before some field was recorded lack it)."""
    present = [v for v in values if v is not None]
    return round(statistics.mean(present), 2) if present and len(present) == len(values) else None


def test_videos(cell: dict[str, Any]) -> int:
    """How many test videos a cell (or row) was scored on; cells from before it was recorded ran the full study."""
    return int(cell.get("test_videos", FULL.test_videos))


def pick_lr(group: Sequence[dict[str, Any]]) -> float:
    """The grid point with the best seed-0 validation score (ties: the smaller lr)."""
    first = [c for c in group if c["config"]["seed"] == 0] or list(group)
    best = max(first, key=lambda c: (c["val_score"], -c["config"]["lr"]))
    return float(best["config"]["lr"])


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| variant | method | training videos | step budget (run) | lr (picked on validation) | seeds | test R@1 | sd | "
        "R@5 | MRR | trainable params | train s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sd = "-" if r["R@1_sd"] is None else f"{r['R@1_sd']:.1f}"
        budget = "-" if r["method"] == "zero-shot" else f"{r['target_steps']} ({r['steps']})"
        rank = Variation.of(r).rank
        method = r["method"] if rank == DEFAULT_RANK else f"{r['method']}, rank {rank}"
        lines.append(
            f"| {r['variant']} | {method} | {r['size']} | {budget} | {r['lr']:.1e} | "
            f"{r['seeds']} | {r['R@1']:.1f} | {sd} | "
            f"{r['R@5']:.1f} | {r['MRR']:.1f} | {r['trainable_params']:,} | {r['train_s']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """R@1 against training videos (log axis), one line per method, one panel per variant, sd as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = sorted({r["variant"] for r in rows}, key=_variant_order)
    columns = min(2, len(variants))  # a grid, so that every variant's panel stays readable
    grid_rows = math.ceil(len(variants) / columns)
    fig, axes = plt.subplots(grid_rows, columns, figsize=(6 * columns, 4.5 * grid_rows), squeeze=False)
    for ax in axes.flat[len(variants) :]:
        ax.set_visible(False)
    for ax, variant in zip(axes.flat, variants, strict=False):
        lines = sorted({(r["method"], Variation.of(r)) for r in rows if r["variant"] == variant},
                       key=lambda line: (METHODS.index(line[0]), line[1]))  # fmt: skip
        for method, variation in lines:
            points = [
                r
                for r in rows
                if (r["variant"], r["method"], Variation.of(r)) == (variant, method, variation)
            ]
            label = method if not variation.label or method == "zero-shot" else f"{method}, {variation.label}"
            ax.errorbar(
                [r["size"] for r in points], [r["R@1"] for r in points],
                yerr=[r["R@1_sd"] or 0.0 for r in points], marker="o", capsize=3, label=label,
                linestyle="-" if variation == Variation() else "--",
                color=f"C{METHODS.index(method)}",  # one colour per method in every panel
            )  # fmt: skip
        sizes = sorted({r["size"] for r in rows if r["variant"] == variant})
        ax.set(xscale="log", xlabel="training videos (3 captions each)", ylabel="held-out T2V R@1 (%)")
        ax.set_xticks(sizes, [str(n) for n in sizes])  # the sizes run, not powers of ten
        ax.minorticks_off()
        ax.set_title(f"toy domain B, {VARIANTS[variant].title if variant in VARIANTS else variant}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _variant_order(variant: str) -> tuple[int, str]:
    """VARIANTS' order (the committed CLIP's variants first), then any other by name."""
    names = list(VARIANTS)
    return (names.index(variant) if variant in names else len(names), variant)


Cells = dict[str, dict[str, Any]]  # by the path of the cell's file


def load_cells(out: Path) -> Cells:
    """Every finished cell under ``out`` (earlier runs' too: the tables cover all of them)."""
    cells: Cells = {}
    for path in sorted((out / "cells").glob("*/*/n*/*.json")):
        try:
            cells[str(path)] = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:  # cut short while written: that cell runs again
            continue
    return cells


def group_of(
    cells: Cells, variant: str, method: str, size: int, variation: Variation = Variation()
) -> list[dict[str, Any]]:
    return [c for c in cells.values() if row_key(c) == (variant, method, size, variation)]


def write_outputs(out: Path, cells: Cells) -> list[dict[str, Any]]:
    rows = summarize(list(cells.values()))
    write_atomically(out / "study.json", json.dumps({"cells": list(cells.values()), "rows": rows}, indent=1))
    write_atomically(out / "study.md", table(rows))
    plot(rows, out / "study.png")
    return rows


def planned(method: str, scale: Scale) -> list[tuple[int, float, int]]:
    """(size, lr step, seed) of a method's cells: the grid at seed 0 first; zero-shot once (it trains nothing)."""
    if method == "zero-shot":
        return [(size, 1.0, 0) for size in scale.sizes]  # one row per size, so its line spans the plot
    return [(size, step, 0) for size in scale.sizes for step in scale.lr_steps]


def run_variant(out: Path, variant: str, methods: Sequence[str], scale: Scale, cells: Cells) -> None:
    data = load_data(out, variant, scale, out / "frame-cache")
    for size in scale.sizes:
        for method in methods:
            for _, step, seed in [p for p in planned(method, scale) if p[0] == size]:
                run_or_reuse(out, data, variant, method, size, step, seed, cells, scale.variation)
            if method == "zero-shot":
                continue
            # every grid point run so far, by any run
            lr = pick_lr(group_of(cells, variant, method, size, scale.variation))
            for seed in scale.seeds[1:]:  # the other seeds at the lr validation chose
                run_or_reuse(out, data, variant, method, size, None, seed, cells, scale.variation, lr=lr)


def run_or_reuse(
    out: Path, data: Data, variant: str, method: str, size: int, step: float | None, seed: int,
    cells: Cells, variation: Variation, lr: float | None = None,
) -> dict[str, Any]:  # fmt: skip
    """The cell of grid point ``step`` (or of the chosen ``lr``), from its file when it ran with these settings."""
    if method == "zero-shot":
        variation = Variation()  # it trains nothing: one row whatever the budget or rank
    subset = videos_subset(data.train, size, seed)
    cfg = cell_config(method, len(subset), step or 1.0, seed, variation)
    if lr is not None:
        cfg = replace(cfg, lr=lr)
    path = cell_path(out, variant, method, size, cfg, variation)
    cell = cached_cell(path, cfg)
    if cell is None:
        cell = {"variant": variant, **run_cell(data, method, subset, size, cfg, variation)}
        write_atomically(path, json.dumps(cell, indent=1))
        print(f"{variant} {method} n={size} lr={cfg.lr:g} seed={cfg.seed}: test R@1 {cell['test']['R@1']:.1f} "
              f"(val {cell['val_score']:.1f}, {cell['train_s']:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip
    # from the files, this cell's included: cells another run on the same OUT finished meanwhile stay in the tables
    cells.update(load_cells(out))
    write_outputs(out, cells)
    return cell


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["b", "known"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--sizes", nargs="+", type=int)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--lr-steps", nargs="+", type=float, help="grid points, x the method's lr (1/3 1 3)")
    parser.add_argument(
        "--target-steps", type=int, default=TARGET_STEPS, help=f"the recipe's step budget ({TARGET_STEPS})"
    )
    parser.add_argument(
        "--rank", type=int, default=DEFAULT_RANK, help=f"the adapter's bottleneck rank ({DEFAULT_RANK})"
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of the pipeline, not a measurement")
    args = parser.parse_args(argv)
    scale = QUICK if args.quick else FULL
    scale = replace(
        scale,
        sizes=tuple(args.sizes or scale.sizes),
        seeds=tuple(args.seeds or scale.seeds),
        lr_steps=tuple(args.lr_steps or scale.lr_steps),
        variation=Variation(args.target_steps, args.rank),
    )
    if args.target_steps < 1 or args.rank < 1:
        parser.error("--target-steps and --rank must be at least 1")
    if scale.seeds[0] != 0:
        parser.error("--seeds must start with 0: the learning rate is picked at seed 0")
    cells = load_cells(args.out)
    for variant in args.variants:
        run_variant(args.out, variant, args.methods, scale, cells)
    rows = write_outputs(args.out, cells)
    return {"out": str(args.out), "cells": len(cells), "rows": rows}


if __name__ == "__main__":
    print(json.dumps(main()))

"""What a run leaves behind for people: ``report.json``, PNG plots (loss and R@1 per epoch), the compare table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from training.loop import TrainResult

MIB = 1024 * 1024


def result_summary(result: TrainResult) -> dict[str, Any]:
    """The JSON-ready facts of one run (config, sizes, cost, per-epoch history, final metrics)."""
    peak = result.peak_memory_bytes
    return {
        "method": result.config.method,
        "config": result.config.to_dict(),
        "trainable_params": result.trainable_params,
        "total_params": result.total_params,
        "trainable_percent": 100.0 * result.trainable_params / max(1, result.total_params),
        "steps": result.steps,
        "train_seconds": round(result.train_seconds, 3),
        "peak_memory_mib": None if peak is None else round(peak / MIB, 1),
        "history": result.history,
        "final_metrics": result.final_metrics,
        "best_epoch": result.best_epoch,
        "stopped_early": result.stopped_early,
    }


def write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_report(out_dir: Path, result: TrainResult, **context: Any) -> Path:
    """``report.json`` (run summary plus ``context``: model, data, adapter version...) and ``training.png``."""
    report = {**result_summary(result), **context}
    path = out_dir / "report.json"
    write_json(path, report)
    plot_history(result.history, out_dir / "training.png", result.config.pooling, title=result.config.method)
    return path


def plot_history(history: Sequence[dict[str, Any]], path: Path, pooling: str, title: str = "") -> Path:
    """Training loss and held-out T2V R@1 (both poolings) per epoch, side by side."""
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (ax_loss, ax_r1) = plt.subplots(1, 2, figsize=(10, 4))
    losses = [(row["epoch"], row["loss"]) for row in history if row.get("loss") is not None]
    if losses:
        ax_loss.plot(*zip(*losses, strict=True), marker="o")
    ax_loss.set(xlabel="epoch", ylabel="training loss (symmetric InfoNCE)", title=f"{title} loss".strip())
    for name in (pooling, *(p for p in ("mean", "text_conditioned") if p != pooling)):
        points = [
            (r["epoch"], r["eval"][name]["t2v"]["R@1"])
            for r in history
            if r.get("eval") and name in r["eval"]
        ]
        if points:
            ax_r1.plot(*zip(*points, strict=True), marker="o", label=f"{name} pooling")
    ax_r1.set(xlabel="epoch", ylabel="held-out T2V R@1 (%)", title="retrieval")
    if ax_r1.lines:
        ax_r1.legend()
    else:
        ax_r1.text(
            0.5, 0.5, "no evaluation data (--eval-data)", ha="center", va="center", transform=ax_r1.transAxes
        )
    for ax in (ax_loss, ax_r1):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare_row(summary: dict[str, Any], full_params: int | None) -> dict[str, Any]:
    """One line of the comparison from a run's :func:`result_summary` (or its ``report.json``): T2V metrics
    (training pooling), V2T R@1, mean-pool R@1, cost."""
    config = summary["config"]
    metrics = summary.get("final_metrics") or {}
    main = metrics.get(config["pooling"], {})
    t2v, v2t = main.get("t2v", {}), main.get("v2t", {})
    mean_t2v = metrics.get("mean", {}).get("t2v", {})
    trainable = summary["trainable_params"]
    return {
        "method": config["method"],
        "lr": config["lr"] if summary["steps"] else None,
        "T2V R@1": t2v.get("R@1"),
        "T2V R@5": t2v.get("R@5"),
        "T2V R@10": t2v.get("R@10"),
        "T2V MdR": t2v.get("MdR"),
        "T2V MnR": t2v.get("MnR"),
        "V2T R@1": v2t.get("R@1"),
        "T2V R@1 (mean pool)": mean_t2v.get("R@1"),
        "trainable params": trainable,
        "% of full": (100.0 * trainable / full_params) if full_params else None,
        "train s": round(summary["train_seconds"], 1),
        "peak MiB": summary["peak_memory_mib"],
    }


def compare_markdown(rows: Sequence[dict[str, Any]], caption: str = "") -> str:
    """A Markdown table of :func:`compare_row` rows."""
    if not rows:
        return ""
    columns = list(rows[0])
    lines = [f"| {' | '.join(columns)} |", f"|{'|'.join('---' for _ in columns)}|"]
    lines += [f"| {' | '.join(_cell(row.get(c)) for c in columns)} |" for row in rows]
    return (caption + "\n\n" if caption else "") + "\n".join(lines) + "\n"


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value and abs(value) < 0.01:
            return f"{value:.1e}"
        return f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def write_compare(
    out_dir: Path, rows: Sequence[dict[str, Any]], context: dict[str, Any]
) -> tuple[Path, Path]:
    """``compare.json`` (rows + context) and ``compare.md`` (the table and how it was made)."""
    json_path, md_path = out_dir / "compare.json", out_dir / "compare.md"
    write_json(json_path, {"rows": list(rows), **context})
    caption = "\n".join(
        f"- {key}: {value}" for key, value in context.items() if not isinstance(value, dict | list)
    )
    md_path.write_text(compare_markdown(rows, caption), encoding="utf-8")
    return json_path, md_path

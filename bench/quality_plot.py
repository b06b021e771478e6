"""docs/quality.png: the study's plot over the cells of a study directory plus the rows of the first day's cells.

    .venv/bin/python bench/quality_plot.py --out runs/study [--png docs/quality.png]

``bench/study.py`` draws ``OUT/study.png`` from the cells under ``OUT``. The first day of the study (2026-12-02:
domain B, 40 and 120 videos, full fine-tuning, LoRA and the Cross-Modal Adapter) ran on a machine whose cell
files did not survive; their summarized rows are kept here, as docs/quality.md's table prints them, so the
figure in the docs can show every measured point.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from study import TARGET_STEPS, plot, row_key

# (method, training videos, test R@1 mean, sd over 2 seeds): docs/quality.md's table, new words, 2026-12-02
FIRST_DAY = [
    ("full", 40, 6.2, 3.2),
    ("lora", 40, 5.5, 0.7),
    ("cma", 40, 6.8, 1.8),
    ("full", 120, 21.2, 3.9),
    ("lora", 120, 8.8, 1.8),
    ("cma", 120, 8.8, 4.6),
]


def first_day_rows() -> list[dict[str, Any]]:
    return [
        {"variant": "b", "method": m, "size": n, "target_steps": TARGET_STEPS, "R@1": r1, "R@1_sd": sd}
        for m, n, r1, sd in FIRST_DAY
    ]


def with_first_day(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``rows`` plus the first day's, except where ``rows`` has that (variant, method, size, budget) itself."""
    have = {row_key(r) for r in rows}
    return [r for r in first_day_rows() if row_key(r) not in have] + rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a bench/study.py --out directory")
    parser.add_argument("--png", type=Path, default=Path("docs/quality.png"))
    args = parser.parse_args()
    rows = with_first_day(json.loads((args.out / "study.json").read_text(encoding="utf-8"))["rows"])
    plot(rows, args.png)
    print(json.dumps({"png": str(args.png), "rows": len(rows)}))


if __name__ == "__main__":
    main()

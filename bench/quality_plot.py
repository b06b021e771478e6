"""docs/quality.png: the study's plot over every row measured, kept in docs/quality-rows.json.

    .venv/bin/python bench/quality_plot.py --out runs/study [--rows docs/quality-rows.json] [--png docs/quality.png]

``bench/study.py`` draws ``OUT/study.png`` from the cells under ``OUT``, but a study's cell files live on the
machine that ran it and earlier machines' did not survive. Their summarized rows (docs/quality.md's table) are
kept in ``--rows``; this script adds the rows of the study under ``--out`` to them (a row of the study replaces
the kept row of the same variant, method, size, step budget and rank), writes the merged rows back, so that the
next study on another machine keeps them too, and draws the figure from all of them. A study whose rows were scored
on a smaller test split than the full study's (``--quick``: a smoke run, not a measurement) is refused.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from study import FULL, plot, row_key, test_videos

ABOUT = (
    "bench/study.py's rows (older ones as docs/quality.md's table printed them); bench/quality_plot.py adds "
    "every study run's rows and rewrites this file"
)


def merged(kept: Sequence[dict[str, Any]], new: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``kept`` plus ``new``, a row of ``new`` replacing the kept row of its (variant, method, size, variation)."""
    by_key = {row_key(r): r for r in kept}
    by_key.update({row_key(r): r for r in new})
    return sorted(by_key.values(), key=row_key)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="a bench/study.py --out directory")
    parser.add_argument("--rows", type=Path, default=Path("docs/quality-rows.json"))
    parser.add_argument("--png", type=Path, default=Path("docs/quality.png"))
    args = parser.parse_args()
    kept = json.loads(args.rows.read_text(encoding="utf-8"))["rows"] if args.rows.is_file() else []
    new = json.loads((args.out / "study.json").read_text(encoding="utf-8"))["rows"]
    smoke = sorted({test_videos(r) for r in new if test_videos(r) < FULL.test_videos})
    if smoke:
        parser.error(
            f"{args.out} has rows scored on {smoke[0]} test videos, not the study's {FULL.test_videos} "
            "(a --quick run: a smoke test, not a measurement); nothing was written"
        )
    rows = merged(kept, new)
    args.rows.write_text(json.dumps({"about": ABOUT, "rows": rows}, indent=1) + "\n", encoding="utf-8")
    plot(rows, args.png)
    print(json.dumps({"png": str(args.png), "rows": len(rows)}))


if __name__ == "__main__":
    main()

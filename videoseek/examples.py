"""Example queries of a collection: a few queries known to find something in it, which the web page offers.

``videoseek demo`` writes the captions it checked against its running server; an admin sets them with
``PUT /collections/{name}/examples``. One small JSON file per collection (``DataLayout.example_queries``),
replaced atomically and removed with the collection.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from videoseek.layout import DataLayout

MAX_EXAMPLES = 24


def read_examples(layout: DataLayout, collection: str) -> list[str]:
    """The collection's example queries ([] when none were set, or the file is unreadable)."""
    try:
        document = json.loads(layout.example_queries(collection).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    examples = document.get("examples") if isinstance(document, dict) else None
    return [str(q) for q in examples[:MAX_EXAMPLES]] if isinstance(examples, list) else []


def write_examples(layout: DataLayout, collection: str, examples: list[str]) -> list[str]:
    """Replace the collection's example queries (blank ones dropped, at most ``MAX_EXAMPLES``)."""
    kept = [q.strip() for q in examples if q.strip()][:MAX_EXAMPLES]
    path = layout.example_queries(collection)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump({"examples": kept}, handle)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return kept

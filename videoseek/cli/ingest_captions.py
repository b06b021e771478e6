"""``videoseek ingest --captions captions.jsonl``: captions for the files being ingested, stored as their
training pairs.

The file is the training manifest's format (``training/data.py``), so one file serves both ``videoseek train``
and ingest: one JSON object a line, ``{"video": "...", "caption": "...", "start_s"?: s, "end_s"?: s}``. A line's
``video`` names one of the files given to the command: as a path relative to the manifest (what training
reads), or by its file name alone. Every line is checked before anything is submitted; a line that names no
file given, names two, or breaks a rule stops the command with its line number and nothing stored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from videoseek.cli.ingest_summary import Entry
from videoseek.pairs import MAX_PAIRS_PER_REQUEST, InvalidPair, PairDraft

MAX_MANIFEST_BYTES = 256 * 1024 * 1024


class CaptionFileError(ValueError):
    """The captions file cannot be used as given; the message names the line and the fix."""


def _draft(row: object) -> tuple[str, PairDraft]:
    if not isinstance(row, dict):
        raise CaptionFileError('expected an object like {"video": "a.mp4", "caption": "..."}')
    video, caption = row.get("video"), row.get("caption")
    if not isinstance(video, str) or not video:
        raise CaptionFileError(
            'missing "video" (the file it is for: a path relative to this file, or a name)'
        )
    if not isinstance(caption, str):
        raise CaptionFileError('missing "caption" (a non-empty string)')
    start, end = row.get("start_s"), row.get("end_s")
    for name, value in (("start_s", start), ("end_s", end)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise CaptionFileError(f'"{name}" must be a number of seconds, got {value!r}')
    try:
        return video, PairDraft.checked("caption", caption, start, end, source="cli")
    except InvalidPair as exc:
        raise CaptionFileError(str(exc)) from None


def read_caption_file(path: Path) -> list[tuple[int, str, PairDraft]]:
    """(line number, the video it names, the caption) for every line; ``CaptionFileError`` at the first bad one."""
    if not path.is_file():
        raise CaptionFileError(f"captions file {path} does not exist (or is not a file)")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise CaptionFileError(f"captions file {path} is over {MAX_MANIFEST_BYTES // 2**20} MiB")
    lines: list[tuple[int, str, PairDraft]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise CaptionFileError(f"{path} is not UTF-8 text (byte {exc.start})") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            video, draft = _draft(json.loads(line))
        except json.JSONDecodeError as exc:
            raise CaptionFileError(f"{path.name} line {number}: not valid JSON ({exc.msg})") from exc
        except CaptionFileError as exc:
            raise CaptionFileError(f"{path.name} line {number}: {exc}") from exc
        lines.append((number, video, draft))
    return lines


def captions_by_file(path: Path, entries: list[Entry]) -> dict[Path, list[PairDraft]]:
    """The captions file's captions grouped by the file given to the command that each line names."""
    given = [e.path for e in entries if e.path is not None]
    by_path = {p.resolve(): p for p in given}
    by_name: dict[str, list[Path]] = {}
    for p in given:
        by_name.setdefault(p.name, []).append(p)
    out: dict[Path, list[PairDraft]] = {}
    for number, video, draft in read_caption_file(path):
        target = by_path.get((path.parent / video).resolve())
        if target is None:
            named = by_name.get(Path(video).name, [])
            if len(named) > 1:
                raise CaptionFileError(
                    f"{path.name} line {number}: {video!r} names {len(named)} of the files given "
                    f"({', '.join(str(p) for p in named[:3])}): give its path relative to {path.name}"
                )
            if not named:
                raise CaptionFileError(
                    f"{path.name} line {number}: {video!r} is not one of the files given to ingest (give the "
                    "file too, or remove the line)"
                )
            target = named[0]
        out.setdefault(target, []).append(draft)
    for target, drafts in out.items():
        if len(drafts) > MAX_PAIRS_PER_REQUEST:
            raise CaptionFileError(
                f"{path.name} holds {len(drafts)} captions for {target.name}: at most {MAX_PAIRS_PER_REQUEST} per video"
            )
    return out


def upload_field(drafts: list[PairDraft]) -> str:
    """The drafts as an upload's ``captions`` form field (what ``ingest --api`` sends)."""
    rows: list[dict[str, Any]] = []
    for draft in drafts:
        row: dict[str, Any] = {"text": draft.text}
        if draft.start_s is not None:
            row["start_s"] = draft.start_s
        if draft.end_s is not None:
            row["end_s"] = draft.end_s
        rows.append(row)
    return json.dumps(rows)

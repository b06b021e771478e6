"""Serving files with HTTP Range support (RFC 9110 section 14), so a browser's <video> can seek.

One byte range per request (what browsers send); a multi-range request gets the whole file, which the RFC
allows. A byte range that cannot be satisfied, or that is not even well formed, is a JSON 416.
"""

from __future__ import annotations

import mimetypes
import os
import re
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from service.errors import NotFound, RangeNotSatisfiable

CHUNK_BYTES = 256 * 1024
# ASCII only: a header is latin-1 text, where "²" is a digit to str.isdigit() but not to int().
_RANGE = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*$")
# Positions past any file's size; longer digit strings are clamped to it (int() refuses over 4300 digits).
_BEYOND_ANY_FILE = 10**18

# mimetypes misses several containers that browsers (or at least download managers) care about.
_EXTRA_TYPES = {".mkv": "video/x-matroska", ".webm": "video/webm", ".ts": "video/mp2t", ".m4v": "video/mp4"}


def guess_media_type(path: Path) -> str:
    return (
        _EXTRA_TYPES.get(path.suffix.lower())
        or mimetypes.guess_type(path.name)[0]
        or "application/octet-stream"
    )


def _position(digits: str) -> int:
    """A byte position from the header's digits; an absurdly long one means "past the end"."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) < 18 else _BEYOND_ANY_FILE


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte to send, or None for the whole file.

    Raises :class:`RangeNotSatisfiable` for a malformed or unsatisfiable byte range.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None  # a unit we do not know is ignored (RFC 9110 14.2)
    if "," in spec:
        return None  # several ranges: serving the whole representation is allowed
    unsatisfiable = RangeNotSatisfiable(
        f"cannot serve range {header!r} of a {size}-byte file", headers={"Content-Range": f"bytes */{size}"}
    )
    match = _RANGE.match(spec)
    if match is None or (not match.group(1) and not match.group(2)):
        raise unsatisfiable
    first_text, last_text = match.groups()
    if not first_text:  # suffix range: the last N bytes
        length = _position(last_text)
        if length == 0 or size == 0:
            raise unsatisfiable
        return max(size - length, 0), size - 1
    first = _position(first_text)
    last = _position(last_text) if last_text else size - 1
    if first >= size or last < first:
        raise unsatisfiable
    return first, min(last, size - 1)


async def _read(path: Path, first: int, last: int) -> AsyncIterator[bytes]:
    remaining = last - first + 1
    async with await anyio.open_file(path, "rb") as handle:
        await handle.seek(first)
        while remaining > 0:
            chunk = await handle.read(min(CHUNK_BYTES, remaining))
            if not chunk:  # the file shrank under us: stop rather than hang the client
                return
            remaining -= len(chunk)
            yield chunk


def file_response(request: Request, path: Path, media_type: str | None = None) -> StreamingResponse:
    """200 with the whole file or 206 with the requested range; 404 if the file is missing."""
    try:
        stat = path.stat()
    except OSError as exc:  # missing, or a name the file system refuses (too long, a loop): not here
        raise NotFound("the file is not available (it may have been deleted)") from exc
    size = stat.st_size
    etag = f'"{stat.st_mtime_ns:x}-{size:x}"'
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": etag,
        "Last-Modified": formatdate(stat.st_mtime, usegmt=True),
        "Cache-Control": "private, max-age=3600",
    }
    if_range = request.headers.get("if-range")
    wanted = parse_range(request.headers.get("range"), size) if if_range in (None, etag) else None
    first, last = wanted if wanted is not None else (0, size - 1)
    headers["Content-Length"] = str(max(last - first + 1, 0))
    if wanted is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return StreamingResponse(
        _read(path, first, last) if size else _empty(),
        status_code=206 if wanted is not None else 200,
        media_type=media_type or guess_media_type(path),
        headers=headers,
    )


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""


def is_within(path: Path, root: Path) -> bool:
    """True when ``path`` resolves inside ``root`` (no escape through '..' or symlinks)."""
    try:
        return os.path.commonpath([path.resolve(), root.resolve()]) == str(root.resolve())
    except ValueError:
        return False

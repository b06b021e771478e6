"""A cheap upload check: refuse (415) bytes that are certainly not a video, before anything is queued.

Only the first bytes are read, in pure Python: FFmpeg never touches an upload inside the API process (the
worker decodes in a sandbox). Containers are many and odd, so this is a deny list of formats that are
clearly something else (text, still images, documents, archives, audio-only formats); anything else goes to
the worker, which fails the job with a precise reason when it cannot find a decodable video stream.
"""

from __future__ import annotations

from pathlib import Path

HEAD_BYTES = 4096

_NOT_VIDEO: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "a JPEG image"),
    (0, b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (0, b"BM", "a BMP image"),
    (0, b"II*\x00", "a TIFF image"),
    (0, b"MM\x00*", "a TIFF image"),
    (0, b"%PDF", "a PDF document"),
    (0, b"PK\x03\x04", "a ZIP archive"),
    (0, b"\x1f\x8b", "a gzip archive"),
    (0, b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (0, b"Rar!", "a RAR archive"),
    (0, b"\x7fELF", "an executable"),
    (0, b"MZ", "an executable"),
    (0, b"ID3", "an MP3 audio file"),
    (0, b"fLaC", "a FLAC audio file"),
    (0, b"SQLite format 3\x00", "a database"),
)
_RIFF_NOT_VIDEO = {b"WEBP": "a WebP image", b"WAVE": "a WAV audio file"}


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the end of the sample is fine
            return False
        text = head[: exc.start].decode("utf-8")
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)


def not_a_video(path: Path) -> str | None:
    """What the file clearly is when it is certainly not a video (e.g. "a PNG image"), else None."""
    with path.open("rb") as handle:
        head = handle.read(HEAD_BYTES)
    if not head:
        return "an empty file"
    for offset, magic, what in _NOT_VIDEO:
        if head[offset : offset + len(magic)] == magic:
            return what
    if head[:4] == b"RIFF" and head[8:12] in _RIFF_NOT_VIDEO:
        return _RIFF_NOT_VIDEO[head[8:12]]
    if _looks_like_text(head):
        return "a text file"
    return None

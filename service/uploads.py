"""Multipart video uploads streamed straight to disk.

The request body is parsed incrementally (python-multipart's push parser); file bytes go to a temporary file
under the uploads directory as they arrive, and the size limit is enforced while streaming, so neither a huge
upload nor a lying Content-Length can fill memory or disk. The client's file name is only kept (sanitised)
as a display name: paths on disk are always generated.
"""

from __future__ import annotations

import contextlib
import re
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import InvalidRequest, InvalidUploadMetadata, PayloadTooLarge, UnsupportedMedia
from videoseek.metadata import MAX_METADATA_BYTES, InvalidMetadata, parse_metadata

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
METADATA_FIELD = "metadata"
MAX_TEXT_FIELD_BYTES = 1024  # a collection name and the like: small text fields a route asks for by name
# Room for part headers, boundaries and the metadata field on top of the file itself.
FORM_OVERHEAD_BYTES = MAX_METADATA_BYTES + 64 * 1024
_UNSAFE = re.compile(r"[^A-Za-z0-9._ ()+-]+")


def safe_display_name(name: str | None) -> str:
    """A harmless version of a client-supplied file name: no directories, controls or odd characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = unicodedata.normalize("NFKC", base)
    base = _UNSAFE.sub("_", base).strip(" ._")[:200]
    return base or "upload"


@dataclass
class ReceivedUpload:
    """A completed upload: the bytes on disk plus the form's other fields."""

    path: Path
    size: int
    filename: str
    content_type: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    fields: dict[str, str] = field(default_factory=dict)  # the text fields the route asked for, as sent


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None


class _FormReader:
    """python-multipart callbacks that route the ``file`` part to disk and keep ``metadata`` (and the small text
    fields named in ``text_fields``) in memory."""

    def __init__(self, dest_dir: Path, max_bytes: int, text_fields: frozenset[str] = frozenset()) -> None:
        self.dest_dir = dest_dir
        self.max_bytes = max_bytes
        self.text_fields = text_fields
        self.texts: dict[str, bytearray] = {}
        self.file_path: Path | None = None
        self.file_size = 0
        self.file_part: _Part | None = None
        self.metadata = bytearray()
        self._handle: IO[bytes] | None = None
        self._part = _Part()
        self._headers: dict[str, str] = {}
        self._field = bytearray()
        self._value = bytearray()

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._part, self._headers = _Part(), {}

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = self._value.decode("latin-1")
        self._field.clear()
        self._value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name, filename = options.get(b"name"), options.get(b"filename")
        self._part = _Part(
            name=name.decode("utf-8", "replace") if name is not None else None,
            filename=filename.decode("utf-8", "replace") if filename is not None else None,
            content_type=self._headers.get("content-type"),
        )
        if self._part.name == FILE_FIELD:
            if self.file_path is not None:
                raise InvalidRequest(f"send exactly one '{FILE_FIELD}' part")
            self.file_part = self._part
            self.file_path = self.dest_dir / f"{uuid.uuid4().hex}.part"
            self._handle = self.file_path.open("xb")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part.name == FILE_FIELD and self._handle is not None:
            self.file_size += end - start
            if self.file_size > self.max_bytes:
                raise PayloadTooLarge(f"the video is larger than the {self.max_bytes}-byte limit")
            self._handle.write(data[start:end])
        elif self._part.name == METADATA_FIELD:
            self.metadata.extend(data[start:end])
            if len(self.metadata) > MAX_METADATA_BYTES:
                raise PayloadTooLarge(f"metadata is larger than {MAX_METADATA_BYTES} bytes")
        elif self._part.name in self.text_fields:
            text = self.texts.setdefault(self._part.name, bytearray())
            text.extend(data[start:end])
            if len(text) > MAX_TEXT_FIELD_BYTES:
                raise InvalidRequest(f"field '{self._part.name}' is longer than {MAX_TEXT_FIELD_BYTES} bytes")

    def _end(self) -> None:
        if self._part.name == FILE_FIELD and self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def file_open(self) -> bool:
        return self._handle is not None

    def discard(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self.file_path is not None:
            self.file_path.unlink(missing_ok=True)


def _boundary(request: Request) -> bytes:
    content_type, options = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or not options.get(b"boundary"):
        raise UnsupportedMedia(
            f"send the video as multipart/form-data with a '{FILE_FIELD}' part "
            f"(and optionally a JSON '{METADATA_FIELD}' part)"
        )
    return options[b"boundary"]


def parse_upload_metadata(raw: bytes) -> dict[str, Any]:
    """The metadata field, checked by every rule the stores need (422 naming the rule and the path)."""
    try:
        return parse_metadata(raw)
    except InvalidMetadata as exc:
        raise InvalidUploadMetadata(
            f"{exc} (metadata rule '{exc.rule}')", rule=str(exc.rule), path=exc.path
        ) from exc


def _check_declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length", "").strip()
    if not re.fullmatch(r"[0-9]+", declared):  # absent or not a number (ASCII: "²".isdigit() is True)
        return  # the streamed byte count is checked all the same
    if len(declared) > 18 or int(declared) > max_bytes + FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(f"the upload is larger than the {max_bytes}-byte limit")


async def receive_upload(
    request: Request, dest_dir: Path, max_bytes: int, text_fields: frozenset[str] = frozenset()
) -> ReceivedUpload:
    """Stream a multipart upload to a new file in ``dest_dir``; 413/415/422 on bad input, nothing left behind.

    ``text_fields``: other small form fields to return (``fields``), e.g. ``collection`` for ``POST /ingest``.
    """
    boundary = _boundary(request)
    _check_declared_length(request, max_bytes)
    dest_dir.mkdir(parents=True, exist_ok=True)
    reader = _FormReader(dest_dir, max_bytes, text_fields)
    parser = MultipartParser(boundary, reader.callbacks(), max_size=max_bytes + FORM_OVERHEAD_BYTES)
    try:
        received = 0
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_bytes + FORM_OVERHEAD_BYTES:
                raise PayloadTooLarge(f"the upload is larger than the {max_bytes}-byte limit")
            # Disk writes happen inside the parser callbacks: keep them off the event loop.
            await anyio.to_thread.run_sync(parser.write, chunk)
        parser.finalize()
        if reader.file_path is None or reader.file_part is None:
            raise InvalidRequest(f"multipart field '{FILE_FIELD}' is required")
        if reader.file_open:
            raise InvalidRequest("the multipart body ended in the middle of the file: upload it again")
        metadata = parse_upload_metadata(bytes(reader.metadata))
    except MultipartParseError as exc:
        reader.discard()
        raise InvalidRequest(f"malformed multipart body: {exc}") from exc
    except BaseException:
        reader.discard()
        raise
    return ReceivedUpload(
        path=reader.file_path,
        size=reader.file_size,
        filename=safe_display_name(reader.file_part.filename),
        content_type=reader.file_part.content_type,
        metadata=metadata,
        fields={name: bytes(value).decode("utf-8", "replace") for name, value in reader.texts.items()},
    )


# A live upload writes to its .part as its bytes arrive, and the .part is moved into videos/ within seconds of
# the last byte (hashed, then renamed). Clients and proxies give up on a request body that stalls for minutes
# (nginx waits 60 s between reads), so a .part nobody wrote to for an hour belongs to a request that died.
STALE_UPLOAD_S = 3600


def startup_sweep_idle_s(owns_data_dir: bool) -> float | None:
    """How long a .part must have been idle for the sweep at start to remove it (None: remove every one).

    A process that owns the data directory (embedded mode) knows every .part at start is a dead process's.
    Otherwise other API replicas share the uploads directory and may be receiving uploads right now.
    """
    return None if owns_data_dir else STALE_UPLOAD_S


def sweep_partial_uploads(dest_dir: Path, idle_s: float | None) -> int:
    """Remove the partial uploads a killed process left behind: those idle for ``idle_s`` (None: all)."""
    if not dest_dir.is_dir():
        return 0
    cutoff = None if idle_s is None else time.time() - idle_s
    removed = 0
    for partial in dest_dir.glob("*.part"):
        with contextlib.suppress(OSError):
            if cutoff is None or partial.stat().st_mtime < cutoff:
                partial.unlink()
                removed += 1
    return removed

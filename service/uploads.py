"""Multipart video uploads streamed straight to disk, with the small fields that come with them.

The request body is parsed incrementally (python-multipart's push parser); file bytes go to a temporary file
under the uploads directory as they arrive, and the size limit is enforced while streaming, so neither a huge
upload nor a lying Content-Length can fill memory or disk. The client's file name is only kept (sanitised)
as a display name: paths on disk are always generated. Beside the file, a form may carry ``metadata`` (JSON),
``captions`` (JSON, for this video) and ``subtitles`` (sidecar .srt/.vtt files), all checked before the
file is handed on.
"""

from __future__ import annotations

import contextlib
import re
import time
import unicodedata
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import Request
from pydantic import Field, TypeAdapter, ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.errors import InvalidRequest, InvalidUploadMetadata, PayloadTooLarge, UnsupportedMedia
from service.schemas import UploadCaption
from videoseek.metadata import MAX_METADATA_BYTES, InvalidMetadata, parse_metadata
from videoseek.pairs import MAX_PAIRS_PER_REQUEST, InvalidPair, PairDraft
from videoseek.subtitle_text import MAX_CUES_PER_VIDEO, MAX_SIDECAR_BYTES, SubtitleFileError, parse_sidecar

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

FILE_FIELD = "file"
METADATA_FIELD = "metadata"
CAPTIONS_FIELD = "captions"  # JSON: [{"text", "start_s"?, "end_s"?}] for the uploaded video
SUBTITLES_FIELD = "subtitles"  # sidecar .srt / .vtt files, one part each
MAX_CAPTIONS_BYTES = 1024 * 1024  # a thousand captions of a thousand characters
MAX_SUBTITLE_FILES = 4
MAX_TEXT_FIELD_BYTES = 1024  # a collection name and the like: small text fields a route asks for by name
# Room for part headers, boundaries and the small fields on top of the file itself.
FORM_OVERHEAD_BYTES = (
    MAX_METADATA_BYTES + MAX_CAPTIONS_BYTES + MAX_SUBTITLE_FILES * MAX_SIDECAR_BYTES + 64 * 1024
)
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
    pairs: list[PairDraft] = field(default_factory=list)  # captions and sidecar cues for the video
    fields: dict[str, str] = field(default_factory=dict)  # the text fields the route asked for, as sent


@dataclass
class _Part:
    name: str | None = None
    filename: str | None = None
    content_type: str | None = None


class _FormReader:
    """python-multipart callbacks that route the ``file`` part to disk and keep the small fields (``metadata``,
    ``captions``, ``subtitles`` files, and the text fields named in ``text_fields``) in memory, each within its
    limit."""

    def __init__(self, dest_dir: Path, max_bytes: int, text_fields: frozenset[str] = frozenset()) -> None:
        self.dest_dir = dest_dir
        self.max_bytes = max_bytes
        self.text_fields = text_fields
        self.texts: dict[str, bytearray] = {}
        self.file_path: Path | None = None
        self.file_size = 0
        self.file_part: _Part | None = None
        self.metadata = bytearray()
        self.captions = bytearray()
        self.subtitles: list[tuple[str, bytearray]] = []
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
        elif self._part.name == SUBTITLES_FIELD:
            if len(self.subtitles) == MAX_SUBTITLE_FILES:
                raise InvalidRequest(
                    f"send at most {MAX_SUBTITLE_FILES} '{SUBTITLES_FIELD}' files per upload"
                )
            self.subtitles.append((self._part.filename or "", bytearray()))

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
        elif self._part.name == CAPTIONS_FIELD:
            self.captions.extend(data[start:end])
            if len(self.captions) > MAX_CAPTIONS_BYTES:
                raise PayloadTooLarge(f"captions are larger than {MAX_CAPTIONS_BYTES} bytes")
        elif self._part.name == SUBTITLES_FIELD and self.subtitles:
            name, content = self.subtitles[-1]
            content.extend(data[start:end])
            if len(content) > MAX_SIDECAR_BYTES:
                raise PayloadTooLarge(
                    f"subtitle file {safe_display_name(name)!r} is over {MAX_SIDECAR_BYTES} bytes"
                )
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
            f"send the video as multipart/form-data with a '{FILE_FIELD}' part (and optionally a JSON "
            f"'{METADATA_FIELD}' part, a JSON '{CAPTIONS_FIELD}' part and '{SUBTITLES_FIELD}' .srt/.vtt files)"
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


_UPLOAD_CAPTIONS: TypeAdapter[list[UploadCaption]] = TypeAdapter(
    Annotated[list[UploadCaption], Field(max_length=MAX_PAIRS_PER_REQUEST)]
)


def _parse_captions(raw: bytes) -> list[PairDraft]:
    """The captions field: a JSON list of {"text", "start_s"?, "end_s"?} (422 naming the first problem)."""
    if not raw.strip():
        return []
    try:
        captions = _UPLOAD_CAPTIONS.validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidRequest(
            f"{CAPTIONS_FIELD}{'[' + where + ']' if where else ''}: {first['msg'].removeprefix('Value error, ')} "
            f'(send a JSON list like [{{"text": "a dog runs", "start_s": 2, "end_s": 6}}], at most '
            f"{MAX_PAIRS_PER_REQUEST})"
        ) from None
    try:
        return [PairDraft.checked("caption", c.text, c.start_s, c.end_s, source="upload") for c in captions]
    except InvalidPair as exc:
        raise InvalidRequest(f"{CAPTIONS_FIELD}: {exc}") from None


def _parse_subtitles(files: list[tuple[str, bytearray]]) -> list[PairDraft]:
    """The cues of the sidecar subtitle files (422 naming a file that is not SubRip or WebVTT)."""
    drafts: list[PairDraft] = []
    for name, content in files:
        try:
            cues = parse_sidecar(safe_display_name(name), bytes(content))
        except SubtitleFileError as exc:
            raise InvalidRequest(str(exc)) from None
        for cue in cues:
            with contextlib.suppress(InvalidPair):  # a cue that says nothing, or far too much
                drafts.append(
                    PairDraft.checked("subtitle", cue.text, cue.start_s, cue.end_s, source=cue.source)
                )
    if len(drafts) > MAX_CUES_PER_VIDEO:
        raise InvalidRequest(
            f"the subtitle files hold {len(drafts)} cues, over the {MAX_CUES_PER_VIDEO} limit"
        )
    return drafts


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
        pairs = _parse_captions(bytes(reader.captions)) + _parse_subtitles(reader.subtitles)
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
        pairs=pairs,
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

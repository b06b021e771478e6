"""Refuse encrypted (DRM) video before decoding it: FFmpeg decodes it without an error, to green noise.

Three signals; any one of them refuses the chosen video stream:

- ISO BMFF (MP4/MOV/3GP, fragmented or not): the track's sample entry is a protected one (``encv``, with a
  ``sinf`` box naming the scheme: ``cenc``, ``cbcs``...; ISO/IEC 14496-12 8.12 and Common Encryption, ISO/IEC
  23001-7), read from the ``moov`` box. This also catches a "clear lead" (the first seconds left unencrypted),
  which the packets FFmpeg reads first would not show. A ``pssh`` box alone (DRM system data) is not a signal:
  the tracks it sits next to may be clear.
- Matroska/WebM: FFmpeg exports a track's ``ContentEncryption`` key id as the stream tag ``enc_key_id``.
- Any container: FFmpeg attaches ``encryption_info`` side data to every encrypted packet it demuxes (the decoder
  checks each packet it sends, in case the headers said nothing).

The box walk reads only box headers and the ``moov`` box (bounded), in the sandboxed decoder process like the
rest of probing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from av.container import InputContainer
from av.packet import Packet
from av.video.stream import VideoStream

from videoseek.video.errors import EncryptedContent

MOV_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"
MATROSKA_FORMAT = "matroska,webm"

# Protected sample entries (ISO/IEC 14496-12 8.12; drmi/drms: Apple's older FairPlay for iTunes purchases).
_PROTECTED_ENTRIES = frozenset({b"encv", b"enca", b"enct", b"encs", b"encm", b"encf", b"drmi", b"drms"})
_MAX_TOP_LEVEL_BOXES = 4096  # a real file has a handful before its moov; a hostile one cannot make us loop
_MAX_MOOV_BYTES = 64 * 1024**2
_HEADER = struct.Struct(">I4s")


@dataclass(frozen=True)
class ProtectedTrack:
    """An ISO BMFF track whose samples are encrypted. ``scheme``: the ``schm`` scheme type, if readable."""

    track_id: int
    handler: str
    entry: str
    scheme: str | None

    def describe(self) -> str:
        if self.entry in ("drmi", "drms"):
            return "Apple FairPlay"
        return f"Common Encryption, '{self.scheme}' scheme" if self.scheme else "Common Encryption"


def refuse_encrypted_stream(path: Path, container: InputContainer, stream: VideoStream) -> None:
    """Raise ``EncryptedContent`` when the headers say ``stream`` is encrypted."""
    name = container.format.name
    if name == MOV_FORMAT:
        for track in protected_mp4_tracks(path):
            # FFmpeg's mov demuxer numbers streams by the track's tkhd id; 0 means the id was unreadable.
            if track.track_id == stream.id or (track.track_id == 0 and track.handler == "vide"):
                raise _refusal(track.describe())
    elif name == MATROSKA_FORMAT and stream.metadata.get("enc_key_id"):
        raise _refusal("Matroska/WebM ContentEncryption")


def refuse_encrypted_packet(packet: Packet[Any]) -> None:
    """Raise ``EncryptedContent`` for a packet the demuxer marked encrypted (never send one to the decoder)."""
    if packet.has_sidedata("encryption_info"):
        raise _refusal("the demuxer reports encrypted packets")


def _refusal(what: str) -> EncryptedContent:
    return EncryptedContent(
        f"encrypted content cannot be indexed: the video track is encrypted ({what}) and decodes only to noise "
        "without its key; upload an unencrypted copy"
    )


def protected_mp4_tracks(path: Path) -> list[ProtectedTrack]:
    """The encrypted tracks of an ISO BMFF file, from its ``moov`` box ([] when there is none to read)."""
    moov = _read_moov(path)
    if moov is None:
        return []
    tracks = [_protected_track(moov, start, end) for kind, start, end in _boxes(moov) if kind == b"trak"]
    return [track for track in tracks if track is not None]


def _read_moov(path: Path) -> bytes | None:
    """The payload of the top-level ``moov`` box, found by hopping over box headers (``mdat`` is never read)."""
    with path.open("rb") as handle:
        total = handle.seek(0, 2)
        position = 0
        for _ in range(_MAX_TOP_LEVEL_BOXES):
            handle.seek(position)
            header = handle.read(16)
            if len(header) < _HEADER.size:
                return None
            size, kind = _HEADER.unpack_from(header)
            header_size = _HEADER.size
            if size == 1:  # a 64-bit size follows the type
                if len(header) < 16:
                    return None
                size, header_size = struct.unpack_from(">Q", header, 8)[0], 16
            elif size == 0:  # the box runs to the end of the file
                size = total - position
            if size < header_size or position + size > total:
                return None
            if kind == b"moov":
                if size - header_size > _MAX_MOOV_BYTES:
                    return None
                handle.seek(position + header_size)
                return handle.read(size - header_size)
            position += size
    return None


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the boxes laid end to end in ``data[start:end]``; stops at the
    first box that does not fit."""
    end = len(data) if end is None else end
    position = start
    while position + _HEADER.size <= end:
        size, kind = _HEADER.unpack_from(data, position)
        header_size = _HEADER.size
        if size == 1:
            if position + 16 > end:
                return
            size, header_size = struct.unpack_from(">Q", data, position + 8)[0], 16
        elif size == 0:
            size = end - position
        if size < header_size or position + size > end:
            return
        yield kind, position + header_size, position + size
        position += size


def _child(data: bytes, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(data, start, end) if k == kind), None)


def _protected_track(data: bytes, start: int, end: int) -> ProtectedTrack | None:
    """The track in ``trak`` box ``data[start:end]`` if its first protected sample entry says so."""
    track_id, handler = 0, ""
    tkhd = _child(data, start, end, b"tkhd")
    if tkhd is not None and tkhd[1] - tkhd[0] >= 24:
        version = data[tkhd[0]]
        track_id = struct.unpack_from(">I", data, tkhd[0] + (20 if version == 1 else 12))[0]
    mdia = _child(data, start, end, b"mdia")
    if mdia is None:
        return None
    hdlr = _child(data, *mdia, b"hdlr")
    if hdlr is not None and hdlr[1] - hdlr[0] >= 12:
        handler = data[hdlr[0] + 8 : hdlr[0] + 12].decode("latin-1")
    stsd = _path(data, *mdia, (b"minf", b"stbl", b"stsd"))
    if stsd is None or stsd[1] - stsd[0] < 8:
        return None
    for kind, entry_start, entry_end in _boxes(data, stsd[0] + 8, stsd[1]):  # after version/flags and count
        if kind in _PROTECTED_ENTRIES:
            scheme = _scheme(data, entry_start, entry_end)
            return ProtectedTrack(track_id, handler, kind.decode("latin-1"), scheme)
    return None


def _path(data: bytes, start: int, end: int, kinds: tuple[bytes, ...]) -> tuple[int, int] | None:
    span: tuple[int, int] | None = (start, end)
    for kind in kinds:
        if span is None:
            return None
        span = _child(data, *span, kind)
    return span


def _scheme(data: bytes, start: int, end: int) -> str | None:
    """The ``schm`` scheme type inside a protected sample entry's ``sinf`` box (the entry's fixed fields differ
    by media type, so the ``sinf`` box is found by its type and then checked to fit the entry)."""
    at = data.find(b"sinf", start, end)
    if at < start + 4:
        return None
    (size,) = struct.unpack_from(">I", data, at - 4)
    if size < 8 or at - 4 + size > end:
        return None
    schm = _child(data, at + 4, at - 4 + size, b"schm")
    if schm is None or schm[1] - schm[0] < 8:
        return None
    scheme = data[schm[0] + 4 : schm[0] + 8]
    return scheme.decode("ascii") if scheme.isalnum() else None

"""Opaque, signed cursors: of searches, and of listings (videos, jobs).

A cursor remembers which results the client has already been shown (clip ids, or video ids when grouping by
video) and a fingerprint of the query it belongs to. The next page is the best remaining results with those
excluded, so a result never appears twice across pages even though re-ranking is not a global order.
The payload is compressed JSON, HMAC-signed with the server secret and base64url-encoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from service.errors import BadRequest, Conflict

CURSOR_VERSION = 1
# Deep paging makes cursors (and the exclusion filter) grow; past this depth clients should refine the query.
MAX_RESULTS_PAGED = 1000
_MAC_BYTES = 16


def query_fingerprint(parts: dict[str, Any]) -> str:
    """A short digest of everything that defines a result list (not the page size or cursor)."""
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


@dataclass
class CursorState:
    """What the next page must know: the query it continues and the keys already shown."""

    fingerprint: str
    adapter_version: str | None
    seen: list[str] = field(default_factory=list)


class CursorCodec:
    """Encodes and verifies cursors; tampered, truncated or foreign cursors become a clean 400."""

    def __init__(self, secret: bytes) -> None:
        self._key = hashlib.sha256(b"videoseek-cursor\n" + secret).digest()

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, state: CursorState) -> str:
        body = {"v": CURSOR_VERSION, "q": state.fingerprint, "a": state.adapter_version, "s": state.seen}
        payload = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 9)
        return base64.urlsafe_b64encode(self._mac(payload) + payload).decode().rstrip("=")

    def decode(self, cursor: str, fingerprint: str, adapter_version: str | None) -> CursorState:
        """The state inside ``cursor``; 400 if it is not ours or belongs to another query, 409 if stale."""
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        except (binascii.Error, ValueError) as exc:
            raise BadRequest(
                "cursor is not valid: pass next_cursor from a previous response unchanged"
            ) from exc
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, self._mac(payload)):
            raise BadRequest("cursor is not valid: pass next_cursor from a previous response unchanged")
        body = json.loads(zlib.decompress(payload))
        if body.get("v") != CURSOR_VERSION or body.get("q") != fingerprint:
            raise BadRequest("cursor belongs to a different query: send the same query, filters and group_by")
        if body.get("a") != adapter_version:
            raise Conflict("the collection's adapter changed since this cursor was issued: search again")
        return CursorState(fingerprint=fingerprint, adapter_version=adapter_version, seen=list(body["s"]))


class ListingCursors:
    """Cursors of listings ordered newest first: a cursor holds the position of the last item shown (a time in
    epoch seconds and an id), signed like search cursors and tied to one listing (``listing``: e.g.
    ``videos:<collection>``), so a cursor of another listing is a clean 400."""

    def __init__(self, codec: CursorCodec) -> None:
        self._codec = codec

    def encode(self, listing: str, position: tuple[float, str]) -> str:
        created, key = position
        return self._codec.encode(
            CursorState(query_fingerprint({"listing": listing}), None, [repr(created), key])
        )

    def decode(self, listing: str, cursor: str) -> tuple[float, str]:
        state = self._codec.decode(cursor, query_fingerprint({"listing": listing}), None)
        try:
            created, key = state.seen
            return float(created), str(key)
        except (TypeError, ValueError) as exc:
            raise BadRequest(
                "cursor is not valid: pass next_cursor from a previous response unchanged"
            ) from exc

"""API keys: who is calling, which scopes they hold and which collections they may touch.

Keys come from settings (``VIDEOSEEK_API_KEYS``, a JSON list of ``{"key", "scopes", "collections"}``). A key is
sent as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. ``admin`` implies every other scope.

With no key configured the API is *open*, and in embedded mode it then only answers loopback clients: a
laptop install is usable without setup and still not reachable from the network by accident.

Browsers cannot attach headers to ``<img>``/``<video>`` requests, so search results carry media URLs signed
with the server secret (:class:`MediaSigner`); a valid signature grants read access to that one path.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from service.errors import Forbidden, Unauthorized
from videoseek.settings import ApiKey, Scope

ALL_SCOPES: frozenset[Scope] = frozenset(("search", "ingest", "admin"))
# What sign() writes; anything else in a media URL is not a signature (ASCII only: "1³".isdigit() is True).
_EXPIRES = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"[0-9a-f]{32}")
OpenPolicy = Literal["loopback", "anyone"]


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    name: str
    scopes: frozenset[Scope]
    collections: frozenset[str] | None  # None: every collection

    def has_scope(self, scope: Scope) -> bool:
        return scope in self.scopes or "admin" in self.scopes

    def may_access(self, collection: str) -> bool:
        return self.collections is None or collection in self.collections

    def require_collection(self, collection: str) -> None:
        """Raise 403 unless this key may use ``collection``."""
        if not self.may_access(collection):
            raise Forbidden(f"this API key is not allowed to use collection {collection!r}")


OPEN_PRINCIPAL = Principal(name="open", scopes=ALL_SCOPES, collections=None)


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return host == "localhost"


class KeyRing:
    """Looks keys up by their SHA-256, so lookups do not leak key prefixes through timing."""

    def __init__(self, keys: Iterable[ApiKey], open_policy: OpenPolicy) -> None:
        self._by_digest: dict[bytes, Principal] = {}
        for index, api_key in enumerate(keys):
            secret = api_key.key.get_secret_value()
            collections = frozenset(api_key.collections) if api_key.collections is not None else None
            self._by_digest[_digest(secret)] = Principal(
                name=f"key-{index}", scopes=frozenset(api_key.scopes), collections=collections
            )
        self.open_policy = open_policy

    @property
    def is_open(self) -> bool:
        return not self._by_digest

    def authenticate(self, presented: str | None, client_host: str | None) -> Principal:
        """The principal for a presented key; 401 when a key is required and missing or unknown."""
        if self.is_open:
            if self.open_policy == "loopback" and not is_loopback(client_host):
                raise Forbidden(
                    "no API keys are configured, so this server only answers requests from this machine; "
                    "set VIDEOSEEK_API_KEYS to serve other hosts"
                )
            return OPEN_PRINCIPAL
        if not presented:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key'")
        principal = self._by_digest.get(_digest(presented))
        if principal is None:
            raise Unauthorized("unknown API key")
        return principal

    def authorize(self, principal: Principal, scope: Scope) -> Principal:
        if not principal.has_scope(scope):
            raise Forbidden(f"this API key lacks the {scope!r} scope")
        return principal


class MediaSigner:
    """HMAC signatures for media paths, so ``<img>``/``<video>`` tags work when API keys are required."""

    def __init__(self, secret: bytes, ttl_s: int = 6 * 3600) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def _mac(self, path: str, expires: int) -> str:
        message = f"{path}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def sign(self, path: str, now: float | None = None) -> str:
        """The query string (without '?') that grants read access to ``path`` until it expires."""
        # Round the expiry up to the hour so repeated searches yield the same URL (browser caching).
        expires = (int((time.time() if now is None else now) + self.ttl_s) // 3600 + 1) * 3600
        return f"exp={expires}&sig={self._mac(path, expires)}"

    def verify(self, path: str, expires: str | None, signature: str | None) -> bool:
        """Whether ``exp``/``sig`` grant ``path`` now; a malformed pair is simply not a valid signature."""
        if expires is None or signature is None:
            return False
        if not _EXPIRES.fullmatch(expires) or not _SIGNATURE.fullmatch(signature):
            return False
        deadline = int(expires)
        if deadline < time.time():
            return False
        return hmac.compare_digest(self._mac(path, deadline).encode(), signature.encode())

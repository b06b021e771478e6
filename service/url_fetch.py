"""Downloading a video from an http(s) URL for ``POST /ingest``, without letting the URL reach what it must not.

A URL is a request the server makes on a caller's behalf, so every hop is checked before a byte is sent:
the scheme (http or https), then every address the host name resolves to (loopback, private, link-local,
multicast and reserved addresses are refused unless ``ingest.allow_private_urls``). The name is resolved
once and the connection goes to the address that was checked, with the name only in the ``Host`` header and
TLS's server name (whose certificate is verified), so a DNS answer that changes between the check and the
connection (DNS rebinding) changes nothing. Redirects are followed by hand, at most ``MAX_REDIRECTS``, each
one checked the same way. The body is streamed to a file under the size limit (``ingest.max_file_bytes``;
a ``Content-Length`` over it is refused before reading), within ``ingest.url_connect_timeout_s`` to connect
and for each read and ``ingest.url_timeout_s`` for the whole download. Blocking: run it on a thread.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import re
import socket
import ssl
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

from service.errors import FetchFailed, FetchTimeout, PayloadTooLarge, SourceRefused
from service.uploads import safe_display_name
from videoseek.settings import IngestSettings

ALLOWED_SCHEMES = ("http", "https")
MAX_REDIRECTS = 5
CHUNK_BYTES = 256 * 1024
USER_AGENT = "videoseek-ingest"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})

Resolver = Callable[[str, int], list[str]]  # host, port -> the addresses to try, in order


@dataclass(frozen=True)
class Fetched:
    """A completed download: the file, its size, the name to show for it."""

    path: Path
    size: int
    filename: str


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system's resolver, once)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchFailed(f"the host name {host!r} could not be resolved ({exc})") from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refusal(address: str, allow_private: bool) -> str | None:
    """Why ``address`` may not be fetched from, or None."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_multicast or ip.is_unspecified:
        return f"{ip} is a multicast or unspecified address"
    if allow_private:
        return None
    for kind, flagged in (
        ("a loopback", ip.is_loopback),
        ("a link-local", ip.is_link_local),
        ("a private", ip.is_private),
        ("a reserved", ip.is_reserved),
    ):
        if flagged:
            return (
                f"{ip} is {kind} address: fetching from the server's own network is refused "
                "(set VIDEOSEEK_INGEST__ALLOW_PRIVATE_URLS=true to allow it)"
            )
    return None


@dataclass(frozen=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent
    host_header: str


def _target(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SourceRefused(f"{url[:200]!r} is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        raise SourceRefused(f"only http and https URLs can be ingested from, not {scheme or 'this'!r}")
    if not parts.hostname:
        raise SourceRefused(f"{url[:200]!r} has no host name")
    if parts.username or parts.password:
        raise SourceRefused("URLs with a user name or password are not accepted")
    port = port or (443 if scheme == "https" else 80)
    host = parts.hostname
    shown = f"[{host}]" if ":" in host else host
    default = (scheme, port) in (("http", 80), ("https", 443))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(scheme, host, port, path, shown if default else f"{shown}:{port}")


def _checked_address(target: _Target, settings: IngestSettings, resolve: Resolver) -> str:
    """The address to connect to: every address of the host must be allowed (the first one is used)."""
    try:
        addresses = [str(ipaddress.ip_address(target.host))]  # a literal address: nothing to resolve
    except ValueError:
        addresses = resolve(target.host, target.port)
    if not addresses:
        raise FetchFailed(f"the host name {target.host!r} resolved to no address")
    for address in addresses:
        why = refusal(address, settings.allow_private_urls)
        if why is not None:
            raise SourceRefused(f"not fetching from {target.host}: {why}")
    return addresses[0]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a given address, with TLS's server name (and certificate check) for the URL's host name."""

    def __init__(self, address: str, port: int, server_name: str, timeout: float) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(address, port, timeout=timeout, context=self._tls)
        self._server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._server_name)


class _Deadline:
    def __init__(self, settings: IngestSettings) -> None:
        self.total_s = settings.url_timeout_s
        self.step_s = settings.url_connect_timeout_s
        self.end = time.monotonic() + self.total_s

    def wait_s(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise FetchTimeout(
                f"the download took longer than {self.total_s:g} s (VIDEOSEEK_INGEST__URL_TIMEOUT_S)"
            )
        return min(left, self.step_s)


@contextlib.contextmanager
def _request(
    target: _Target, address: str, deadline: _Deadline
) -> Iterator[tuple[http.client.HTTPConnection, http.client.HTTPResponse]]:
    conn: http.client.HTTPConnection
    if target.scheme == "https":
        conn = _PinnedHTTPSConnection(address, target.port, target.host, deadline.wait_s())
    else:
        conn = http.client.HTTPConnection(address, target.port, timeout=deadline.wait_s())
    try:
        conn.request(
            "GET",
            target.path,
            headers={"Host": target.host_header, "User-Agent": USER_AGENT, "Accept": "*/*"},
        )
        yield conn, conn.getresponse()
    except TimeoutError as exc:
        raise FetchTimeout(f"{target.host} did not answer within {deadline.step_s:g} s") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise FetchFailed(f"could not fetch from {target.host}: {exc}") from exc
    finally:
        conn.close()


def fetch_url(
    url: str, dest_dir: Path, settings: IngestSettings, resolve: Resolver = system_resolver
) -> Fetched:
    """Download ``url`` into a new ``.part`` file in ``dest_dir``; raises the service errors above (nothing is
    left behind on failure)."""
    deadline = _Deadline(settings)
    for _hop in range(MAX_REDIRECTS + 1):
        target = _target(url)
        address = _checked_address(target, settings, resolve)
        with _request(target, address, deadline) as (conn, response):
            if response.status in _REDIRECTS:
                location = response.getheader("Location")
                if not location:
                    raise FetchFailed(f"{target.host} answered {response.status} without a Location")
                url = urljoin(url, location)
                continue
            if response.status != 200:
                raise FetchFailed(f"{target.host} answered HTTP {response.status} {response.reason}".strip())
            return _save(conn, response, url, dest_dir, settings, deadline)
    raise FetchFailed(f"more than {MAX_REDIRECTS} redirects")


def _save(
    conn: http.client.HTTPConnection,
    response: http.client.HTTPResponse,
    url: str,
    dest_dir: Path,
    settings: IngestSettings,
    deadline: _Deadline,
) -> Fetched:
    limit = settings.max_file_bytes
    declared = response.getheader("Content-Length", "")
    if re.fullmatch(r"[0-9]{1,18}", declared.strip()) and int(declared) > limit:
        raise PayloadTooLarge(f"the video is {int(declared)} bytes, over the {limit}-byte limit")
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{uuid.uuid4().hex}.part"
    size = 0
    try:
        with path.open("xb") as handle:
            while True:
                if conn.sock is not None:
                    conn.sock.settimeout(deadline.wait_s())
                try:
                    chunk = response.read(CHUNK_BYTES)
                except TimeoutError as exc:
                    raise FetchTimeout(f"the download stalled for {deadline.step_s:g} s") from exc
                except (OSError, http.client.HTTPException) as exc:
                    raise FetchFailed(f"the download broke off: {exc}") from exc
                if not chunk:
                    break
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the video is larger than the {limit}-byte limit")
                handle.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return Fetched(path, size, _display_name(response, url))


def _display_name(response: http.client.HTTPResponse, url: str) -> str:
    """The name the server gives the file (Content-Disposition), else the URL's last path segment."""
    disposition = response.getheader("Content-Disposition")
    if disposition:
        message = Message()
        message["content-disposition"] = disposition
        named = message.get_filename()
        if named:
            return safe_display_name(named)
    return safe_display_name(unquote(urlsplit(url).path.rsplit("/", 1)[-1]))

"""A small client of a running videoseek server's HTTP API (standard library only: the CLI needs no httpx).

Uploads are streamed from disk as ``multipart/form-data`` with a known length, so a file of any size is sent
without being read into memory. Every answer that is not a success becomes :class:`ApiError` carrying the
server's ``reason`` (the API always answers errors as JSON ``{"code", "reason"}``).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1024 * 1024
DEFAULT_TIMEOUT_S = 60.0  # per blocking read or write, not for the whole request


class ApiError(RuntimeError):
    """The server answered with an error status (or could not be reached: ``status`` 0)."""

    def __init__(self, status: int, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.retry_after_s = retry_after_s


def _quoted(value: str) -> str:
    """A multipart parameter value: quotes and line breaks percent-encoded as browsers do (RFC 7578)."""
    return value.replace("\r", "%0D").replace("\n", "%0A").replace('"', "%22")


class ApiClient:
    """Requests to one server, authenticated with one API key (or none: the open embedded API)."""

    def __init__(
        self, base_url: str, api_key: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s

    def get(self, path: str) -> Any:
        return self._send(urllib.request.Request(self.base_url + path, headers=self._headers))

    def post_json(self, path: str, payload: dict[str, Any]) -> Any:
        headers = {**self._headers, "content-type": "application/json"}
        body = json.dumps(payload).encode()
        return self._send(urllib.request.Request(self.base_url + path, data=body, headers=headers))

    def upload(self, path: str, file: Path, fields: dict[str, str], filename: str | None = None) -> Any:
        """POST ``fields`` and ``file`` (as the part named ``file``) as one multipart body, streamed from disk."""
        boundary = f"videoseek-{uuid.uuid4().hex}"
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        head += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{_quoted(filename or file.name)}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        size = file.stat().st_size

        def body() -> Iterator[bytes]:
            yield head
            with file.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    yield chunk
            yield tail

        headers = {
            **self._headers,
            "content-type": f"multipart/form-data; boundary={boundary}",
            "content-length": str(len(head) + size + len(tail)),
        }
        return self._send(urllib.request.Request(self.base_url + path, data=body(), headers=headers))

    def _send(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, f"cannot reach the server at {self.base_url}: {reason}") from exc


def _api_error(exc: urllib.error.HTTPError) -> ApiError:
    raw = exc.read()
    try:
        reason = str(json.loads(raw)["reason"])
    except (ValueError, KeyError, TypeError):
        reason = raw.decode("utf-8", "replace").strip()[:500] or exc.reason
    retry_after = exc.headers.get("retry-after")
    try:
        retry_after_s = float(retry_after) if retry_after is not None else None
    except ValueError:
        retry_after_s = None
    return ApiError(exc.code, str(reason), retry_after_s)

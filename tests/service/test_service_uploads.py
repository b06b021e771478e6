"""Streaming multipart uploads: bytes go to disk as they arrive, limits hold while streaming."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from starlette.requests import Request

from service.errors import InvalidRequest, PayloadTooLarge, UnsupportedMedia
from service.uploads import receive_upload, safe_display_name

BOUNDARY = "xyzBOUNDARYxyz"


def multipart(parts: list[tuple[str, str | None, bytes]]) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def make_request(body: bytes, chunk: int = 65536, content_type: str | None = None, length: int | None = None):
    """A Request whose body arrives in chunks; returns it with a counter of chunks handed out."""
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    delivered = {"n": 0}

    async def receive() -> dict[str, object]:
        index = delivered["n"]
        delivered["n"] += 1
        return {"type": "http.request", "body": chunks[index], "more_body": index < len(chunks) - 1}

    headers = [(b"content-type", (content_type or f"multipart/form-data; boundary={BOUNDARY}").encode())]
    headers.append((b"content-length", str(len(body) if length is None else length).encode()))
    scope = {"type": "http", "method": "POST", "path": "/", "headers": headers, "query_string": b""}
    return Request(scope, receive), delivered, len(chunks)


def test_upload_lands_on_disk_with_metadata_and_a_safe_name(tmp_path: Path) -> None:
    video = bytes(range(256)) * 1000
    body = multipart(
        [
            ("metadata", None, json.dumps({"camera": "door"}).encode()),
            ("file", "../../etc/pa ss?wd.mp4", video),
        ]
    )
    request, _, _ = make_request(body)
    upload = asyncio.run(receive_upload(request, tmp_path, max_bytes=10**6))
    assert upload.path.read_bytes() == video and upload.size == len(video)
    assert upload.path.parent == tmp_path
    assert upload.filename == "pa ss_wd.mp4"
    assert upload.metadata == {"camera": "door"}


def test_oversized_upload_stops_reading_early_and_leaves_nothing(tmp_path: Path) -> None:
    body = multipart([("file", "big.mp4", b"\x00" * (4 * 1024 * 1024))])
    request, delivered, total_chunks = make_request(body, length=0)  # a lying Content-Length
    with pytest.raises(PayloadTooLarge):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=256 * 1024))
    assert delivered["n"] < total_chunks // 4  # the rest of the body was never read
    assert list(tmp_path.iterdir()) == []


def test_declared_length_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    request, delivered, _ = make_request(multipart([("file", "a.mp4", b"x")]), length=10**9)
    with pytest.raises(PayloadTooLarge):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=1000))
    assert delivered["n"] == 0


@pytest.mark.parametrize(
    ("declared", "refused"),
    [
        ("\u00b2".encode("latin-1"), False),  # "2".isdigit() is True, int() raises: ignored, not a 500
        (b"12abc", False),
        (("9" * 5000).encode(), True),  # over int()'s 4300 digits, and over any limit
    ],
)
def test_a_content_length_that_is_no_ascii_number_is_ignored_or_too_large(
    tmp_path: Path, declared: bytes, refused: bool
) -> None:
    request, delivered, _ = make_request(multipart([("file", "a.mp4", b"x")]))
    request.scope["headers"] = [
        (k, declared if k == b"content-length" else v) for k, v in request.scope["headers"]
    ]
    if refused:
        with pytest.raises(PayloadTooLarge):
            asyncio.run(receive_upload(request, tmp_path, max_bytes=1000))
        assert delivered["n"] == 0
    else:
        assert asyncio.run(receive_upload(request, tmp_path, max_bytes=1000)).size == 1


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"{}", "application/json", UnsupportedMedia),
        (multipart([("metadata", None, b"{}")]), None, InvalidRequest),
        (multipart([("file", "a.mp4", b"x"), ("metadata", None, b"[1, 2]")]), None, InvalidRequest),
        (multipart([("file", "a.mp4", b"x"), ("metadata", None, b"{nope")]), None, InvalidRequest),
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc'.encode(),
            None,
            InvalidRequest,
        ),
    ],
)
def test_bad_forms_are_refused_and_leave_nothing(
    tmp_path: Path, body: bytes, content_type: str | None, error: type
) -> None:
    request, _, _ = make_request(body, content_type=content_type)
    with pytest.raises(error):
        asyncio.run(receive_upload(request, tmp_path, max_bytes=1000))
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("a/b/c.mp4", "c.mp4"),
        ("..\\..\\x.avi", "x.avi"),
        ("", "upload"),
        ("...", "upload"),
        ("ok name (1).mkv", "ok name (1).mkv"),
    ],
)
def test_display_names_are_sanitised(raw: str, safe: str) -> None:
    assert safe_display_name(raw) == safe


def test_a_sweep_with_an_idle_age_removes_only_partial_uploads_idle_that_long(tmp_path: Path) -> None:
    import os

    from service.uploads import STALE_UPLOAD_S, sweep_partial_uploads

    idle, live, other = tmp_path / "a.part", tmp_path / "b.part", tmp_path / "keep.txt"
    for path in (idle, live, other):
        path.write_bytes(b"x")
    long_ago = time.time() - STALE_UPLOAD_S - 60
    os.utime(idle, (long_ago, long_ago))
    os.utime(other, (0, 0))
    assert sweep_partial_uploads(tmp_path, STALE_UPLOAD_S) == 1
    assert not idle.exists() and live.exists() and other.exists()
    assert sweep_partial_uploads(tmp_path, None) == 1  # None: every partial upload, however fresh
    assert not live.exists() and other.exists()


def test_only_a_process_sharing_its_data_dir_spares_fresh_partial_uploads_at_start() -> None:
    from service.uploads import STALE_UPLOAD_S, startup_sweep_idle_s

    assert startup_sweep_idle_s(owns_data_dir=True) is None  # one process per data dir: every .part is dead
    assert startup_sweep_idle_s(owns_data_dir=False) == STALE_UPLOAD_S  # other replicas may be uploading


def test_a_partial_upload_left_by_a_killed_process_is_gone_once_the_app_starts(tmp_path: Path) -> None:
    from contextlib import ExitStack

    from service_helpers import settings_for, start_client

    uploads = tmp_path / "data" / "uploads"
    uploads.mkdir(parents=True)
    leftover, kept = uploads / "0123abcd.part", uploads / "notes.txt"
    leftover.write_bytes(b"half a video")  # written a moment ago: kill -9 leaves no time to clean up
    kept.write_bytes(b"not an upload")
    with ExitStack() as stack:
        start_client(stack, settings_for(tmp_path / "data"))
        assert not leftover.exists() and kept.exists()

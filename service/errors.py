"""Every error leaves the API as JSON ``{"code", "reason"}``; nothing ever answers with a traceback.

Handlers raise :class:`ServiceError` subclasses (or let a known library exception through); the handlers
installed by :func:`install_error_handlers` turn them into responses. Library exceptions are mapped here, at
the boundary, so routers stay free of ``try``/``except`` noise.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.methods import allowed_methods

log = logging.getLogger("service")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "invalid_request",
    429: "too_many_requests",
    502: "fetch_failed",
    503: "unavailable",
    504: "fetch_timeout",
}


class ServiceError(Exception):
    """An error with an HTTP status, a stable machine code and a human reason that says how to fix it."""

    status_code = 400
    code = "bad_request"

    def __init__(
        self, reason: str, *, headers: Mapping[str, str] | None = None, extra: dict[str, Any] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.headers = dict(headers or {})
        self.extra = extra or {}


class BadRequest(ServiceError):
    status_code, code = 400, "bad_request"


class Unauthorized(ServiceError):
    status_code, code = 401, "unauthorized"

    def __init__(self, reason: str) -> None:
        super().__init__(reason, headers={"WWW-Authenticate": 'Bearer realm="videoseek"'})


class Forbidden(ServiceError):
    status_code, code = 403, "forbidden"


class NotFound(ServiceError):
    status_code, code = 404, "not_found"


class Conflict(ServiceError):
    status_code, code = 409, "conflict"


class PayloadTooLarge(ServiceError):
    status_code, code = 413, "payload_too_large"


class UnsupportedMedia(ServiceError):
    status_code, code = 415, "unsupported_media_type"


class RangeNotSatisfiable(ServiceError):
    status_code, code = 416, "range_not_satisfiable"


class InvalidRequest(ServiceError):
    status_code, code = 422, "invalid_request"


class InvalidUploadMetadata(InvalidRequest):
    """Upload metadata refused by one of the rules in :mod:`videoseek.metadata`; says which, and where."""

    status_code, code = 422, "invalid_metadata"

    def __init__(self, reason: str, *, rule: str, path: str) -> None:
        super().__init__(reason, extra={"rule": rule, "path": path})


class InvalidAdapter(ServiceError):
    status_code, code = 422, "invalid_adapter"


class SourceRefused(InvalidRequest):
    """A URL or server path given to ingest from that this server will not read (the reason says why)."""

    status_code, code = 422, "source_refused"


class FetchFailed(ServiceError):
    """The remote server of an ingest URL could not be reached, or answered with an error."""

    status_code, code = 502, "fetch_failed"


class FetchTimeout(ServiceError):
    """Fetching an ingest URL took longer than its time limit."""

    status_code, code = 504, "fetch_timeout"


class TooManyRequests(ServiceError):
    status_code, code = 429, "too_many_requests"

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason, headers={"Retry-After": str(max(1, retry_after_s))})


class Unavailable(ServiceError):
    status_code, code = 503, "unavailable"

    def __init__(self, reason: str, retry_after_s: int = 5) -> None:
        super().__init__(reason, headers={"Retry-After": str(max(1, retry_after_s))})


def error_body(code: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"code": code, "reason": reason, **extra}


def _json(status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=jsonable_encoder(body), headers=dict(headers or {}))


async def _service_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return _json(exc.status_code, error_body(exc.code, exc.reason, **exc.extra), exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # the router's Allow names one route's methods: list the whole path's
        allow = allowed_methods(request.app.router.routes, request.scope)
        if allow:
            headers["Allow"] = ", ".join(allow)
            if request.method == "OPTIONS":  # no route takes OPTIONS: it is answered here, for every path
                return Response(status_code=204, headers=headers)
    code = _STATUS_CODES.get(exc.status_code, "error" if exc.status_code >= 500 else "bad_request")
    reason = exc.detail if isinstance(exc.detail, str) else "request failed"
    return _json(exc.status_code, error_body(code, reason), headers)


def _clean_validation_error(err: Mapping[str, Any]) -> dict[str, Any]:
    # "input" can be arbitrary bytes and "ctx" can hold exception objects: neither is safe to echo.
    return {
        "loc": [str(part) for part in err.get("loc", ())],
        # A validator's ValueError already says what is wrong: pydantic's prefix adds nothing.
        "msg": str(err.get("msg", "")).removeprefix("Value error, "),
        "type": err.get("type"),
    }


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [_clean_validation_error(err) for err in exc.errors()]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(part for part in first["loc"] if part not in ("body",)) or "request"
    return _json(422, error_body("invalid_request", f"{where}: {first['msg']}", errors=errors))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    incident = uuid.uuid4().hex[:12]
    log.error("unhandled error %s on %s %s", incident, request.method, request.url.path, exc_info=exc)
    reason = f"internal error (incident {incident}); the server log has the details"
    return _json(500, error_body("internal_error", reason))


def _mapped(status: int, code: str, retry_after_s: int | None = None) -> Callable[..., Any]:
    """A handler for a library exception whose message already says what went wrong."""

    async def handler(_: Request, exc: Exception) -> JSONResponse:
        headers = {"Retry-After": str(retry_after_s)} if retry_after_s else None
        return _json(status, error_body(code, str(exc) or type(exc).__name__), headers)

    return handler


def install_error_handlers(app: FastAPI, library_errors: Mapping[type[Exception], tuple[int, str]]) -> None:
    """Register the JSON error handlers; ``library_errors`` maps foreign exception types to (status, code)."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    for exc_type, (status, code) in library_errors.items():
        app.add_exception_handler(exc_type, _mapped(status, code, 5 if status == 503 else None))
    app.add_exception_handler(Exception, _unexpected_error)

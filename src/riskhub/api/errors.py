"""Error -> HTTP mapping, in one place. Every error body has one shape:
``{"error": {"code": ..., "message": ..., "field": ...}}``; no stack trace ever reaches a client."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from riskhub.contract.canonical import dumps_compact as dumps
from riskhub.errors import (
    BlobCorrupted,
    BlobMissing,
    ContractError,
    Forbidden,
    MalformedRequest,
    PayloadTooLarge,
    RiskHubError,
    SnapshotNotFound,
    Unauthorized,
    Unavailable,
    VersionConflict,
)
from riskhub.logs import clip

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[RiskHubError], int] = {
    MalformedRequest: 400,
    Unauthorized: 401,
    Forbidden: 403,
    SnapshotNotFound: 404,
    VersionConflict: 409,
    PayloadTooLarge: 413,
    ContractError: 422,
    BlobCorrupted: 502,
    BlobMissing: 502,
    Unavailable: 503,
}
RETRY_AFTER_S = "1"
MAX_MESSAGE_CHARS = 400


def status_of(exc: RiskHubError) -> int:
    """The HTTP status of an error class (nearest mapped base class)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> Response:
    """A JSON error response in the hub's one shape."""
    # A message may quote what the client sent: never echo megabytes back.
    body = {"error": {"code": code, "message": clip(message, MAX_MESSAGE_CHARS), "field": field}}
    headers = dict(headers or {})
    if status == 503:
        headers["Retry-After"] = RETRY_AFTER_S
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return Response(dumps(body), status_code=status, headers=headers, media_type="application/json")


async def _riskhub_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RiskHubError)
    status = status_of(exc)
    message = exc.message
    if isinstance(exc, Unavailable):
        # Driver details stay in the log; the client learns what failed and that a retry is safe.
        log.warning("%s %s -> %d %s", request.method, request.url.path, status, exc.message)
        written = "" if request.method in ("GET", "HEAD") else " nothing was written,"
        message = f"{exc.code.replace('_', ' ')};{written} retry later"
    elif status >= 500:  # the hub's own data is damaged (502): operators must hear of it
        log.error("%s %s -> %d %s", request.method, request.url.path, status, exc.message)
    return error_response(status, exc.code, message, exc.field)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
    message = f"{field or 'request'}: {first.get('msg', 'invalid')}"
    return error_response(422, ContractError.code, message, field)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:  # Starlette names only the first matching route's methods
        headers["Allow"] = ", ".join(sorted(_allowed_methods(request)))
    return error_response(exc.status_code, code, str(exc.detail), headers=headers)


def _allowed_methods(request: Request) -> set[str]:
    """Every method some route takes on this path (included routers are walked: FastAPI keeps
    them nested, so Starlette only saw the first one)."""
    path = request.url.path
    return {
        method
        for route in _flat(request.app.router.routes)
        if getattr(route, "path_regex", None) is not None and route.path_regex.match(path)
        for method in getattr(route, "methods", None) or ()
    }


def _flat(routes: list[Any]) -> Iterator[Any]:
    for route in routes:
        inner = getattr(route, "original_router", None)
        yield from _flat(inner.routes) if inner is not None else (route,)


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal_error", "internal error; see the hub's log")


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on an app."""
    app.add_exception_handler(RiskHubError, _riskhub_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)

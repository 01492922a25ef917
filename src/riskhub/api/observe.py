"""What every HTTP request leaves behind: its correlation id, metrics and one access log line.

Pure ASGI (no body buffering). The correlation id is the request's ``X-Correlation-Id`` or, when
absent, a new one; it is echoed on every answer, carried into the snapshot's event by the write
route (``correlation_id(request)``) and logged as the request id of the access line.
"""

from __future__ import annotations

import logging
import time
import uuid

from fastapi import Request
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskhub.api.errors import error_response
from riskhub.logs import clip
from riskhub.metrics import Metrics

CORRELATION_HEADER = "x-correlation-id"
MAX_CORRELATION_ID_CHARS = 256
MAX_HEADER_BYTES = 16 * 1024
access_log = logging.getLogger("riskhub.access")


def correlation_id(request: Request) -> str:
    """The request's correlation id (as sent, or generated for it)."""
    value: str = request.scope["state"]["correlation_id"]
    return value


class ObservedRequests:
    """Correlation id in and out, response counts and latency by route template, access line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        sent = Headers(scope=scope).get(CORRELATION_HEADER)
        request_id = sent or uuid.uuid4().hex
        scope.setdefault("state", {})["correlation_id"] = request_id
        status = 500
        echoed = [(CORRELATION_HEADER.encode(), request_id.encode("latin-1", "replace"))]

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), *echoed]
            await send(message)

        try:
            refusal = _refusal(scope, request_id)
            if refusal is not None:
                echoed.clear()  # not echoed: it is (or came with) what was refused
                await refusal(scope, receive, send_and_record)
            else:
                await self.app(scope, receive, send_and_record)
        finally:
            self._record(scope, status, time.perf_counter() - started, request_id)

    def _record(self, scope: Scope, status: int, elapsed_s: float, request_id: str) -> None:
        route = getattr(scope.get("route"), "path", "unmatched")
        method = scope["method"]
        self.metrics.http_responses.labels(route, method, str(status)).inc()
        self.metrics.http_seconds.labels(route, method).observe(elapsed_s)
        access_log.info(
            "request",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(elapsed_s * 1000, 3),
                "request_id": clip(request_id),
            },
        )


def _refusal(scope: Scope, request_id: str) -> Response | None:
    """A 431 for a header block over ``MAX_HEADER_BYTES``, a 400 for an over-long correlation id."""
    if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADER_BYTES:
        message = f"headers: the header block is over {MAX_HEADER_BYTES} bytes"
        return error_response(431, "headers_too_large", message, "headers")
    if len(request_id) > MAX_CORRELATION_ID_CHARS:
        message = f"X-Correlation-Id: at most {MAX_CORRELATION_ID_CHARS} characters"
        return error_response(400, "malformed_request", message, "X-Correlation-Id")
    return None

"""A real HTTP server in front of a real hub: it answers from a script first (``503``, a response
lost after the hub stored it, a dropped connection), then forwards every request to the hub, and
records each request it saw. Faults are injected on the wire, not with a mock transport."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Literal, Self

import httpx

from services import HOST, free_port

Step = Literal["503", "429", "forward", "forward-then-503", "hang-up"]
FORWARDED_HEADERS = ("authorization", "content-type", "x-actor", "x-stage", "x-correlation-id")
RETURNED_HEADERS = ("content-type", "location", "retry-after", "www-authenticate")


@dataclass(frozen=True)
class Seen:
    """One request as it reached the proxy."""

    method: str
    path: str
    body: bytes
    headers: dict[str, str]
    answered: str  # the step that answered it


@dataclass
class ScriptedProxy:
    """``with ScriptedProxy(hub_url, ["503", "503"]) as proxy:`` then point a client at ``proxy.url``."""

    upstream: str
    script: list[Step] = field(default_factory=list)
    retry_after: str | None = "0"
    seen: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((HOST, self.port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def posts(self) -> list[Seen]:
        """The POSTs seen so far."""
        return [s for s in self.seen if s.method == "POST"]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next_step(self) -> Step:
        with self._lock:
            return self.script.pop(0) if self.script else "forward"

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._handle(self)

            def do_POST(self) -> None:
                proxy._handle(self)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("content-length") or 0)
        body = request.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in request.headers.items()}
        step = self._next_step()
        self._record(Seen(request.command, request.path, body, headers, step))
        if step == "hang-up":
            request.close_connection = True
            request.connection.close()
            return
        if step in ("503", "429"):
            self._reply_unavailable(request, int(step))
            return
        forwarded = httpx.request(
            request.command,
            f"{self.upstream}{request.path}",
            content=body,
            headers={k: v for k, v in headers.items() if k in FORWARDED_HEADERS},
            timeout=15,
        )
        if step == "forward-then-503":  # the hub stored it; the answer is lost on the way back
            self._reply_unavailable(request, 503)
            return
        self._reply(request, forwarded.status_code, forwarded.content, forwarded.headers)

    def _reply_unavailable(self, request: BaseHTTPRequestHandler, status: int) -> None:
        error = {"code": "store_unavailable", "message": "scripted outage; retry later", "field": None}
        headers = {"content-type": "application/json"}
        if self.retry_after is not None:
            headers["retry-after"] = self.retry_after
        self._reply(request, status, json.dumps({"error": error}).encode(), headers)

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler,
        status: int,
        content: bytes,
        headers: httpx.Headers | dict[str, str],
    ) -> None:
        request.send_response(status)
        for name in RETURNED_HEADERS:
            if name in headers:
                request.send_header(name, headers[name])
        request.send_header("content-length", str(len(content)))
        request.end_headers()
        request.wfile.write(content)

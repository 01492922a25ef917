"""The FastAPI app factory: routes, auth, error mapping, health, metrics, HTTP instrumentation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import Response
from orjson import dumps
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from riskhub.api import bench, risk_routes, routes
from riskhub.api.auth import TokenAuth
from riskhub.api.errors import install_error_handlers
from riskhub.api.network import NetworkAllowlist
from riskhub.api.token_files import reloading_tokens
from riskhub.bootstrap import Components, build_components
from riskhub.config import Settings
from riskhub.errors import Unavailable
from riskhub.tokens import TokenSource


def create_app(settings: Settings, *, components: Components | None = None) -> FastAPI:
    """Build the app; the lifespan starts the components (store, relay, consumer)."""
    parts = components or build_components(settings)
    tokens = TokenSource.from_settings(settings)  # RISKHUB_TOKENS and the tokens files
    auth = TokenAuth(*tokens.load().pair())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await parts.start()
        try:
            async with reloading_tokens(auth, tokens, settings.tokens_reload_sec):
                yield
        finally:
            await parts.stop()

    app = FastAPI(title="riskhub", version="0.1.0", lifespan=lifespan, docs_url="/docs")
    app.state.components = parts
    app.state.auth = auth
    install_error_handlers(app)
    if settings.allowed_networks:  # added before the metrics middleware: its 403s are counted too
        allowed, proxies = settings.allowed_networks, settings.trusted_proxies
        app.add_middleware(NetworkAllowlist, allowed=allowed, trusted_proxies=proxies)
    app.include_router(routes.router)
    app.include_router(risk_routes.router)
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"])
    app.add_api_route("/metrics", metrics, methods=["GET"])
    if settings.bench_endpoints:
        app.include_router(bench.router)
    app.add_middleware(HttpMetrics)
    return app


async def healthz() -> Response:
    """The process is up."""
    return Response(b'{"status":"ok"}', media_type="application/json")


async def readyz(request: Request) -> Response:
    """503 only when the store is unreachable; other parts down -> 200 ``degraded``."""
    parts: Components = request.app.state.components
    checks = {}
    for name, ping in (
        ("store", parts.store.ping),
        ("cache", parts.cache.ping),
        ("blobs", parts.blobs.ping),
        ("bus", parts.publisher.ping),
    ):
        try:
            await ping()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"down: {type(exc).__name__}"
    if checks["store"] != "ok":
        status, code = "unavailable", 503
    else:
        status, code = ("ok" if all(v == "ok" for v in checks.values()) else "degraded"), 200
    body = dumps({"status": status, "checks": checks})
    return Response(body, status_code=code, media_type="application/json")


async def metrics(request: Request) -> Response:
    """Prometheus exposition of the hub's registry."""
    parts: Components = request.app.state.components
    # With the store down the backlog gauges keep their last values: the rest (the 5xx counts
    # above all) is what operators need to see now.
    with contextlib.suppress(Unavailable):
        await parts.relay.refresh_backlog_metrics()
    return Response(generate_latest(parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)


class HttpMetrics:
    """Counts responses by route template, method and status (pure ASGI: no body buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", "unmatched")
            parts: Components = scope["app"].state.components
            parts.metrics.http_responses.labels(label, scope["method"], str(status)).inc()
            parts.metrics.http_seconds.labels(label, scope["method"]).observe(time.perf_counter() - started)

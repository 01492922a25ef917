"""The FastAPI app factory: routes, auth, error mapping, health, metrics, HTTP instrumentation."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from importlib.metadata import version as package_version
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from orjson import dumps
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from riskhub.api import bench, risk_routes, routes, status
from riskhub.api.auth import TokenAuth
from riskhub.api.errors import install_error_handlers
from riskhub.api.network import NetworkAllowlist
from riskhub.api.observe import ObservedRequests
from riskhub.api.schemas import with_bearer_auth
from riskhub.api.token_files import reloading_tokens
from riskhub.bootstrap import Components, build_components
from riskhub.config import Settings
from riskhub.errors import Unavailable
from riskhub.tokens import TokenSource

__version__ = package_version("riskhub")
ERROR_BODY = {"$ref": "#/components/schemas/ErrorBody"}
JSON_TYPE = "application/json"


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
            await bench.close(app)
            await parts.stop()

    # Swagger UI and ReDoc with their assets served by the hub (no CDN: the docs work offline).
    app = FastAPIOffline(title="riskhub", version=__version__, lifespan=lifespan, docs_url="/docs")
    app.openapi = partial(_openapi, app)  # type: ignore[method-assign]  # FastAPI's documented override
    app.state.components = parts
    app.state.auth = auth
    install_error_handlers(app)
    if settings.allowed_networks:  # added before the metrics middleware: its 403s are counted too
        allowed, proxies = settings.allowed_networks, settings.trusted_proxies
        app.add_middleware(NetworkAllowlist, allowed=allowed, trusted_proxies=proxies)
    app.include_router(routes.router)
    app.include_router(risk_routes.router)
    app.include_router(status.router)
    app.mount("/static", StaticFiles(packages=[("riskhub.api", "static")]), name="static")
    app.add_api_route("/healthz", healthz, methods=["GET"])
    app.add_api_route("/readyz", readyz, methods=["GET"])
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        response_class=PlainTextResponse,
        # 401 when METRICS_TOKEN is set and was not given: a JSON error, as everywhere
        responses={
            401: {"description": "Unauthorized", "content": {"application/json": {"schema": ERROR_BODY}}}
        },
    )
    if settings.bench_endpoints:
        app.include_router(bench.router)
    app.add_middleware(ObservedRequests, metrics=parts.metrics)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        app.openapi_schema = with_bearer_auth(schema)
    return app.openapi_schema


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
    """Prometheus exposition of the hub's registry (with ``metrics_token`` set, only for it)."""
    parts: Components = request.app.state.components
    required = parts.settings.metrics_token
    if required is not None:
        TokenAuth([required.get_secret_value()]).require(request.headers.get("authorization"), write=False)
    # With the store down the backlog gauges keep their last values: the rest (the 5xx counts
    # above all) is what operators need to see now.
    with contextlib.suppress(Unavailable):
        await parts.relay.refresh_backlog_metrics()
    return Response(generate_latest(parts.metrics.registry), media_type=CONTENT_TYPE_LATEST)

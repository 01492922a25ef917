"""Hub processes: ``serve``, ``worker``, ``relay``, ``migrate``."""

from __future__ import annotations

import asyncio
import logging
import shlex
import signal
import socket
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import SecretStr

from riskhub.cli.common import (
    DsnOption,
    add_command,
    configure_logging,
    database_kind,
    fail,
    settings_with,
    tune_gc_for_service,
)
from riskhub.cli.token_file import KeptToken, kept_token
from riskhub.config import DATA_DIR, HOST, PORT, SERVE_WORKERS, Settings
from riskhub.errors import RiskHubError
from riskhub.tokens import TokenSource

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

    AppFactory = Callable[[], ASGIApp]

log = logging.getLogger(__name__)


def serve(
    host: Annotated[str, typer.Option(envvar="RISKHUB_HOST", help="Bind address")] = HOST,
    port: Annotated[int, typer.Option(envvar="RISKHUB_PORT", help="Port")] = PORT,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="RISKHUB_SERVE_WORKERS",
            help="Server processes on the one port, for more cores; each runs the API, a relay"
            " and (embedded) a consumer. Above 1: no in-process latest cache, and /metrics"
            " counts only the process that answers",
        ),
    ] = SERVE_WORKERS,
    data_dir: Annotated[
        Path, typer.Option(envvar="RISKHUB_DATA_DIR", help="Embedded SQLite, blobs and the generated token")
    ] = DATA_DIR,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
) -> None:
    """Run the hub (HTTP API + outbox relay + in-process consumer) with settings from RISKHUB_* env;
    with --workers N, N such processes share the port (and the store: each event is still handled once)."""

    settings = Settings(host=host, port=port, data_dir=data_dir, serve_workers=workers)
    configure_logging(log_level, settings.log_format)
    _check_port_free(settings.host, settings.port)
    kept = None
    if not TokenSource.from_settings(settings).configured:  # neither RISKHUB_TOKENS nor a tokens file
        kept = kept_token(settings.token_file.absolute())
        settings = settings.model_copy(update={"tokens": [SecretStr(kept.value)]})
    _print_banner(settings, kept)
    if settings.serve_workers > 1:
        # Each process builds its own app from the settings resolved here (the kept token
        # included): uvicorn hands the factory and its arguments to the process it starts,
        # so they travel by pipe, never through the environment or the command line.
        factory = partial(app_of_server_process, settings, log_level)
        _run_processes_until_stopped(_uvicorn_config(factory, settings, log_level))
        return
    from riskhub.api.app import create_app
    from riskhub.cli.serving import GracefulServer

    config = _uvicorn_config(create_app(settings), settings, log_level)
    tune_gc_for_service()
    _run_until_stopped(GracefulServer(config))


def _uvicorn_config(app: ASGIApp | AppFactory, settings: Settings, log_level: str) -> uvicorn.Config:
    import uvicorn

    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=settings.serve_workers,
        factory=settings.serve_workers > 1,
        log_level=log_level,
        log_config=None,  # uvicorn's loggers go through ours (riskhub.logs): one format
        access_log=False,  # the hub writes its own access lines, with route and request id
        server_header=False,
        # uvicorn would take X-Forwarded-For from any 127.0.0.1 peer as the client: the allowlist
        # (api/network.py) reads it itself, only from RISKHUB_TRUSTED_PROXIES.
        proxy_headers=False,
    )


def app_of_server_process(settings: Settings, log_level: str) -> ASGIApp:
    """The app factory each process of ``serve --workers N`` calls at its start (in the child:
    logging and the app are built there, from the parent's settings)."""
    from uvicorn.config import STARTUP_FAILURE

    from riskhub.api.app import create_app

    configure_logging(log_level, settings.log_format)
    # uvicorn turned its own access lines off in this process before this ran, and
    # configure_logging routed its loggers to ours again: off once more (the hub writes its own).
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    try:
        app = create_app(settings)
    except (RiskHubError, ValueError, OSError) as exc:  # what the command line reports in one line
        log.error("cannot start: %s", exc.message if isinstance(exc, RiskHubError) else exc)
        sys.exit(STARTUP_FAILURE)  # uvicorn's supervisor then stops, instead of restarting it
    tune_gc_for_service()
    return app


def _run_processes_until_stopped(config: uvicorn.Config) -> None:
    """Bind the port here and let uvicorn's supervisor run ``config.workers`` processes on it
    (a process that dies is replaced). Ctrl-C or SIGTERM stops them all gracefully and returns:
    exit 0. A process that could not start stops the rest, and the exit is uvicorn's 3."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import Multiprocess

    sock = config.bind_socket()
    supervisor = Multiprocess(config, sockets=[sock])
    try:
        supervisor.run()
    finally:
        _ignore_stop_signals()  # installed after the children started: they keep the default
        sock.close()
    if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
        typer.echo("error: a server process could not start (the log above says why)", err=True)
        raise typer.Exit(STARTUP_FAILURE)


def _check_port_free(host: str, port: int) -> None:
    """Fail before the banner (and its token) when the address cannot be bound; uvicorn would
    only say so after it. A race with another process remains, uvicorn then reports it."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.create_server((host, port), family=family):
            pass
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


def _print_banner(settings: Settings, kept: KeptToken | None) -> None:
    url = f"http://{settings.host}:{settings.port}"
    embedded = settings.database_url is None
    where = f"embedded, data in {settings.data_dir.absolute()}" if embedded else "production backends"
    if settings.serve_workers > 1:
        where += f", {settings.serve_workers} processes"
    typer.echo(f"riskhub serving on {url} ({where})")
    # The hint names $HUB_TOKEN in double quotes so a pasted line expands it.
    curl = f'curl -H "Authorization: Bearer $HUB_TOKEN" {url}/risk-hub/worlds/w1/snapshots/latest'
    if kept is not None:
        _print_kept_token(kept)
        curl = f"export HUB_TOKEN=$(cat {shlex.quote(str(kept.path))}); {curl}"
    typer.echo(f"try: {curl}")


def _print_kept_token(kept: KeptToken) -> None:
    """The token itself once, when generated; afterwards only where it is."""
    choose = "set RISKHUB_TOKENS or RISKHUB_TOKENS_FILE to choose"
    if kept.generated:
        typer.echo(f"generated read-write token (shown once, kept in {kept.path}; {choose}): {kept.value}")
        return
    typer.echo(f"read-write token: the one kept in {kept.path} ({choose})")
    if kept.readable_by_others():
        typer.echo(f"warning: {kept.path} is readable by other users: chmod 600 it", err=True)


def _run_until_stopped(server: uvicorn.Server) -> None:
    """Serve until Ctrl-C or SIGTERM, then return: a stop that was asked for exits 0.

    Once shut down, uvicorn raises the signal again into the handlers it found at its start,
    so that the process dies of it: `uv run` then exits 130 (143) and `make run` adds
    "make: *** [run] Error 130". Finding the signals ignored, it lets the repeat pass."""
    _ignore_stop_signals()
    server.run()


def _ignore_stop_signals() -> None:
    """A stop already under way needs no second one. Ignored, not a Python handler that does
    nothing: `uv run` may forward the terminal's Ctrl-C once more, late, and while the
    interpreter shuts down Python resets its own handlers to the default, which would let
    that copy kill the process (exit 130) after a clean stop; an ignored signal stays ignored."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)


MetricsPort = Annotated[int, typer.Option(help="Prometheus /metrics port (0: off)")]
MetricsHost = Annotated[str, typer.Option(help="Prometheus bind address")]


def worker(
    metrics_port: MetricsPort = 9101,
    metrics_host: MetricsHost = "127.0.0.1",
    max_records: Annotated[int | None, typer.Option(help="Stop after this many records")] = None,
) -> None:
    """Consume `risk_snapshot_updated` events as group `worldservice-risk-hub` and run the workers."""
    from riskhub.bootstrap import build_components, build_kafka_worker

    configure_logging("info")
    settings = Settings().model_copy(update={"run_relay": False})

    async def run() -> None:
        parts = build_components(settings)
        await parts.start(background=False)
        tune_gc_for_service()
        try:
            _serve_metrics(parts.metrics.registry, metrics_host, metrics_port)
            await build_kafka_worker(parts).run(stop=_stop_on_signals(), max_records=max_records)
        finally:
            await parts.stop()

    asyncio.run(run())


def relay(metrics_port: MetricsPort = 9102, metrics_host: MetricsHost = "127.0.0.1") -> None:
    """Publish the outbox to Kafka on its own (for `serve` replicas started with RISKHUB_RUN_RELAY=false)."""
    from riskhub.bootstrap import build_components

    configure_logging("info")
    settings = Settings().model_copy(update={"run_relay": True})
    if settings.controlbus_brokers is None:
        fail("RISKHUB_CONTROLBUS_BROKERS is required: the in-process bus only exists inside `serve`")

    async def run() -> None:
        parts = build_components(settings)
        await parts.start(background=True)
        tune_gc_for_service()
        try:
            _serve_metrics(parts.metrics.registry, metrics_host, metrics_port)
            await _stop_on_signals().wait()
        finally:
            await parts.stop()

    asyncio.run(run())


def _serve_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    if port:
        start_http_server(port, addr=host, registry=registry)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def migrate(
    dsn: DsnOption = None, schema: Annotated[str | None, typer.Option(help="PostgreSQL schema")] = None
) -> None:
    """Apply pending schema migrations (the hub also applies them at start)."""
    from riskhub.bootstrap import build_store

    settings = settings_with(database_url=dsn, database_schema=schema)

    async def run() -> None:
        store = build_store(settings)
        await store.open()
        await store.close()

    asyncio.run(run())
    typer.echo(f"schema up to date ({database_kind(settings)})")


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    for command in (serve, worker, relay, migrate):
        add_command(app, command)

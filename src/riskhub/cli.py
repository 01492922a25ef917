"""``riskhub`` command line: thin wrappers over the same code the server runs."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from prometheus_client import CollectorRegistry, start_http_server
from rich.console import Console
from rich.table import Table

from riskhub.config import Settings
from riskhub.contract import normalize_snapshot, parse_json
from riskhub.errors import RiskHubError

# No locals in tracebacks: they could hold tokens.
app = typer.Typer(
    help="riskhub: the Risk Signal Hub.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [RISKHUB_HOST]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [RISKHUB_PORT]")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Embedded data dir [RISKHUB_DATA_DIR]")] = None,
    log_level: Annotated[str, typer.Option(help="Log level")] = "info",
) -> None:
    """Run the hub (HTTP API + outbox relay + in-process consumer) on settings from env."""
    import uvicorn

    from riskhub.api.app import create_app

    overrides: dict[str, Any] = {
        k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v is not None
    }
    settings = Settings(**overrides)
    generated = None
    if not settings.tokens:
        generated = secrets.token_urlsafe(24)
        settings = settings.model_copy(update={"tokens": [generated]})
    _configure_logging(log_level)
    _print_banner(settings, generated)
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()


def _print_banner(settings: Settings, generated: str | None) -> None:
    url = f"http://{settings.host}:{settings.port}"
    embedded = settings.database_url is None
    where = f"embedded, data in {settings.data_dir.absolute()}" if embedded else "production backends"
    typer.echo(f"riskhub serving on {url} ({where})")
    if generated is not None:
        typer.echo(f"generated read-write token (shown once; set RISKHUB_TOKENS to choose): {generated}")
    token = generated or "$HUB_TOKEN"
    typer.echo(f"try: curl -H 'Authorization: Bearer {token}' {url}/risk-hub/worlds/w1/snapshots/latest")


@app.command()
def lint(
    files: Annotated[list[Path], typer.Argument(help="Snapshot JSON files")],
    world: Annotated[str | None, typer.Option(help="World id (default: the file's world_id)")] = None,
    actor: Annotated[str | None, typer.Option(help="Actor, as X-Actor would give it")] = None,
    stage: Annotated[str | None, typer.Option(help="Stage, as X-Stage would give it")] = None,
) -> None:
    """Validate snapshot files offline with the shared contract (exit 1 on any problem)."""
    rules = Settings().contract_rules
    problems = 0
    for path in files:
        try:
            doc = parse_json(path.read_bytes())
            world_id = world or (doc.get("world_id") if isinstance(doc, dict) else None)
            if not isinstance(world_id, str):
                raise _LintProblem("world_id: not in the file; pass --world")
            snap = normalize_snapshot(doc, world_id=world_id, actor=actor, stage=stage, rules=rules)
        except OSError as exc:
            problems += 1
            typer.echo(f"{path}: cannot read: {exc.strerror}")
        except (RiskHubError, _LintProblem) as exc:
            problems += 1
            typer.echo(f"{path}: {exc}")
        else:
            typer.echo(f"{path}: ok {snap.world_id}/{snap.version} {snap.hash}")
    raise typer.Exit(1 if problems else 0)


class _LintProblem(Exception):
    pass


MetricsPort = Annotated[int, typer.Option(help="Prometheus /metrics port (0: off)")]
MetricsHost = Annotated[str, typer.Option(help="Prometheus bind address")]


@app.command()
def worker(
    metrics_port: MetricsPort = 9101,
    metrics_host: MetricsHost = "127.0.0.1",
    max_records: Annotated[int | None, typer.Option(help="Stop after this many records")] = None,
) -> None:
    """Consume `risk_snapshot_updated` events as group `worldservice-risk-hub` and run the workers."""
    from riskhub.bootstrap import build_components, build_kafka_worker

    _configure_logging("info")
    settings = Settings().model_copy(update={"run_relay": False})

    async def run() -> None:
        parts = build_components(settings)
        await parts.start(background=False)
        try:
            _serve_metrics(parts.metrics.registry, metrics_host, metrics_port)
            await build_kafka_worker(parts).run(stop=_stop_on_signals(), max_records=max_records)
        finally:
            await parts.stop()

    _run_or_fail(run())


@app.command()
def relay(metrics_port: MetricsPort = 9102, metrics_host: MetricsHost = "127.0.0.1") -> None:
    """Publish the outbox to Kafka on its own (for `serve` replicas started with RISKHUB_RUN_RELAY=false)."""
    from riskhub.bootstrap import build_components

    _configure_logging("info")
    settings = Settings().model_copy(update={"run_relay": True})
    if settings.controlbus_brokers is None:
        _fail("RISKHUB_CONTROLBUS_BROKERS is required: the in-process bus only exists inside `serve`")

    async def run() -> None:
        parts = build_components(settings)
        await parts.start(background=True)
        try:
            _serve_metrics(parts.metrics.registry, metrics_host, metrics_port)
            await _stop_on_signals().wait()
        finally:
            await parts.stop()

    _run_or_fail(run())


def _serve_metrics(registry: CollectorRegistry, host: str, port: int) -> None:
    if port:
        start_http_server(port, addr=host, registry=registry)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")


dlq_app = typer.Typer(help="Inspect and replay the dead-letter topic.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """List the events on `dlq_topic` with their error and origin."""
    from riskhub.bus.dlq import read_dlq

    settings = _kafka_settings()
    entries = asyncio.run(read_dlq(settings.controlbus_brokers or "", settings.dlq_topic or ""))
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry.summary()))
        return
    table = Table("id", "origin", "world", "version", "attempts", "error")
    for entry in entries:
        row = entry.summary()
        table.add_row(
            row["id"],
            row["origin"],
            str(row["world_id"]),
            str(row["version"]),
            str(row["attempts"]),
            f"{row['error_type']}: {row['error_message']}",
        )
    Console().print(table)
    typer.echo(f"{len(entries)} dead-lettered events on {settings.dlq_topic}")


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[str] | None, typer.Option("--id", help="DLQ event id (repeatable)")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every event on the DLQ")] = False,
) -> None:
    """Republish original events once, to their original topic (workers run again)."""
    from riskhub.bus.dlq import read_dlq, replay
    from riskhub.bus.kafka import KafkaPublisher

    settings = _kafka_settings()
    if not ids and not replay_all:
        _fail("name events with --id, or pass --all")

    async def run() -> None:
        entries = await read_dlq(settings.controlbus_brokers or "", settings.dlq_topic or "")
        chosen = entries if replay_all else [e for e in entries if e.id in set(ids or ())]
        unknown = set(ids or ()) - {e.id for e in entries}
        if unknown:
            _fail(f"not on the DLQ: {', '.join(sorted(unknown))}")
        publisher = KafkaPublisher(
            settings.controlbus_brokers or "", idempotence=settings.controlbus_idempotence
        )
        try:
            sent = await replay(publisher, chosen)
        finally:
            await publisher.close()
        typer.echo(f"replayed {sent} of {len(chosen)} events")

    _run_or_fail(run())


def _kafka_settings() -> Settings:
    settings = Settings()
    if settings.controlbus_brokers is None or settings.dlq_topic is None:
        _fail("RISKHUB_CONTROLBUS_BROKERS and RISKHUB_DLQ_TOPIC are required")
    return settings


DsnOption = Annotated[
    str | None, typer.Option("--dsn", help="Database URL [RISKHUB_DATABASE_URL]", show_default=False)
]


@app.command()
def migrate(dsn: DsnOption = None, schema: Annotated[str | None, typer.Option()] = None) -> None:
    """Apply pending schema migrations (the hub also applies them at start)."""
    from riskhub.bootstrap import build_store

    settings = _settings(database_url=dsn, database_schema=schema)

    async def run() -> None:
        store = build_store(settings)
        await store.open()
        await store.close()

    asyncio.run(run())
    typer.echo(f"schema up to date ({_database_kind(settings)})")


@app.command()
def backfill(
    dsn: DsnOption = None,
    redis: Annotated[str | None, typer.Option("--redis", help="Redis URL [RISKHUB_REDIS_URL]")] = None,
    world: Annotated[list[str] | None, typer.Option("--world", help="World id (repeatable)")] = None,
    all_worlds: Annotated[bool, typer.Option("--all", help="Every world in the store")] = False,
    re_emit: Annotated[bool, typer.Option("--re-emit", help="Also enqueue each latest event again")] = False,
    schema: Annotated[str | None, typer.Option(help="PostgreSQL schema")] = None,
) -> None:
    """Repopulate the latest cache from the store, with a progress bar and a summary."""
    from rich.progress import Progress

    from riskhub.backfill import backfill_latest
    from riskhub.bootstrap import build_cache, build_store

    settings = _settings(database_url=dsn, redis_url=redis, database_schema=schema)
    if settings.redis_url is None:
        _fail("--redis (or RISKHUB_REDIS_URL) is required: the embedded cache lives inside the hub")
    if not world and not all_worlds:
        _fail("name worlds with --world, or pass --all")

    async def run() -> None:
        store, cache = build_store(settings), build_cache(settings)
        await store.open()
        try:
            worlds = await store.world_ids() if all_worlds else list(world or [])
            with Progress(transient=True) as progress:
                task = progress.add_task("backfilling", total=len(worlds))
                report = await backfill_latest(
                    store,
                    cache,
                    worlds,
                    stages=settings.allowed_stages,
                    re_emit=re_emit,
                    on_world=lambda _: progress.advance(task),
                )
        finally:
            await cache.close()
            await store.close()
        typer.echo(
            f"backfilled {report.worlds} worlds: {report.cached} cache entries,"
            f" {report.re_emitted} events re-emitted, {len(report.missing)} without snapshots"
            + (f" ({', '.join(report.missing)})" if report.missing else "")
        )

    _run_or_fail(run())


def _settings(**overrides: Any) -> Settings:
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def _database_kind(settings: Settings) -> str:
    return "sqlite" if settings.database_url is None else settings.database_url.split(":", 1)[0]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _run_or_fail(main: Coroutine[Any, Any, None]) -> None:
    try:
        asyncio.run(main)
    except RiskHubError as exc:
        _fail(exc.message)


def main() -> None:
    """Console entry point."""
    app(prog_name="riskhub")


if __name__ == "__main__":
    main()

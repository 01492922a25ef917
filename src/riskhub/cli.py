"""``riskhub`` command line: thin wrappers over the same code the server runs."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import secrets
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from prometheus_client import CollectorRegistry, start_http_server
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from riskhub.config import Settings
from riskhub.contract import ContractRules, normalize_snapshot, parse_json
from riskhub.errors import RequestRejected, RiskHubError, Unavailable

if TYPE_CHECKING:  # the tools import these lazily, so the other commands start fast
    from riskhub.blobs import BlobStore
    from riskhub.client import AsyncRiskHubClient
    from riskhub.monitor import FreshnessReport, Thresholds

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
        settings = settings.model_copy(update={"tokens": [SecretStr(generated)]})
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


# --- producer and operator tools: publish, monitor ---------------------------------------------

TokenOption = Annotated[
    str | None,
    typer.Option("--token", envvar="HUB_TOKEN", help="Bearer token [env HUB_TOKEN]", show_default=False),
]
PUBLISH_STORED, PUBLISH_INVALID, PUBLISH_REJECTED, PUBLISH_UNREACHABLE = 0, 1, 2, 3
MONITOR_UNKNOWN = 3


@app.command()
def publish(
    base_url: Annotated[str, typer.Option("--base-url", help="Hub URL, e.g. $WS_URL", show_default=False)],
    world: Annotated[str, typer.Option("--world", help="World id", show_default=False)],
    snapshot: Annotated[Path, typer.Option("--snapshot", help="Snapshot JSON file", show_default=False)],
    token: TokenOption = None,
    actor: Annotated[str | None, typer.Option(help="X-Actor (default: provenance.actor)")] = None,
    stage: Annotated[str | None, typer.Option(help="X-Stage (default: provenance.stage)")] = None,
    inline_cov_threshold: Annotated[
        int | None,
        typer.Option(help="With --blob-url: offload covariance/returns/stress over this many bytes [262144]"),
    ] = None,
    blob_url: Annotated[
        str | None, typer.Option(help="The hub's blob store: file:///dir, s3://bucket/prefix, redis://...")
    ] = None,
    s3_endpoint_url: Annotated[str | None, typer.Option(help="S3 endpoint [RISKHUB_S3_ENDPOINT_URL]")] = None,
    allowed_actors: Annotated[str | None, typer.Option(help="Comma-separated actor allowlist")] = None,
    allowed_stages: Annotated[str | None, typer.Option(help="Comma-separated stage allowlist")] = None,
    timeout_seconds: Annotated[float, typer.Option(help="Per-request timeout")] = 10.0,
    max_attempts: Annotated[int, typer.Option(help="Requests at most (retries on 429/5xx/no answer)")] = 5,
    retry_budget_seconds: Annotated[float, typer.Option(help="No retry starts after this")] = 30.0,
) -> None:
    """Validate a snapshot file with the shared contract, offload large parts, POST with retries.

    Exit 0 stored (201) or already stored (200), 1 contract violation (nothing sent), 2 refused by
    the hub (400/401/403/409/413/422), 3 hub or blob store unreachable after retries."""
    from riskhub.client import DEFAULT_INLINE_COV_THRESHOLD, AsyncRiskHubClient, RetryPolicy

    if not token:
        _fail("no token: pass --token or set HUB_TOKEN")
    doc = _read_snapshot_file(snapshot)
    settings = _settings(blob_url=blob_url, s3_endpoint_url=s3_endpoint_url)
    if blob_url is None and inline_cov_threshold is not None:
        typer.echo(
            "note: without --blob-url parts go inline; the hub offloads over its own threshold", err=True
        )

    async def run() -> int:
        client = AsyncRiskHubClient(
            base_url,
            token,
            actor=actor,
            stage=stage,
            timeout_s=timeout_seconds,
            retry=RetryPolicy(max_attempts=max_attempts, budget_s=retry_budget_seconds),
            inline_cov_threshold=inline_cov_threshold or DEFAULT_INLINE_COV_THRESHOLD,
            blobs=None if blob_url is None else _blob_store(settings),
            rules=_publish_rules(settings, allowed_actors, allowed_stages),
        )
        async with client:
            return await _publish_once(client, world, doc)

    raise typer.Exit(asyncio.run(run()))


def _read_snapshot_file(path: Path) -> Any:
    try:
        return parse_json(path.read_bytes())
    except OSError as exc:
        typer.echo(f"error: {path}: cannot read: {exc.strerror}", err=True)
    except RiskHubError as exc:
        typer.echo(f"error: {path}: {exc.message} (nothing was sent)", err=True)
    raise typer.Exit(PUBLISH_INVALID)


def _publish_rules(
    settings: Settings, allowed_actors: str | None, allowed_stages: str | None
) -> ContractRules:
    rules = settings.contract_rules
    if allowed_actors is not None:
        rules = dataclasses.replace(rules, allowed_actors=frozenset(_comma_list(allowed_actors)))
    if allowed_stages is not None:
        stages = frozenset(stage.lower() for stage in _comma_list(allowed_stages))
        rules = dataclasses.replace(rules, allowed_stages=stages)
    return rules


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _blob_store(settings: Settings) -> BlobStore:
    from riskhub.bootstrap import build_blobs

    try:
        return build_blobs(settings)
    except ValueError as exc:
        _fail(str(exc))


async def _publish_once(client: AsyncRiskHubClient, world: str, doc: Any) -> int:
    """prepare (local: exit 1 on a violation) then send (exit 2 refused, 3 unreachable)."""
    try:
        prepared = await client.prepare(world, doc)
    except RequestRejected as exc:
        typer.echo(f"error: {exc.message} (nothing was sent)", err=True)
        return PUBLISH_INVALID
    except Unavailable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return PUBLISH_UNREACHABLE
    for part, ref in prepared.offloaded.items():
        typer.echo(f"offloaded {part} -> {ref}")
    try:
        receipt = await client.send(prepared)
    except RequestRejected as exc:
        typer.echo(f"error: refused by the hub ({exc.code}): {exc.message}", err=True)
        return PUBLISH_REJECTED
    except Unavailable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        return PUBLISH_UNREACHABLE
    outcome = "201 created" if receipt.created else "200 already stored (deduplicated)"
    typer.echo(f"{outcome} {receipt.world_id}/{receipt.version} {receipt.hash}")
    return PUBLISH_STORED


@app.command()
def monitor(
    base_url: Annotated[str | None, typer.Option("--base-url", help="Hub URL, e.g. $WS_URL")] = None,
    world: Annotated[list[str] | None, typer.Option("--world", help="World id (repeatable)")] = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", help="Check each stage separately (repeatable)")
    ] = None,
    token: TokenOption = None,
    warn_seconds: Annotated[float, typer.Option(help="WARN when the latest as_of is older")] = 600.0,
    crit_seconds: Annotated[float, typer.Option(help="CRIT when the latest as_of is older")] = 1800.0,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable report")] = False,
    timeout_seconds: Annotated[float, typer.Option(help="Per-request timeout")] = 5.0,
) -> None:
    """Freshness of the latest snapshot per world (and stage): OK / WARN / CRIT / MISSING.

    Nagios exit codes: 0 OK, 1 WARN, 2 CRIT or no snapshot, 3 hub unreachable, token refused or
    missing arguments. Prints the status line first, then a table (or JSON with --json)."""
    from riskhub.monitor import Thresholds

    problem = _monitor_usage_problem(base_url, world, token, warn_seconds, crit_seconds)
    if problem or base_url is None or token is None or not world:
        typer.echo(f"RISKHUB FRESHNESS UNKNOWN - {problem}", err=True)
        raise typer.Exit(MONITOR_UNKNOWN)
    thresholds = Thresholds(warn_s=warn_seconds, crit_s=crit_seconds)
    try:
        report = asyncio.run(
            _check_freshness(base_url, token, world, stage or [], thresholds, timeout_seconds)
        )
    except Exception as exc:  # a crashed check must say UNKNOWN (3), never exit 1 (WARN)
        typer.echo(f"RISKHUB FRESHNESS UNKNOWN - monitor failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(MONITOR_UNKNOWN) from None
    if as_json:
        typer.echo(report.to_json())
    else:
        typer.echo(report.summary())
        Console().print(report.table())
    raise typer.Exit(report.exit_code)


def _monitor_usage_problem(
    base_url: str | None, worlds: list[str] | None, token: str | None, warn_s: float, crit_s: float
) -> str | None:
    if not base_url:
        return "--base-url is required"
    if not worlds:
        return "name worlds with --world (repeatable)"
    if not token:
        return "no token: pass --token or set HUB_TOKEN"
    if not 0 <= warn_s <= crit_s:
        return "--warn-seconds must be >= 0 and <= --crit-seconds"
    return None


async def _check_freshness(
    base_url: str,
    token: str,
    worlds: list[str],
    stages: list[str],
    thresholds: Thresholds,
    timeout_s: float,
) -> FreshnessReport:
    from riskhub.client import AsyncRiskHubClient, RetryPolicy
    from riskhub.monitor import check_freshness

    # One quick retry: a monitor must answer within its own timeout, not wait out an outage.
    retry = RetryPolicy(max_attempts=2, backoff_s=0.2, budget_s=timeout_s)
    async with AsyncRiskHubClient(base_url, token, timeout_s=timeout_s, retry=retry) as client:
        return await check_freshness(client, worlds, stages, thresholds)


def main() -> None:
    """Console entry point."""
    app(prog_name="riskhub")


if __name__ == "__main__":
    main()

"""``riskhub`` command line: thin wrappers over the same code the server runs."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

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
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
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

"""Data operations: ``backfill`` (store -> cache) and ``dlq list|replay``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from riskhub.cli.common import DsnOption, add_command, configure_logging, fail, new_app, settings_with
from riskhub.config import Settings

if TYPE_CHECKING:
    from riskhub.bus.dlq import DlqEntry


def dlq_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line")] = False,
) -> None:
    """List the events on `dlq_topic` with their error and origin."""
    from riskhub.bus.dlq import read_dlq

    settings = _kafkasettings_with()
    entries = asyncio.run(read_dlq(settings.controlbus_brokers or "", settings.dlq_topic or ""))
    if as_json:
        for entry in entries:
            typer.echo(json.dumps(entry.summary()))
        return
    Console().print(dlq_table(entries))
    typer.echo(f"{len(entries)} dead-lettered events on {settings.dlq_topic}")


def dlq_replay(
    ids: Annotated[list[str] | None, typer.Option("--id", help="DLQ event id (repeatable)")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every event on the DLQ")] = False,
) -> None:
    """Republish original events once, to their original topic (workers run again)."""
    from riskhub.bus.dlq import read_dlq, replay
    from riskhub.bus.kafka import KafkaPublisher

    settings = _kafkasettings_with()
    if not ids and not replay_all:
        fail("name events with --id, or pass --all")

    async def run() -> None:
        entries = await read_dlq(settings.controlbus_brokers or "", settings.dlq_topic or "")
        chosen = entries if replay_all else [e for e in entries if e.id in set(ids or ())]
        unknown = set(ids or ()) - {e.id for e in entries}
        if unknown:
            fail(f"not on the DLQ: {', '.join(sorted(unknown))}")
        publisher = KafkaPublisher(
            settings.controlbus_brokers or "", idempotence=settings.controlbus_idempotence
        )
        try:
            sent = await replay(publisher, chosen)
        finally:
            await publisher.close()
        typer.echo(f"replayed {sent} of {len(chosen)} events")

    asyncio.run(run())


def _kafkasettings_with() -> Settings:
    configure_logging("critical")  # failures are reported once, by the command; aiokafka logs each
    settings = Settings()
    if settings.controlbus_brokers is None or settings.dlq_topic is None:
        fail("RISKHUB_CONTROLBUS_BROKERS and RISKHUB_DLQ_TOPIC are required")
    return settings


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

    from riskhub.bootstrap import build_cache, build_store, sqlite_path
    from riskhub.ops.backfill import backfill_latest

    settings = settings_with(database_url=dsn, redis_url=redis, database_schema=schema)
    if settings.redis_url is None:
        fail("--redis (or RISKHUB_REDIS_URL) is required: the embedded cache lives inside the hub")
    if not world and not all_worlds:
        fail("name worlds with --world, or pass --all")
    database = sqlite_path(settings)
    if database is not None and not database.is_file():  # opening it would create an empty store
        fail(f"no SQLite database at {database}: backfill reads an existing store (check --dsn)")

    async def run() -> None:
        store, cache = build_store(settings), build_cache(settings)
        await store.open()
        try:
            worlds = await store.world_ids() if all_worlds else list(world or [])
            # A bar for a person at a terminal; in a log (cron, CI) it would only leave a blank line.
            with Progress(transient=True, disable=not Console().is_terminal) as progress:
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
            f" {report.re_emitted} events re-emitted, {len(report.skipped)} skipped"
        )
        for skipped, why in report.skipped.items():
            typer.echo(f"skipped {skipped}: {why}")

    asyncio.run(run())


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    add_command(app, backfill)
    dlq_app = new_app("Inspect and replay the dead-letter topic.")
    add_command(dlq_app, dlq_list, name="list")
    add_command(dlq_app, dlq_replay, name="replay")
    app.add_typer(dlq_app, name="dlq")


def dlq_table(entries: Sequence[DlqEntry]) -> Table:
    """One row per dead-lettered event. Cells are ``Text``: rich reads "[x]" in a plain string as
    markup and ":name:" as an emoji (the id ``dlq:boom:0:3`` must print as is, to be pasted)."""
    table = Table("id", "origin", "world", "version", "attempts", "error")
    for entry in entries:
        row = entry.summary()
        cells = (row["id"], row["origin"], row["world_id"], row["version"], row["attempts"])
        error = f"{row['error_type']}: {row['error_message']}"
        table.add_row(*(Text(str(cell)) for cell in (*cells, error)))
    return table

"""The runbook's deployment checklist: ``doctor`` (check it) and ``topics create`` (the Kafka part).

Both exit 0 when all is good, 1 on warnings, 2 on failures (and, as every command, 2 on an
error that stops them: bad settings, unreachable brokers for ``topics create``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from riskhub.cli.common import add_command, configure_logging, fail
from riskhub.config import DOCTOR_TIMEOUT_S, TOPIC_PARTITIONS, TOPIC_RETENTION_MS, Settings

if TYPE_CHECKING:
    from riskhub.ops.topics import TopicOutcome


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds each check may take")] = DOCTOR_TIMEOUT_S,
) -> None:
    """Check this host's RISKHUB_* configuration against the runbook's deployment checklist.

    One line per checklist item (ok / warn / fail). Exit 0 all good, 1 warnings, 2 failures."""
    from riskhub.ops.doctor import run_doctor

    configure_logging("critical")  # every failure is a line of the report; aiokafka would log each
    report = asyncio.run(run_doctor(Settings(), timeout_s=timeout))
    if as_json:
        typer.echo(report.to_json())
    else:
        Console().print(report.table())
        typer.echo(report.summary())
    raise typer.Exit(report.exit_code)


def topics_create(
    partitions: Annotated[
        int, typer.Option(min=1, help="Partitions (max useful worker replicas)")
    ] = TOPIC_PARTITIONS,
    replication_factor: Annotated[
        int | None,
        typer.Option(min=1, help="Replicas [default: 3, or the broker count if fewer]", show_default=False),
    ] = None,
    retention: Annotated[
        str | None,
        typer.Option(help="retention.ms as 7d, 36h, 90m, ms or forever [default: 7d]", show_default=False),
    ] = None,
) -> None:
    """Create the ControlBus topic and its DLQ topic with what the hub needs (idempotent: an
    existing topic is checked, never changed)."""
    from riskhub.bus.kafka_admin import KafkaAdmin
    from riskhub.ops.checklist import EXIT_CODES, worst
    from riskhub.ops.topics import create_topics, hub_topics, parse_retention

    configure_logging("critical")
    settings = Settings()
    if settings.controlbus_brokers is None:
        fail("RISKHUB_CONTROLBUS_BROKERS is required: the in-process bus has no topics to create")
    retention_ms = parse_retention(retention) if retention is not None else TOPIC_RETENTION_MS
    specs = hub_topics(
        settings, partitions=partitions, replication_factor=replication_factor, retention_ms=retention_ms
    )

    async def run() -> list[TopicOutcome]:
        async with KafkaAdmin(settings.controlbus_brokers or "", timeout_s=DOCTOR_TIMEOUT_S) as admin:
            return await create_topics(admin, specs)

    outcomes = asyncio.run(run())
    for outcome in outcomes:
        typer.echo(outcome.text())
        for note in outcome.notes:
            typer.echo(f"  note: {note}")
    created = [o.spec.name for o in outcomes if o.created]
    typer.echo(f"created {', '.join(created)}" if created else "nothing changed: every topic already exists")
    raise typer.Exit(EXIT_CODES[worst(o.inspection.state for o in outcomes)])


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    add_command(app, doctor)
    topics_app = typer.Typer(help="The ControlBus topic and its DLQ topic.", no_args_is_help=True)
    add_command(topics_app, topics_create, name="create")
    app.add_typer(topics_app, name="topics")

"""``riskhub snapshots retract``: take a bad version out of "latest" without deleting history."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from riskhub.cli.common import TokenOption, add_command, fail, new_app
from riskhub.cli.risk import DEFAULT_BASE_URL


def retract(
    world: Annotated[str, typer.Option("--world", help="World id")],
    version: Annotated[str, typer.Option("--version", help="The version to retract")],
    reason: Annotated[str, typer.Option("--reason", help="Why (stored, and sent with the event)")],
    base_url: Annotated[str, typer.Option("--base-url", envvar="WS_URL", help="Hub URL")] = (
        DEFAULT_BASE_URL
    ),
    token: TokenOption = None,
) -> None:
    """Retract a stored version through the hub (a read-write token): it stays stored and listed,
    marked "retracted", is never served as latest again (every replica's cache forgets it), and a
    `risk_snapshot_retracted` event goes out through the outbox. Exit 2 if the version does not
    exist or already is retracted."""
    if not token:
        fail("no token: pass --token or set HUB_TOKEN")
    answer = asyncio.run(_retract(base_url, token, world, version, reason))
    typer.echo(f"retracted {answer['world_id']}/{answer['version']} ({answer['hash']}): {reason}")


async def _retract(base_url: str, token: str, world: str, version: str, reason: str) -> dict[str, object]:
    from riskhub.client import AsyncRiskHubClient, RetryPolicy

    async with AsyncRiskHubClient(base_url, token, retry=RetryPolicy(max_attempts=2, budget_s=10)) as client:
        return await client.retract(world, version, reason)


def register(app: typer.Typer) -> None:
    """Add ``snapshots retract`` to the app."""
    snapshots_app = new_app("Operate on stored snapshots.")
    add_command(snapshots_app, retract)
    app.add_typer(snapshots_app, name="snapshots")

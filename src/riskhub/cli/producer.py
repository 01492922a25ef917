"""Operator tools: ``lint`` (snapshot files, offline) and ``monitor`` (freshness)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from typer._click import Context as ClickContext  # typer (0.29, locked) vendors its own click
from typer._click.exceptions import UsageError

from riskhub.cli.common import PlainHelpCommand, TokenOption, add_command
from riskhub.config import Settings
from riskhub.contract import ContractRules, normalize_snapshot, parse_json
from riskhub.contract.violations import contract_violations
from riskhub.errors import RiskHubError

if TYPE_CHECKING:  # the tools import these lazily, so the other commands start fast
    from riskhub.ops.monitor import FreshnessReport, Thresholds


def lint(
    files: Annotated[list[Path], typer.Argument(help="Snapshot JSON files", metavar="FILE")],
    world: Annotated[str | None, typer.Option(help="World id (default: the file's world_id)")] = None,
    actor: Annotated[str | None, typer.Option(help="Actor, as X-Actor would give it")] = None,
    stage: Annotated[str | None, typer.Option(help="Stage, as X-Stage would give it")] = None,
) -> None:
    """Validate snapshot files offline with the shared contract: every problem of a file, one
    line each, naming the field (exit 1 on any problem)."""
    rules = Settings().contract_rules
    failed = 0
    for path in files:
        valid, lines = _lint_file(path, world, actor, stage, rules)
        failed += not valid
        for line in lines:
            typer.echo(f"{path}: {line}")
    raise typer.Exit(1 if failed else 0)


def _lint_file(
    path: Path, world: str | None, actor: str | None, stage: str | None, rules: ContractRules
) -> tuple[bool, list[str]]:
    """Whether the file holds a valid snapshot, and what to say: each problem, or ``ok``."""
    try:
        doc = parse_json(path.read_bytes())
    except OSError as exc:
        return False, [f"cannot read: {exc.strerror}"]
    except RiskHubError as exc:
        return False, [exc.message]
    world_id = world or (doc.get("world_id") if isinstance(doc, dict) else None)
    if not isinstance(world_id, str):
        return False, ["world_id: not in the file; pass --world"]
    violations = contract_violations(doc, world_id=world_id, actor=actor, stage=stage, rules=rules)
    if violations:
        return False, [violation.message for violation in violations]
    snap = normalize_snapshot(doc, world_id=world_id, actor=actor, stage=stage, rules=rules)
    return True, [f"ok {snap.world_id}/{snap.version} {snap.hash}"]


# --- the freshness monitor ---------------------------------------------------------------------

MONITOR_UNKNOWN = 3


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
    bad or missing arguments. Prints the status line first, then a table (or JSON with --json)."""
    from riskhub.ops.monitor import Thresholds

    problem = _monitor_usage_problem(base_url, world, token, warn_seconds, crit_seconds)
    if problem or base_url is None or token is None or not world:
        typer.echo(f"RISKHUB FRESHNESS UNKNOWN - {problem}", err=True)
        raise typer.Exit(MONITOR_UNKNOWN)
    thresholds = Thresholds(warn_s=warn_seconds, crit_s=crit_seconds)
    try:
        report = asyncio.run(
            _check_freshness(base_url, token, world, stage or [], thresholds, timeout_seconds)
        )
    except ValueError as exc:  # base_url or token unusable (the message never quotes a token)
        typer.echo(f"RISKHUB FRESHNESS UNKNOWN - {exc}", err=True)
        raise typer.Exit(MONITOR_UNKNOWN) from None
    except Exception as exc:  # a crashed check must say UNKNOWN (3), never exit 1 (WARN)
        typer.echo(f"RISKHUB FRESHNESS UNKNOWN - monitor failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(MONITOR_UNKNOWN) from None
    if as_json:
        typer.echo(report.to_json())
    else:
        typer.echo(report.summary())
        Console().print(report.table())
    raise typer.Exit(report.exit_code)


class _NagiosUsageCommand(PlainHelpCommand):
    """A command line the monitor cannot parse is UNKNOWN (3) to Nagios, not click's 2 (CRIT)."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except UsageError as exc:  # unknown option, unparseable value (BadParameter)
            exc.exit_code = MONITOR_UNKNOWN
            raise


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
    from riskhub.ops.monitor import check_freshness

    # One quick retry: a monitor must answer within its own timeout, not wait out an outage.
    retry = RetryPolicy(max_attempts=2, backoff_s=0.2, budget_s=timeout_s)
    async with AsyncRiskHubClient(base_url, token, timeout_s=timeout_s, retry=retry) as client:
        return await check_freshness(client, worlds, stages, thresholds)


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    add_command(app, monitor, cls=_NagiosUsageCommand)
    add_command(app, lint)

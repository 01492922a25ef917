"""Producer and operator tools: ``publish``, ``monitor``, ``lint``."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from typer._click import Context as ClickContext  # typer (0.29, locked) vendors its own click
from typer._click.exceptions import UsageError

from riskhub.cli.common import PlainHelpCommand, TokenOption, add_command, settings_with
from riskhub.config import Settings
from riskhub.contract import ContractRules, normalize_snapshot, parse_json, stage_allowlist
from riskhub.errors import RequestRejected, RiskHubError, Unavailable

if TYPE_CHECKING:  # the tools import these lazily, so the other commands start fast
    from riskhub.blobs import BlobStore
    from riskhub.client import AsyncRiskHubClient
    from riskhub.ops.monitor import FreshnessReport, Thresholds


def lint(
    files: Annotated[list[Path], typer.Argument(help="Snapshot JSON files", metavar="FILE")],
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


# --- producer and operator tools: publish, monitor ---------------------------------------------

PUBLISH_STORED, PUBLISH_INVALID, PUBLISH_REJECTED, PUBLISH_UNREACHABLE = 0, 1, 2, 3
MONITOR_UNKNOWN = 3


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

    Exit 0 stored (201) or already stored (200), 1 nothing sent: contract violation or bad usage
    (no token, unreadable file, invalid URL), 2 refused by the hub (400/401/403/409/413/422), 3 hub
    or blob store unreachable after retries. (Options click cannot parse exit 2, as everywhere.)"""
    from riskhub.client import DEFAULT_INLINE_COV_THRESHOLD, AsyncRiskHubClient, RetryPolicy

    if not token:
        _bad_usage("no token: pass --token or set HUB_TOKEN")
    doc = _read_snapshot_file(snapshot)
    settings = settings_with(blob_url=blob_url, s3_endpoint_url=s3_endpoint_url)
    if blob_url is None and inline_cov_threshold is not None:
        typer.echo(
            "note: without --blob-url parts go inline; the hub offloads over its own threshold", err=True
        )

    async def run() -> int:
        blobs = None if blob_url is None else _blob_store(settings)
        try:
            client = AsyncRiskHubClient(
                base_url,
                token,
                actor=actor,
                stage=stage,
                timeout_s=timeout_seconds,
                retry=RetryPolicy(max_attempts=max_attempts, budget_s=retry_budget_seconds),
                inline_cov_threshold=inline_cov_threshold or DEFAULT_INLINE_COV_THRESHOLD,
                blobs=blobs,
                rules=_publish_rules(settings, allowed_actors, allowed_stages),
            )
        except ValueError as exc:  # base_url or token unusable (the message never quotes a token)
            if blobs is not None:
                await blobs.close()
            _bad_usage(str(exc))
        async with client:
            return await _publish_once(client, world, doc)

    raise typer.Exit(asyncio.run(run()))


def _bad_usage(message: str) -> NoReturn:
    """A local usage error of publish: the exit code it shares with a local contract violation."""
    typer.echo(f"error: {message} (nothing was sent)", err=True)
    raise typer.Exit(PUBLISH_INVALID)


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
        stages = stage_allowlist(_comma_list(allowed_stages))
        rules = dataclasses.replace(rules, allowed_stages=stages)
    return rules


def _comma_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _blob_store(settings: Settings) -> BlobStore:
    from riskhub.bootstrap import build_blobs

    try:
        return build_blobs(settings)
    except ValueError as exc:
        _bad_usage(str(exc))


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
    add_command(app, publish)
    add_command(app, monitor, cls=_NagiosUsageCommand)
    add_command(app, lint)

"""``riskhub publish``: validate a snapshot file, offload large parts, POST with retries."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from riskhub.cli.common import TokenOption, add_command, settings_with
from riskhub.config import INLINE_COV_THRESHOLD_BYTES, Settings
from riskhub.contract import ContractRules, parse_json, stage_allowlist
from riskhub.contract.violations import contract_violations
from riskhub.errors import RequestRejected, RiskHubError, Unavailable

if TYPE_CHECKING:  # imported lazily, so the other commands start fast
    from riskhub.blobs import BlobStore
    from riskhub.client import AsyncRiskHubClient

PUBLISH_STORED, PUBLISH_INVALID, PUBLISH_REJECTED, PUBLISH_UNREACHABLE = 0, 1, 2, 3


def publish(
    base_url: Annotated[str, typer.Option("--base-url", help="Hub URL, e.g. $WS_URL", show_default=False)],
    world: Annotated[str, typer.Option("--world", help="World id", show_default=False)],
    snapshot: Annotated[Path, typer.Option("--snapshot", help="Snapshot JSON file", show_default=False)],
    token: TokenOption = None,
    actor: Annotated[str | None, typer.Option(help="X-Actor (default: provenance.actor)")] = None,
    stage: Annotated[str | None, typer.Option(help="X-Stage (default: provenance.stage)")] = None,
    inline_cov_threshold: Annotated[
        int | None,
        typer.Option(
            help="With --blob-url: offload covariance/returns/stress over this many bytes"
            f"  [default: {INLINE_COV_THRESHOLD_BYTES}]"
        ),
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
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help="Date the snapshot now: as_of the current time, and the file's version suffixed"
            " with that time, so every run is a new snapshot",
        ),
    ] = False,
    ttl_sec: Annotated[
        int | None, typer.Option("--ttl-sec", help="Seconds it lives (instead of the file's ttl_sec)")
    ] = None,
) -> None:
    """Validate a snapshot file with the shared contract, offload large parts, POST with retries.

    Exit 0 stored (201) or already stored (200), 1 nothing sent: contract violation or bad usage
    (no token, unreadable file, invalid URL), 2 refused by the hub (400/401/403/409/413/422), 3 hub
    or blob store unreachable after retries. (Options click cannot parse exit 2, as everywhere.)"""
    from riskhub.client import DEFAULT_INLINE_COV_THRESHOLD, AsyncRiskHubClient, RetryPolicy

    if not token:
        _bad_usage("no token: pass --token or set HUB_TOKEN")
    doc = restamped(_read_snapshot_file(snapshot), at=datetime.now(UTC) if now else None, ttl_s=ttl_sec)
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


def restamped(doc: dict[str, Any], *, at: datetime | None, ttl_s: int | None) -> dict[str, Any]:
    """The snapshot dated ``at`` (``as_of``, and a version made unique by the same instant) and
    living ``ttl_s``, where given. A ``hash`` in the file certified it as it was: it is dropped,
    and the client hashes what it sends."""
    if at is None and ttl_s is None:
        return doc
    changed = {key: value for key, value in doc.items() if key != "hash"}
    if at is not None:
        stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        version = doc.get("version")
        changed["as_of"] = at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        changed["version"] = f"{version}-{stamp}" if isinstance(version, str) and version else stamp
    if ttl_s is not None:
        changed["ttl_sec"] = ttl_s
    return changed


def _bad_usage(message: str) -> NoReturn:
    """A local usage error of publish: the exit code it shares with a local contract violation."""
    typer.echo(f"error: {message} (nothing was sent)", err=True)
    raise typer.Exit(PUBLISH_INVALID)


def _read_snapshot_file(path: Path) -> dict[str, Any]:
    try:
        doc = parse_json(path.read_bytes())
    except OSError as exc:
        typer.echo(f"error: {path}: cannot read: {exc.strerror}", err=True)
    except RiskHubError as exc:
        typer.echo(f"error: {path}: {exc.message} (nothing was sent)", err=True)
    else:
        if isinstance(doc, dict):
            return doc
        typer.echo(f"error: {path}: body: must be a JSON object (nothing was sent)", err=True)
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
        violations = contract_violations(
            doc, world_id=world, actor=client.actor, stage=client.stage, rules=client.rules
        )
        for problem in violations or [exc]:  # every broken rule; prepare stops at the first
            typer.echo(f"error: {problem.message} (nothing was sent)", err=True)
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


def register(app: typer.Typer) -> None:
    """Add ``publish`` to the app."""
    add_command(app, publish)

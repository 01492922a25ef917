"""Producer SDK: validate with the shared contract, offload large parts, hash, POST with retries.

    prepare:  normalize_snapshot (the hub's own rules)  ->  offload parts over
              ``inline_cov_threshold`` to the blob store, replacing them by ``<part>_ref``
              ->  ``blake3:`` hash of the result (the hash covers the refs)
    send:     POST, retried with jittered exponential backoff on connection errors, timeouts,
              429 and 5xx (``Retry-After`` honoured), within ``max_attempts`` and ``budget_s``;
              never on another 4xx. Every retry carries the same bytes, hence the same hash,
              so the hub stores the snapshot once and answers a repeat with 200.

Errors are the classes of ``riskhub.errors``, carrying the hub's message and field:
``ContractError`` (422, or found locally before sending), ``MalformedRequest`` (400),
``Unauthorized`` (401), ``Forbidden`` (403), ``SnapshotNotFound`` / ``SnapshotExpired`` (404),
``VersionConflict`` (409), ``PayloadTooLarge`` (413); ``HubRejected`` for any other refusal,
``HubUnavailable`` once the retries are spent, ``UnexpectedAnswer`` for a 2xx that is not the
hub's. ``AsyncRiskHubClient`` is the implementation; ``RiskHubClient`` is its blocking twin for
producers without an event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypedDict, Unpack
from urllib.parse import quote

import httpx

from riskhub.client.answers import (
    HubRejected,
    HubUnavailable,
    UnexpectedAnswer,
    describe_transport_error,
    json_object,
    rejection_of,
    retry_after_seconds,
    retrying_while_unavailable,
    status_line,
    unavailable_text,
)
from riskhub.config import INLINE_COV_THRESHOLD_BYTES
from riskhub.contract import (
    ContractRules,
    check_world_id,
    normalize_snapshot,
    snapshot_hash,
)
from riskhub.contract.canonical import dumps_compact

if TYPE_CHECKING:
    from riskhub.blobs import BlobStore

__all__ = [
    "DEFAULT_INLINE_COV_THRESHOLD",
    "AsyncRiskHubClient",
    "ClientOptions",
    "HubRejected",
    "HubUnavailable",
    "PreparedSnapshot",
    "PublishReceipt",
    "RetryPolicy",
    "RiskHubClient",
    "UnexpectedAnswer",
    "retry_after_seconds",
]

log = logging.getLogger(__name__)

DEFAULT_INLINE_COV_THRESHOLD = INLINE_COV_THRESHOLD_BYTES  # bytes of a part's canonical JSON, as the hub's
HASH_ALGORITHM = "blake3"  # what existing producers send (the runbook's RiskHubClient sends blake3)
# Visible ASCII: a header value httpx can send. Anything else (CR, LF, non-ASCII) made httpx
# raise an error that quotes the whole header, token included.
_TOKEN = re.compile(r"[!-~]+")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: at most ``max_attempts`` requests, never starting a wait that would end
    past ``budget_s`` after the first attempt; waits are uniform in [0, backoff_s * 2^(n-1)],
    capped at ``max_backoff_s``, and never shorter than the hub's ``Retry-After``."""

    max_attempts: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    budget_s: float = 30.0


@dataclass(frozen=True, slots=True)
class PreparedSnapshot:
    """A validated snapshot as it goes on the wire: normalized, offloaded, hashed."""

    world_id: str
    version: str
    hash: str
    actor: str
    stage: str | None
    body: dict[str, Any]  # includes ``hash``
    offloaded: dict[str, str] = field(default_factory=dict)  # part -> ref written by this client

    def content(self) -> bytes:
        """The request body (the same bytes on every retry)."""
        return dumps_compact(self.body)


@dataclass(frozen=True, slots=True)
class PublishReceipt:
    """The hub's answer to a stored snapshot."""

    world_id: str
    version: str
    hash: str
    created: bool  # False: the hub already held this snapshot (an idempotent repeat, 200)
    status: int
    expires_at: str | None
    offloaded: dict[str, str]


class ClientOptions(TypedDict, total=False):
    """Keyword options shared by ``AsyncRiskHubClient`` and ``RiskHubClient``."""

    actor: str | None
    stage: str | None
    timeout_s: float
    connect_timeout_s: float
    retry: RetryPolicy
    inline_cov_threshold: int
    blobs: BlobStore | None
    rules: ContractRules
    transport: httpx.AsyncBaseTransport | None


class AsyncRiskHubClient:
    """Publish and read snapshots on one hub. ``blobs``, when given, receives the parts over
    ``inline_cov_threshold``; it must be the hub's own store (the hub only accepts refs into it).
    Without it, parts go inline and the hub offloads what is over its own threshold. The client
    closes ``blobs`` with itself. A ``base_url`` that is not http(s) or a token that cannot be a
    header value raises ``ValueError`` here, before any request (the message never quotes the token)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        actor: str | None = None,
        stage: str | None = None,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 3.0,
        retry: RetryPolicy = RetryPolicy(),
        inline_cov_threshold: int = DEFAULT_INLINE_COV_THRESHOLD,
        blobs: BlobStore | None = None,
        rules: ContractRules = ContractRules(),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url = _checked_base_url(base_url).rstrip("/")
        if not _TOKEN.fullmatch(token):
            raise ValueError("token: must be printable ASCII without spaces")
        self.__token = token  # only to redact it from errors of lower layers
        self.actor, self.stage = actor, stage
        self.retry, self.rules = retry, rules
        self.inline_cov_threshold = inline_cov_threshold
        self._blobs = blobs
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers={"authorization": f"Bearer {token}", "user-agent": "riskhub-client"},
            timeout=httpx.Timeout(timeout_s, connect=connect_timeout_s),
            transport=transport,
        )

    def __repr__(self) -> str:  # never the token
        return f"AsyncRiskHubClient({self.base_url!r}, actor={self.actor!r}, stage={self.stage!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool and the blob store."""
        try:
            await self._http.aclose()
        finally:
            if self._blobs is not None:
                await self._blobs.close()

    # --- write ---------------------------------------------------------------------------------

    async def publish(
        self,
        world_id: str,
        snapshot: Mapping[str, Any],
        *,
        actor: str | None = None,
        stage: str | None = None,
    ) -> PublishReceipt:
        """Validate, offload, hash and POST one snapshot (``prepare`` then ``send``)."""
        return await self.send(await self.prepare(world_id, snapshot, actor=actor, stage=stage))

    async def prepare(
        self,
        world_id: str,
        snapshot: Mapping[str, Any],
        *,
        actor: str | None = None,
        stage: str | None = None,
    ) -> PreparedSnapshot:
        """Everything before the network call to the hub: a contract violation raises here, naming
        the field, and nothing is sent. ``actor``/``stage`` default to the client's."""
        snap = normalize_snapshot(
            dict(snapshot),
            world_id=world_id,
            actor=actor or self.actor,
            stage=stage or self.stage,
            rules=self.rules,
            now=datetime.now(UTC),  # the producer's clock: a snapshot from the future is refused here already
        )
        body, offloaded = await self._offload_large_parts(snap.body)
        # The hub re-normalizes what it receives; normalization is idempotent, so it hashes these
        # exact fields (refs included) and a verifier can recompute the hash from the stored row.
        hash_ = snapshot_hash(body, HASH_ALGORITHM)
        return PreparedSnapshot(
            world_id=snap.world_id,
            version=snap.version,
            hash=hash_,
            actor=snap.actor,
            stage=snap.stage,
            body={**body, "hash": hash_},
            offloaded=offloaded,
        )

    async def _offload_large_parts(self, body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        if self._blobs is None:
            return body, {}
        from riskhub.blobs import offload_large_parts  # lazily: blob clients are heavy imports

        return await offload_large_parts(body, self._blobs, self.inline_cov_threshold)

    async def send(self, prepared: PreparedSnapshot) -> PublishReceipt:
        """POST a prepared snapshot, with retries; 201 stored, 200 already stored."""
        headers = {
            "content-type": "application/json",
            "x-actor": prepared.actor,
            # One id for every attempt of this publish: the hub's logs and the event group them.
            "x-correlation-id": str(uuid.uuid4()),
        }
        if prepared.stage is not None:
            headers["x-stage"] = prepared.stage
        request = self._http.build_request(
            "POST", _snapshots_path(prepared.world_id), content=prepared.content(), headers=headers
        )
        response = await self._send_with_retries(request)
        receipt = json_object(response)
        return PublishReceipt(
            world_id=receipt.get("world_id", prepared.world_id),
            version=receipt.get("version", prepared.version),
            hash=receipt.get("hash", prepared.hash),
            created=response.status_code == 201,
            status=response.status_code,
            expires_at=receipt.get("expires_at"),
            offloaded=prepared.offloaded,
        )

    # --- read ----------------------------------------------------------------------------------

    async def latest(
        self, world_id: str, *, stage: str | None = None, actor: str | None = None, expand: bool = False
    ) -> dict[str, Any]:
        """The newest unexpired snapshot (``SnapshotExpired`` / ``SnapshotNotFound`` otherwise);
        ``expand`` resolves every ``*_ref`` inline."""
        params = {key: value for key, value in (("stage", stage), ("actor", actor)) if value}
        if expand:
            params["expand"] = "true"
        path = _snapshots_path(world_id) + "/latest"
        response = await self._send_with_retries(self._http.build_request("GET", path, params=params))
        document = json_object(response)
        if "as_of" not in document:
            raise UnexpectedAnswer(f"GET {path}: the answer is not a snapshot ({status_line(response)})")
        return document

    async def risk(
        self, world_id: str, *, stage: str | None = None, version: str | None = None
    ) -> dict[str, Any]:
        """Risk results of the latest snapshot (of ``stage``), or of ``version``; ``status`` says
        whether they are ``pending``, ``done`` or ``failed``."""
        path = _risk_path(world_id) + ("" if version is not None else "/latest")
        params = {"version": version} if version is not None else {"stage": stage} if stage else {}
        response = await self._send_with_retries(self._http.build_request("GET", path, params=params))
        document = json_object(response)
        if "status" not in document:
            raise UnexpectedAnswer(f"GET {path}: the answer is not a risk result ({status_line(response)})")
        return document

    async def retract(self, world_id: str, version: str, reason: str) -> dict[str, Any]:
        """Retract a stored version (a read-write token): never served as latest again."""
        path = _snapshots_path(world_id) + "/retractions"
        body = dumps_compact({"version": version, "reason": reason})
        request = self._http.build_request(
            "POST", path, content=body, headers={"content-type": "application/json"}
        )
        return json_object(await self._send_with_retries(request))

    # --- one request, retried ----------------------------------------------------------------

    async def _send_with_retries(self, request: httpx.Request) -> httpx.Response:
        policy = self.retry
        retrying = retrying_while_unavailable(
            max_attempts=policy.max_attempts,
            budget_s=policy.budget_s,
            backoff_s=policy.backoff_s,
            max_backoff_s=policy.max_backoff_s,
        )
        try:
            response: httpx.Response = await retrying(self._attempt, request)
        except HubUnavailable as exc:
            attempts = retrying.statistics.get("attempt_number", 1)
            raise HubUnavailable(
                f"{exc.message} (gave up after {attempts} attempt{'s' if attempts > 1 else ''})",
                status=exc.status,
            ) from exc
        return response

    async def _attempt(self, request: httpx.Request) -> httpx.Response:
        target = f"{request.method} {request.url.path}"
        try:
            response = await self._http.send(request)
        except httpx.TransportError as exc:  # refused, reset, DNS, timeouts, protocol errors
            reason = describe_transport_error(exc)
            echoed = self.__token in reason  # never chain (or print) an error that quotes the token
            raise HubUnavailable(
                f"{target}: hub at {self.base_url} unreachable: {reason.replace(self.__token, '<token>')}"
            ) from (None if echoed else exc)
        status = response.status_code
        if status == 429 or status >= 500:
            raise HubUnavailable(
                f"{target}: {unavailable_text(response)}",
                status=status,
                retry_after_s=retry_after_seconds(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise rejection_of(response)
        return response


class RiskHubClient:
    """Blocking twin of ``AsyncRiskHubClient`` (same options, same behaviour) on a private event
    loop. Not for use inside a running event loop: there, use ``AsyncRiskHubClient``."""

    def __init__(self, base_url: str, token: str, **options: Unpack[ClientOptions]) -> None:
        self._runner = asyncio.Runner()
        self._client = AsyncRiskHubClient(base_url, token, **options)

    def __repr__(self) -> str:
        return repr(self._client).replace("AsyncRiskHubClient", "RiskHubClient", 1)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close connections, the blob store and the private event loop."""
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()

    def publish(
        self,
        world_id: str,
        snapshot: Mapping[str, Any],
        *,
        actor: str | None = None,
        stage: str | None = None,
    ) -> PublishReceipt:
        """See ``AsyncRiskHubClient.publish``."""
        return self._runner.run(self._client.publish(world_id, snapshot, actor=actor, stage=stage))

    def prepare(
        self,
        world_id: str,
        snapshot: Mapping[str, Any],
        *,
        actor: str | None = None,
        stage: str | None = None,
    ) -> PreparedSnapshot:
        """See ``AsyncRiskHubClient.prepare``."""
        return self._runner.run(self._client.prepare(world_id, snapshot, actor=actor, stage=stage))

    def send(self, prepared: PreparedSnapshot) -> PublishReceipt:
        """See ``AsyncRiskHubClient.send``."""
        return self._runner.run(self._client.send(prepared))

    def latest(
        self, world_id: str, *, stage: str | None = None, actor: str | None = None, expand: bool = False
    ) -> dict[str, Any]:
        """See ``AsyncRiskHubClient.latest``."""
        return self._runner.run(self._client.latest(world_id, stage=stage, actor=actor, expand=expand))


# --- helpers ------------------------------------------------------------------------------------


def _checked_base_url(base_url: str) -> str:
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL:
        url = httpx.URL()
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"base_url: must be an http:// or https:// URL, got {base_url!r}")
    return base_url


def _snapshots_path(world_id: str) -> str:
    return f"/risk-hub/worlds/{quote(check_world_id(world_id), safe='')}/snapshots"


def _risk_path(world_id: str) -> str:
    return f"/risk-hub/worlds/{quote(check_world_id(world_id), safe='')}/risk"

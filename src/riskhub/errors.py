"""The one exception tree of riskhub. The HTTP layer maps each class to a status in one place.

    RiskHubError
     +-- RequestRejected                  a client asked for something the hub refuses (4xx)
     |    +-- MalformedRequest            400  unparseable JSON, missing actor, path/header/body disagree
     |    +-- Unauthorized                401  no token or an unknown token
     |    +-- Forbidden                   403  read-only token on a write, actor not allowed
     |    |    +-- NetworkForbidden       403  the client's address is outside allowed_networks
     |    +-- SnapshotNotFound            404  no snapshot matches
     |    |    +-- SnapshotExpired        404  the newest snapshot has expired (names version and time)
     |    +-- VersionConflict             409  (world_id, version) exists with another hash
     |    +-- PayloadTooLarge             413  body over max_body_bytes
     |    +-- ContractError               422  any other contract rule (names the field)
     +-- Unavailable                      a backing service is down; retry later (503)
     |    +-- StoreUnavailable
     |    +-- BlobStoreUnavailable
     |    +-- CacheUnavailable            (never reaches a client: reads fall back to the store)
     |    +-- BrokerUnavailable           the ControlBus brokers (operator tools: doctor, topics)
     +-- BlobCorrupted                    a blob's bytes no longer match its content address (502)
     +-- BlobMissing                      a blob a stored snapshot refers to is gone (502)
     +-- BusError                         the ControlBus side (never reaches an HTTP client)
          +-- TopicRefused                the broker refused to create a topic (operator tools)
          +-- UndecodableEvent            a record is not a usable CloudEvent (dead-lettered)
          +-- NotSentYet                  a record held back from a send to keep per-key order
          +-- NotDelivered                the in-process bus's subscriber did not handle a record
          +-- NotHandled                  a record neither handled nor dead-lettered (not committed)

Drivers' own exceptions are translated to these at exactly one boundary per adapter: a
``translated`` block around its driver calls (as httpx's ``map_httpcore_exceptions``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class RiskHubError(Exception):
    """Base of every error riskhub raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        # `reason` labels the producer-violation metric; bounded set of short codes.
        self.reason = reason or self.code


class RequestRejected(RiskHubError):
    """The request is refused; resending it unchanged gives the same answer."""


class MalformedRequest(RequestRejected):
    code = "malformed_request"


class Unauthorized(RequestRejected):
    code = "unauthorized"


class Forbidden(RequestRejected):
    code = "forbidden"


class NetworkForbidden(Forbidden):
    code = "network_forbidden"


class SnapshotNotFound(RequestRejected):
    code = "not_found"


class SnapshotExpired(SnapshotNotFound):
    code = "snapshot_expired"


class VersionConflict(RequestRejected):
    code = "version_conflict"


class PayloadTooLarge(RequestRejected):
    code = "payload_too_large"


class ContractError(RequestRejected):
    code = "contract_violation"


class Unavailable(RiskHubError):
    """A backing service cannot be reached; nothing was half-written, retrying later is safe."""

    code = "unavailable"


class StoreUnavailable(Unavailable):
    code = "store_unavailable"


class BlobStoreUnavailable(Unavailable):
    code = "blob_store_unavailable"


class CacheUnavailable(Unavailable):
    code = "cache_unavailable"


class BrokerUnavailable(Unavailable):
    code = "broker_unavailable"


class BlobCorrupted(RiskHubError):
    code = "blob_corrupted"


class BlobMissing(RiskHubError):
    code = "blob_missing"


@contextmanager
def translated(
    driver_errors: tuple[type[BaseException], ...], unavailable: type[Unavailable], service: str
) -> Iterator[None]:
    """An adapter's one boundary: inside the block, its driver's errors become ``unavailable``,
    naming the service and the driver's error (the cause stays chained for the logs)."""
    try:
        yield
    except driver_errors as exc:
        raise unavailable(f"{service}: {type(exc).__name__}: {exc}") from exc


class BusError(RiskHubError):
    """Publishing or consuming a ControlBus record did not complete."""

    code = "bus_error"


class UndecodableEvent(BusError):
    """The record is not a usable CloudEvent; the message says why."""

    code = "undecodable_event"


class NotSentYet(BusError):
    """A record held back from this send (see ``Publisher.send_in_order``); send it again later."""

    code = "not_sent_yet"


class NotDelivered(BusError):
    """The in-process bus's subscriber did not handle the record; it stays unacknowledged."""

    code = "not_delivered"


class TopicRefused(BusError):
    """The broker refused to create a topic; the message names the topic and the broker's error."""

    code = "topic_refused"


class NotHandled(BusError):
    """The record could not be handled nor dead-lettered: do not commit its offset."""

    code = "not_handled"

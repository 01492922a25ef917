"""The one exception tree of riskhub. The HTTP layer maps each class to a status in one place.

    RiskHubError
     +-- RequestRejected                  a client asked for something the hub refuses (4xx)
     |    +-- MalformedRequest            400  unparseable JSON, missing actor, path/header/body disagree
     |    +-- Unauthorized                401  no token or an unknown token
     |    +-- Forbidden                   403  read-only token on a write, actor not allowed
     |    +-- SnapshotNotFound            404  no snapshot matches
     |    |    +-- SnapshotExpired        404  the newest snapshot has expired (names version and time)
     |    +-- VersionConflict             409  (world_id, version) exists with another hash
     |    +-- PayloadTooLarge             413  body over max_body_bytes
     |    +-- ContractError               422  any other contract rule (names the field)
     +-- Unavailable                      a backing service is down; retry later (503)
     |    +-- StoreUnavailable
     |    +-- BlobStoreUnavailable
     |    +-- CacheUnavailable            (never reaches a client: reads fall back to the store)
     +-- BlobCorrupted                    a blob's bytes no longer match its content address (502)
     +-- BlobMissing                      a blob a stored snapshot refers to is gone (502)

Drivers' own exceptions are translated to these at exactly one boundary: the adapter that uses them.
"""

from __future__ import annotations


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


class BlobCorrupted(RiskHubError):
    code = "blob_corrupted"


class BlobMissing(RiskHubError):
    code = "blob_missing"

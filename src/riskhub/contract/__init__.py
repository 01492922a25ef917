"""The snapshot contract shared by producers and the hub: validation, normalization, hash, dedupe key.

Pure: no I/O and no server imports, so a producer can validate and hash exactly as the hub does.
Every rejection names the field (``ContractError.field``) and says what was expected.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from riskhub.config import MAX_TEXT_CHARS
from riskhub.config import ContractRules as ContractRules
from riskhub.config import stage_allowlist as stage_allowlist
from riskhub.contract.canonical import NonFiniteNumber, canonical_json, loads_exact
from riskhub.contract.hashing import HASH_ALGORITHMS as HASH_ALGORITHMS
from riskhub.contract.hashing import HASH_PATTERN
from riskhub.contract.hashing import OFFLOADABLE_PARTS as OFFLOADABLE_PARTS
from riskhub.contract.hashing import SERVER_FIELDS as SERVER_FIELDS
from riskhub.contract.hashing import dedupe_key as dedupe_key
from riskhub.contract.hashing import digest as digest
from riskhub.contract.hashing import hashed_view as hashed_view
from riskhub.contract.hashing import risk_snapshot_dedupe_key as risk_snapshot_dedupe_key
from riskhub.contract.hashing import snapshot_hash as snapshot_hash
from riskhub.contract.hashing import verify_hash as verify_hash
from riskhub.contract.numbers import (
    check_covariance,
    check_stress,
    check_weights,
    describe,
    normalize_realized_returns,
)
from riskhub.contract.shape import MAX_DEPTH, check_shape
from riskhub.errors import ContractError, Forbidden, MalformedRequest

WORLD_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
_WORLD_ID = re.compile(WORLD_ID_PATTERN[1:-1])
# What no store can index: NUL (PostgreSQL text) and lone surrogates (not encodable as UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A validated, normalized snapshot and the digests of its canonical JSON."""

    world_id: str
    version: str
    as_of: datetime
    ttl_s: int
    actor: str
    stage: str | None
    hash: str  # as supplied by the producer, or computed sha256
    body: dict[str, Any]  # the normalized snapshot, without hash and server fields
    # algorithm -> "<algo>:<hex>" of the body: sha256 always, plus the supplied hash's algorithm
    digests: dict[str, str] = field(repr=False)
    canonical: bytes = field(repr=False)  # the body as canonical JSON (what the digests are of)

    @property
    def dedupe_key(self) -> str:
        """The consumer's idempotency key for this snapshot."""
        return dedupe_key(self.world_id, self.version, self.hash, self.actor, self.stage)


def parse_json(raw: bytes) -> Any:
    """Parse a body as ``json.loads`` would (big integers stay integers), else 400; also 400 for
    nesting deeper than 64 or a key twice in an object (``shape``). A NaN or Infinity literal
    anywhere is a 422 naming where it is: no peer could verify its hash."""
    try:
        doc = loads_exact(raw, finite=True)
    except NonFiniteNumber as exc:
        raise ContractError(str(exc), field=exc.path) from None
    except RecursionError:  # deeper than the parsers go: far deeper than allowed
        raise MalformedRequest(f"body: JSON nested deeper than {MAX_DEPTH} levels", field="body") from None
    except ValueError as exc:
        raise MalformedRequest(f"body: not valid JSON ({str(exc)[:200]})", field="body") from None
    check_shape(raw, doc)
    return doc


_PART_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "covariance": check_covariance,
    "realized_returns": normalize_realized_returns,
    "stress": check_stress,
}


def check_referenced_part(part: str, content: bytes, weights: Mapping[str, Any]) -> None:
    """What a producer's ``<part>_ref`` holds must be a valid ``<part>``, under the rules of an
    inline one: JSON, finite, and (covariance) on ids of ``weights``. Errors name the ref."""
    ref_field = f"{part}_ref"
    try:
        value = loads_exact(content, finite=True)
    except NonFiniteNumber as exc:
        raise ContractError(f"{ref_field}: the referenced {part}: {exc}", field=ref_field) from None
    except (ValueError, RecursionError):
        raise ContractError(f"{ref_field}: the referenced blob is not JSON", field=ref_field) from None
    try:
        _PART_CHECKS[part]({"weights": weights, part: value})
    except ContractError as exc:
        raise ContractError(f"{ref_field}: the referenced {exc}", field=ref_field) from None


def check_stored_text(value: str, field_name: str) -> str:
    """An id the stores index and key on (version, actor): any text but NUL and lone surrogates."""
    if _UNSTORABLE.search(value):
        raise ContractError(
            f"{field_name}: must not contain NUL characters or unpaired surrogates", field=field_name
        )
    return value


def is_world_id(value: str) -> bool:
    """Whether ``value`` is a valid world id (see ``check_world_id``)."""
    return _WORLD_ID.fullmatch(value) is not None


def check_world_id(world_id: str) -> str:
    """A world id is 1-128 chars of letters, digits and ``._:@-``, starting alphanumeric."""
    if not is_world_id(world_id):
        raise ContractError(
            "world_id: must be 1-128 characters of letters, digits and ._:@- starting with a letter or digit",
            field="world_id",
        )
    return world_id


def shown(value: object, limit: int = 80) -> str:
    """A value from a request as an error message quotes it: its repr, cut to ``limit``."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


def normalize_stage(stage: str | None) -> str | None:
    """A stage as the hub keeps it: lower case; absent or empty is None."""
    return stage.lower() if stage else None


def check_stage(stage: str | None, allowed: frozenset[str], field_name: str) -> str | None:
    """The normalized stage, or a 422 naming ``field_name`` when it is outside the allowlist."""
    stage = normalize_stage(stage)
    if stage is not None and stage not in allowed:
        raise ContractError(
            f"{field_name}: must be one of {sorted(allowed)}, got {stage!r}",
            field=field_name,
            reason="stage_not_allowed",
        )
    return stage


def normalize_snapshot(
    doc: Any,
    *,
    world_id: str,
    actor: str | None = None,
    stage: str | None = None,
    rules: ContractRules = ContractRules(),
    now: datetime | None = None,
) -> Snapshot:
    """Validate a parsed body against every contract rule and return the normalized snapshot.

    ``actor`` / ``stage`` are the ``X-Actor`` / ``X-Stage`` headers, if given; with ``now``, an
    ``as_of`` more than ``rules.max_clock_skew_s`` ahead of it is refused (a snapshot from the
    future would stay "latest" until an even later one came).
    """
    if not isinstance(doc, dict):
        raise ContractError("body: must be a JSON object", field="body")
    check_world_id(world_id)
    supplied_hash = doc.get("hash")
    body = {k: v for k, v in doc.items() if v is not None and k != "hash" and k not in SERVER_FIELDS}
    _check_body_world(body, world_id)
    as_of = _check_as_of(body)
    if now is not None and as_of > now + timedelta(seconds=rules.max_clock_skew_s):
        raise ContractError(
            f"as_of: {body['as_of'][:64]!r} is more than {rules.max_clock_skew_s} s in the future",
            field="as_of",
            reason="as_of_in_future",
        )
    version = _check_version(body)
    check_weights(body)
    ttl_s = _check_ttl(body, rules)
    check_covariance(body)
    normalize_realized_returns(body)
    check_stress(body)
    _check_constraints(body)
    _check_refs(body)
    snap_actor, snap_stage = _normalize_provenance(body, actor, stage, rules)
    canonical = canonical_json(body)
    # sha256 always (it identifies the content in the store); another algorithm only if supplied.
    algorithms = {"sha256", _hash_algorithm(supplied_hash) or "sha256"}
    digests = {algo: digest(canonical, algo) for algo in algorithms}
    return Snapshot(
        world_id=world_id,
        version=version,
        as_of=as_of,
        ttl_s=ttl_s,
        actor=snap_actor,
        stage=snap_stage,
        hash=_check_hash(supplied_hash, digests),
        body=body,
        digests=digests,
        canonical=canonical,
    )


def parse_timestamp(value: str, field_name: str) -> datetime:
    """ISO-8601 to an aware UTC datetime (``Z`` allowed; no offset means UTC)."""
    try:
        parsed = datetime.fromisoformat(value)
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: year 1 or 9999 shifted out of range
        raise ContractError(
            f"{field_name}: must be an ISO-8601 timestamp within years 1-9999 UTC, got {value!r}",
            field=field_name,
        ) from None


# --- the rules, one function each (those on numbers: contract_numbers.py) ---------------------


def _check_body_world(body: dict[str, Any], world_id: str) -> None:
    if "world_id" in body and body["world_id"] != world_id:
        raise MalformedRequest(
            f"world_id: body says {shown(body['world_id'])} but the path says {shown(world_id)}",
            field="world_id",
            reason="world_mismatch",
        )
    body["world_id"] = world_id


def _check_as_of(body: dict[str, Any]) -> datetime:
    value = body.get("as_of")
    if value is None:
        raise ContractError("as_of: required", field="as_of")
    if not isinstance(value, str):
        raise ContractError("as_of: must be an ISO-8601 string", field="as_of")
    return parse_timestamp(value, "as_of")


def _check_version(body: dict[str, Any]) -> str:
    value = body.get("version")
    if value is None:
        raise ContractError("version: required", field="version")
    if not isinstance(value, str) or not value:
        raise ContractError("version: must be a non-empty string", field="version")
    if len(value) > MAX_TEXT_CHARS:
        raise ContractError(f"version: must be at most {MAX_TEXT_CHARS} characters", field="version")
    return check_stored_text(value, "version")


def _check_ttl(body: dict[str, Any], rules: ContractRules) -> int:
    ttl = body.setdefault("ttl_sec", rules.default_ttl_s)
    if type(ttl) is not int:
        raise ContractError(f"ttl_sec: must be an integer, got {describe(ttl)}", field="ttl_sec")
    if not 0 < ttl <= rules.max_ttl_s:
        raise ContractError(f"ttl_sec: must be > 0 and <= {rules.max_ttl_s}, got {ttl}", field="ttl_sec")
    return ttl


def _check_constraints(body: dict[str, Any]) -> None:
    if "constraints" in body and not isinstance(body["constraints"], dict):
        raise ContractError("constraints: must be an object", field="constraints")


def _check_refs(body: dict[str, Any]) -> None:
    for part in OFFLOADABLE_PARTS:
        ref_field = f"{part}_ref"
        if ref_field not in body:
            continue
        ref = body[ref_field]
        if not isinstance(ref, str) or not ref.strip():
            raise ContractError(f"{ref_field}: must be a non-empty string", field=ref_field)
        if part in body:
            raise ContractError(f"{ref_field}: send either {part} or {ref_field}, not both", field=ref_field)


def _normalize_provenance(
    body: dict[str, Any], actor_header: str | None, stage_header: str | None, rules: ContractRules
) -> tuple[str, str | None]:
    provenance = body.get("provenance", {})
    if not isinstance(provenance, dict):
        raise ContractError("provenance: must be an object", field="provenance")
    provenance = dict(provenance)
    actor = _agree("actor", "X-Actor", actor_header or None, provenance.get("actor"))
    if actor is None:
        raise MalformedRequest(
            "provenance.actor: required (X-Actor header or provenance.actor)",
            field="provenance.actor",
            reason="missing_actor",
        )
    if rules.allowed_actors and actor not in rules.allowed_actors:
        raise Forbidden(
            f"provenance.actor: actor {actor!r} is not allowed",
            field="provenance.actor",
            reason="actor_not_allowed",
        )
    body_stage = provenance.get("stage")
    stage = _agree(
        "stage",
        "X-Stage",
        normalize_stage(stage_header),
        normalize_stage(body_stage) if isinstance(body_stage, str) and body_stage else body_stage,
    )
    if stage is None and rules.require_stage:
        raise MalformedRequest(
            "provenance.stage: required (X-Stage header or provenance.stage)",
            field="provenance.stage",
            reason="missing_stage",
        )
    check_stage(stage, rules.allowed_stages, "provenance.stage")
    provenance["actor"] = actor
    provenance.pop("stage", None)
    if stage is not None:
        provenance["stage"] = stage
    body["provenance"] = provenance
    return actor, stage


def _agree(name: str, header: str, from_header: str | None, from_body: Any) -> str | None:
    where = f"provenance.{name}"
    if from_body is not None and (not isinstance(from_body, str) or not from_body):
        raise ContractError(f"{where}: must be a non-empty string", field=where)
    for value in (from_header, from_body):
        if isinstance(value, str) and len(value) > MAX_TEXT_CHARS:
            raise ContractError(f"{where}: must be at most {MAX_TEXT_CHARS} characters", field=where)
    if from_body is not None:
        check_stored_text(from_body, where)
    if from_header is not None and from_body is not None and from_header != from_body:
        raise MalformedRequest(
            f"{where}: {header} header says {shown(from_header)} but the body says {shown(from_body)}",
            field=where,
            reason=f"{name}_mismatch",
        )
    return from_header if from_header is not None else from_body


def _hash_algorithm(supplied: Any) -> str | None:
    match = HASH_PATTERN.fullmatch(supplied) if isinstance(supplied, str) else None
    return match.group(1) if match else None


def _check_hash(supplied: Any, digests: dict[str, str]) -> str:
    if supplied is None:
        return digests["sha256"]
    match = HASH_PATTERN.fullmatch(supplied) if isinstance(supplied, str) else None
    if match is None:
        raise ContractError(
            'hash: must be "sha256:<64 hex>" or "blake3:<64 hex>"',
            field="hash",
            reason="hash_format",
        )
    expected = digests[match.group(1)]
    if supplied != expected:
        raise ContractError(
            f"hash: does not match the snapshot (expected {expected})",
            field="hash",
            reason="hash_mismatch",
        )
    return expected

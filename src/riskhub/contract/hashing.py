"""What a snapshot's ``hash`` certifies, how it is computed and verified, and its dedupe key (pure).

A reader verifies a stored, served or event snapshot by resolving hub-offloaded refs, dropping the
server fields, and digesting the canonical JSON with the algorithm the hash names.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any

import blake3

from riskhub.contract.canonical import canonical_json

HASH_ALGORITHMS = ("sha256", "blake3")
OFFLOADABLE_PARTS = ("covariance", "realized_returns", "stress")
# Set by the hub, never hashed, ignored when a producer sends them.
SERVER_FIELDS = frozenset(
    {"created_at", "expired", "retracted", "hub_offloaded", "event_version", "idempotency_key"}
)
HASH_PATTERN = re.compile("(" + "|".join(HASH_ALGORITHMS) + "):([0-9a-f]{64})")


def dedupe_key(world_id: str, version: str, hash_: str, actor: str, stage: str | None) -> str:
    """``world_id|version|hash|actor|stage`` (an absent stage is the empty string)."""
    return f"{world_id}|{version}|{hash_}|{actor}|{stage or ''}"


def risk_snapshot_dedupe_key(payload: Mapping[str, Any]) -> str:
    """The queue standards' consumer dedupe key of a snapshot payload (as stored, served or carried
    by an event): ``dedupe_key`` of its world_id, version, hash, provenance actor and stage."""
    provenance = payload.get("provenance")
    if not isinstance(provenance, Mapping):
        provenance = {}
    return dedupe_key(
        str(payload.get("world_id", "")),
        str(payload.get("version", "")),
        str(payload.get("hash", "")),
        str(provenance.get("actor", "")),
        provenance.get("stage"),
    )


def digest(canonical: bytes, algorithm: str) -> str:
    """``"<algo>:<hex>"`` of canonical bytes."""
    if algorithm == "sha256":
        return "sha256:" + hashlib.sha256(canonical).hexdigest()
    if algorithm == "blake3":
        return "blake3:" + blake3.blake3(canonical).hexdigest()
    raise ValueError(f"unknown hash algorithm {algorithm!r}")


def snapshot_hash(body: Mapping[str, Any], algorithm: str = "sha256") -> str:
    """Hash of a normalized snapshot body (what a producer sends as ``hash``)."""
    return digest(canonical_json(body), algorithm)


def hashed_view(stored: Mapping[str, Any], resolve: Callable[[str], Any]) -> dict[str, Any]:
    """What a stored, served or event snapshot's ``hash`` certifies: hub-offloaded refs resolved
    back under their part names (``resolve(ref)`` returns the part), server fields and hash
    removed. An ``expand=true`` answer holds a producer's ref and also the part it resolved to
    (a producer sends one or the other, never both): the ref is what was hashed, the copy goes."""
    view = {k: v for k, v in stored.items() if k not in SERVER_FIELDS and k != "hash"}
    for part in stored.get("hub_offloaded") or ():
        view[part] = resolve(view.pop(f"{part}_ref"))
    for part in OFFLOADABLE_PARTS:
        if part in view and f"{part}_ref" in view:
            del view[part]
    return view


def verify_hash(stored: Mapping[str, Any], resolve: Callable[[str], Any]) -> bool:
    """True when a stored or event snapshot matches its own ``hash``."""
    claimed = stored.get("hash")
    match = HASH_PATTERN.fullmatch(claimed) if isinstance(claimed, str) else None
    if match is None:
        return False
    return snapshot_hash(hashed_view(stored, resolve), match.group(1)) == claimed

"""Every contract violation of a snapshot at once, for the tools that list them (lint, publish).

``normalize_snapshot`` stops at the first broken rule: the hub answers with one field. Someone
fixing a file wants the whole list, so this runs the same rules, in the same order, each on its
own, and collects what each one raises. Rules on ids of ``weights`` (covariance, stress shocks)
run only when the weights are valid, and the hash is compared only when every other rule holds,
since it is a digest of the normalized snapshot; a hash that is not even ``algo:hex`` is reported
either way. No violation means ``normalize_snapshot`` succeeds; otherwise the first violation is
the error it raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riskhub.contract import (
    SERVER_FIELDS,
    ContractRules,
    _check_as_of,
    _check_body_world,
    _check_constraints,
    _check_hash,
    _check_refs,
    _check_ttl,
    _check_version,
    _hash_algorithm,
    _normalize_provenance,
    check_world_id,
    normalize_snapshot,
)
from riskhub.contract.numbers import check_covariance, check_stress, check_weights, normalize_realized_returns
from riskhub.errors import ContractError, RiskHubError

__all__ = ["contract_violations"]


def contract_violations(
    doc: Any,
    *,
    world_id: str,
    actor: str | None = None,
    stage: str | None = None,
    rules: ContractRules = ContractRules(),
) -> list[RiskHubError]:
    """The violations of every independent contract rule, in ``normalize_snapshot``'s order
    (empty: the snapshot is valid). ``actor`` / ``stage`` are the headers, if given."""
    if not isinstance(doc, dict):
        return [ContractError("body: must be a JSON object", field="body")]
    body = {k: v for k, v in doc.items() if v is not None and k != "hash" and k not in SERVER_FIELDS}
    found: list[RiskHubError] = []

    def holds(rule: Callable[[], object]) -> bool:
        try:
            rule()
        except RiskHubError as exc:
            found.append(exc)
            return False
        return True

    holds(lambda: check_world_id(world_id))
    holds(lambda: _check_body_world(body, world_id))
    holds(lambda: _check_as_of(body))
    holds(lambda: _check_version(body))
    weights_hold = holds(lambda: check_weights(body))
    holds(lambda: _check_ttl(body, rules))
    if weights_hold:
        holds(lambda: check_covariance(body))
    holds(lambda: normalize_realized_returns(body))
    if weights_hold:
        holds(lambda: check_stress(body))
    holds(lambda: _check_constraints(body))
    holds(lambda: _check_refs(body))
    holds(lambda: _normalize_provenance(body, actor, stage, rules))
    supplied_hash = doc.get("hash")
    if not found:  # the hash, and whatever a rule above would not see on its own
        holds(lambda: normalize_snapshot(doc, world_id=world_id, actor=actor, stage=stage, rules=rules))
    elif supplied_hash is not None and _hash_algorithm(supplied_hash) is None:
        holds(lambda: _check_hash(supplied_hash, {}))  # its format alone: no digest is needed
    return found

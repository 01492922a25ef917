"""``contract_violations``: every broken rule of a snapshot at once, agreeing with
``normalize_snapshot`` (valid exactly when it succeeds; first violation = its error)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from riskhub.contract import ContractRules, normalize_snapshot
from riskhub.contract.violations import contract_violations
from riskhub.errors import RiskHubError

from conftest import sample_snapshot

# One broken rule each: the change to the runbook sample and the field the violation names.
BROKEN: dict[str, tuple[dict[str, Any], str]] = {
    "world in the body": ({"world_id": "w2"}, "world_id"),
    "as_of": ({"as_of": "yesterday"}, "as_of"),
    "version": ({"version": ""}, "version"),
    "weights": ({"weights": {"strategy_a": 0.9, "strategy_b": 0.4}}, "weights"),
    "ttl": ({"ttl_sec": 0}, "ttl_sec"),
    "covariance": ({"covariance": {"strategy_a,strategy_x": 0.1}}, "covariance.strategy_a,strategy_x"),
    "returns": ({"realized_returns": {"strategy_a": []}}, "realized_returns.strategy_a"),
    "stress": ({"stress": {"crash": {"max_drawdown": "big"}}}, "stress.crash.max_drawdown"),
    "constraints": ({"constraints": [1]}, "constraints"),
    "ref": ({"covariance_ref": " "}, "covariance_ref"),
    "actor": ({"provenance": {"actor": 7, "stage": "paper"}}, "provenance.actor"),
    "hash format": ({"hash": "md5:abc"}, "hash"),
}
NEEDS_WEIGHTS = {"covariance", "stress"}  # checked against the ids of valid weights only


def violations(doc: Any, **headers: str) -> list[RiskHubError]:
    return contract_violations(doc, world_id="w1", rules=ContractRules(), **headers)


def first_error(doc: Any, **headers: str) -> RiskHubError | None:
    try:
        normalize_snapshot(doc, world_id="w1", rules=ContractRules(), **headers)
    except RiskHubError as exc:
        return exc
    return None


def same_error(a: RiskHubError, b: RiskHubError | None) -> bool:
    return b is not None and (type(a), a.field, a.message) == (type(b), b.field, b.message)


def test_a_valid_snapshot_has_none() -> None:
    assert violations(sample_snapshot()) == []
    assert violations(sample_snapshot(), actor="gateway", stage="PAPER") == []


def test_every_independent_rule_is_reported_in_the_contracts_order() -> None:
    doc = sample_snapshot()
    for name, (change, _) in BROKEN.items():
        if name not in NEEDS_WEIGHTS | {"weights"}:
            doc.update(change)
    found = violations(doc)
    expected = [field for name, (_, field) in BROKEN.items() if name not in NEEDS_WEIGHTS | {"weights"}]
    assert [v.field for v in found] == expected
    assert same_error(found[0], first_error(doc))


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(BROKEN, 2)), ids="+".join)
def test_two_broken_rules_are_both_reported_and_the_first_is_what_normalize_raises(a: str, b: str) -> None:
    (change_a, field_a), (change_b, field_b) = BROKEN[a], BROKEN[b]
    doc = sample_snapshot(**change_a, **change_b)
    found = violations(doc)
    expected = {field_a, field_b}
    if "weights" in (a, b) and {a, b} & NEEDS_WEIGHTS:  # their ids cannot be checked yet
        expected = {"weights"}
    assert {v.field for v in found} == expected
    assert same_error(found[0], first_error(doc))


@pytest.mark.parametrize("name", BROKEN)
def test_one_broken_rule_is_exactly_what_normalize_raises(name: str) -> None:
    doc = sample_snapshot(**BROKEN[name][0])
    [found] = violations(doc)
    assert same_error(found, first_error(doc))


def test_a_wrong_hash_is_reported_when_everything_else_holds() -> None:
    [found] = violations(sample_snapshot(hash="sha256:" + "0" * 64))
    assert found.field == "hash" and found.message.startswith("hash: does not match the snapshot")


def test_headers_that_disagree_with_the_body_and_an_invalid_world_in_the_path() -> None:
    found = contract_violations(
        sample_snapshot(world_id="w9", ttl_sec=-1), world_id="no spaces", actor="other", rules=ContractRules()
    )
    assert [v.field for v in found] == ["world_id", "world_id", "ttl_sec", "provenance.actor"]


def test_a_body_that_is_not_an_object_is_one_violation() -> None:
    [found] = violations([1, 2])
    assert (found.field, found.message) == ("body", "body: must be a JSON object")

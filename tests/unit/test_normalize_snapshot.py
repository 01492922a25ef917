"""``normalize_snapshot`` against every rule of DESIGN.md's "The contract" (pure, no I/O).

Each rule is checked on both sides: what it accepts, and what it rejects with which exception
(the class the HTTP layer maps to 422 / 400 / 403) and which ``field``. Expected values come from
DESIGN.md's text (the interoperability vector is copied from there verbatim), never from what the
code returns.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import blake3
import pytest

from riskhub.contract import ContractRules, normalize_snapshot, parse_json
from riskhub.errors import ContractError, Forbidden, MalformedRequest, RiskHubError
from vectors import VECTOR_BLAKE3, VECTOR_SHA256, VECTOR_TEXT

# The exception class behind each HTTP status of the contract (DESIGN.md, "HTTP API").
CLASS_BY_STATUS: dict[int, type[RiskHubError]] = {400: MalformedRequest, 403: Forbidden, 422: ContractError}

RUNBOOK_SAMPLE = (
    Path(__file__).resolve().parents[2]
    / "operations/risk_hub/samples/risk_snapshot_with_realized_and_stress.json"
)

WORLD = "w1"
TWO_IDS = {"strategy_a": 0.6, "strategy_b": 0.4}


def sample(**changes: Any) -> dict[str, Any]:
    """The runbook sample as DESIGN.md describes it, with ``changes`` applied (a value of
    ``...`` removes the key)."""
    doc: dict[str, Any] = {
        "as_of": "2025-01-01T00:00:00Z",
        "version": "v1",
        "weights": {"strategy_a": 0.6, "strategy_b": 0.4},
        "realized_returns": {"strategy_a": [0.01, -0.005, 0.002], "strategy_b": [0.008, -0.004, 0.001]},
        "stress": {"crash": {"max_drawdown": 0.25}, "slowdown": {"max_drawdown": 0.12}},
        "ttl_sec": 10,
        "provenance": {"actor": "gateway", "stage": "paper"},
    }
    for key, value in changes.items():
        if value is ...:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def normalize(
    doc: Any,
    *,
    world: str = WORLD,
    actor: str | None = "gateway",
    stage: str | None = "paper",
    rules: ContractRules = ContractRules(),
) -> Any:
    """``normalize_snapshot`` with the headers of a typical POST (X-Actor gateway, X-Stage paper)."""
    return normalize_snapshot(doc, world_id=world, actor=actor, stage=stage, rules=rules)


def reject(doc: Any, status: int, field: str, **kwargs: Any) -> RiskHubError:
    """Normalizing ``doc`` fails with the class of ``status`` naming ``field`` (in ``field`` and in
    the message, as DESIGN.md asks: "reject with a message that names the field")."""
    expected = CLASS_BY_STATUS[status]
    with pytest.raises(RiskHubError) as info:
        normalize(doc, **kwargs)
    error = info.value
    assert isinstance(error, expected), f"{type(error).__name__} ({error}), expected {expected.__name__}"
    for other_status, other in CLASS_BY_STATUS.items():
        if other_status != status:
            assert not isinstance(error, other), f"{type(error).__name__} is also a {other.__name__}"
    assert error.field == field, f"field {error.field!r} ({error})"
    assert field in str(error), f"the message does not name {field!r}: {error}"
    return error


def canonical(value: Any) -> str:
    """DESIGN.md's canonical JSON, computed here with the stdlib, as a peer would."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def sha256_of(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def blake3_of(text: str) -> str:
    return "blake3:" + blake3.blake3(text.encode()).hexdigest()


# --- the interoperability vector --------------------------------------------------------------


def test_the_design_vector_text_hashes_to_the_design_digests() -> None:
    """DESIGN.md's vector is self-consistent (checked with hashlib and blake3, not the hub's code)."""
    assert sha256_of(VECTOR_TEXT) == VECTOR_SHA256
    assert blake3_of(VECTOR_TEXT) == VECTOR_BLAKE3


def test_the_runbook_sample_file_is_the_snapshot_design_describes() -> None:
    assert json.loads(RUNBOOK_SAMPLE.read_bytes()) == sample()


def test_the_runbook_sample_posted_to_w1_normalizes_to_the_design_vector_text() -> None:
    snap = normalize(parse_json(RUNBOOK_SAMPLE.read_bytes()))
    assert snap.canonical == VECTOR_TEXT.encode()
    assert canonical(snap.body) == VECTOR_TEXT


def test_the_runbook_sample_without_a_hash_gets_the_design_sha256() -> None:
    snap = normalize(sample())
    assert snap.hash == VECTOR_SHA256
    assert snap.digests["sha256"] == VECTOR_SHA256


@pytest.mark.parametrize("claimed", [VECTOR_BLAKE3, VECTOR_SHA256], ids=["blake3", "sha256"])
def test_the_design_vector_hash_is_accepted_unchanged(claimed: str) -> None:
    snap = normalize(sample(hash=claimed))
    assert snap.hash == claimed
    assert snap.digests[claimed.split(":")[0]] == claimed
    assert snap.digests["sha256"] == VECTOR_SHA256
    assert snap.canonical == VECTOR_TEXT.encode()


def test_the_design_vector_dedupe_key_joins_world_version_hash_actor_and_stage() -> None:
    snap = normalize(sample(hash=VECTOR_BLAKE3))
    assert snap.dedupe_key == f"w1|v1|{VECTOR_BLAKE3}|gateway|paper"


@pytest.mark.parametrize(
    ("doc", "actor", "stage"),
    [
        (sample(provenance=...), "gateway", "paper"),
        (sample(), None, None),
        (sample(provenance={"actor": "gateway"}), None, "PAPER"),
        (sample(provenance={"stage": "Paper"}), "gateway", None),
        (sample(world_id="w1"), "gateway", "paper"),
        (
            sample(hash=None, created_at=None, covariance=None, covariance_ref=None, note=None),
            "gateway",
            "paper",
        ),
        (
            sample(
                created_at="2000-01-01T00:00:00Z",
                expired=True,
                hub_offloaded=["stress"],
                event_version=3,
                idempotency_key="w1|v1|x|gateway|paper",
            ),
            "gateway",
            "paper",
        ),
    ],
    ids=[
        "headers-only",
        "body-only",
        "actor-in-body-stage-header-upper",
        "stage-in-body-mixed-case",
        "world-id-in-body",
        "top-level-nulls",
        "server-fields",
    ],
)
def test_equivalent_posts_of_the_sample_all_normalize_to_the_vector(
    doc: dict[str, Any], actor: str | None, stage: str | None
) -> None:
    snap = normalize(doc, actor=actor, stage=stage)
    assert snap.canonical == VECTOR_TEXT.encode()
    assert snap.hash == VECTOR_SHA256


# --- the body as a whole and world_id ---------------------------------------------------------


@pytest.mark.parametrize(
    "doc", [[], "snapshot", 1, None, True], ids=["array", "string", "number", "null", "bool"]
)
def test_a_body_that_is_not_an_object_is_422_naming_the_body(doc: Any) -> None:
    reject(doc, 422, "body")


@pytest.mark.parametrize(
    "raw",
    [b'{"as_of": ', b"", b"not json", b'{"a": 1}{', b"{'a': 1}", b"\xff\xfe"],
    ids=["truncated", "empty", "text", "trailing-garbage", "single-quotes", "not-utf8"],
)
def test_unparseable_json_is_400_naming_the_body(raw: bytes) -> None:
    with pytest.raises(MalformedRequest) as info:
        parse_json(raw)
    assert info.value.field == "body"


def test_parse_json_reads_the_body_as_json_loads_does() -> None:
    raw = b'{"as_of":"2025-01-01T09:00:00+09:00","w":0.60,"i":7,"big":18446744073709551616,"e":1E2}'
    doc = parse_json(raw)
    assert doc == json.loads(raw)
    assert doc["as_of"] == "2025-01-01T09:00:00+09:00"
    assert doc["w"] == 0.6 and type(doc["w"]) is float
    assert doc["i"] == 7 and type(doc["i"]) is int
    assert doc["big"] == 2**64 and type(doc["big"]) is int
    assert doc["e"] == 100.0 and type(doc["e"]) is float


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"weights": {"a": NaN}}', "weights.a"),
        (b'{"realized_returns": {"a": [0.1, Infinity]}}', "realized_returns.a[1]"),
        (b'{"constraints": {"x": -Infinity}}', "constraints.x"),
    ],
    ids=["weight", "return", "constraint"],
)
def test_a_nan_or_infinity_literal_anywhere_is_422_naming_where_it_is(raw: bytes, field: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_json(raw)
    assert info.value.field == field
    assert field in str(info.value)


def test_world_id_comes_from_the_path_when_the_body_has_none() -> None:
    snap = normalize(sample(), world="desk-7")
    assert snap.world_id == "desk-7"
    assert snap.body["world_id"] == "desk-7"


def test_world_id_in_the_body_equal_to_the_path_is_accepted() -> None:
    assert normalize(sample(world_id=WORLD)).body["world_id"] == WORLD


@pytest.mark.parametrize("body_world", ["w2", "W1", 1], ids=["other", "case", "integer"])
def test_world_id_in_the_body_that_differs_from_the_path_is_400_naming_world_id(body_world: Any) -> None:
    reject(sample(world_id=body_world), 400, "world_id")


@pytest.mark.parametrize(
    "world",
    ["", "-dash", "_x", "bad!id", "a" * 129, "wörld"],
    ids=["empty", "dash", "underscore", "bang", "129", "non-ascii"],
)
def test_an_invalid_world_id_in_the_path_is_422_naming_world_id(world: str) -> None:
    reject(sample(), 422, "world_id", world=world)


# --- required fields: as_of and version ---------------------------------------------------------


@pytest.mark.parametrize("field", ["as_of", "version", "weights"])
@pytest.mark.parametrize("how", ["absent", "null"])
def test_a_missing_required_field_is_422_naming_it(field: str, how: str) -> None:
    doc = sample(**{field: ... if how == "absent" else None})
    error = reject(doc, 422, field)
    assert "required" in str(error)


@pytest.mark.parametrize(
    "as_of",
    ["2025-01-01T00:00:00Z", "2025-01-01T09:30:00+09:00", "2025-01-01T00:30:00.123456-05:00"],
    ids=["z", "plus-09", "micro-minus-05"],
)
def test_as_of_in_iso_8601_with_z_or_an_offset_is_kept_exactly_as_sent(as_of: str) -> None:
    snap = normalize(sample(as_of=as_of))
    assert snap.body["as_of"] == as_of
    assert snap.as_of == datetime.fromisoformat(as_of.replace("Z", "+00:00")).astimezone(UTC)
    assert snap.as_of.utcoffset() is not None and snap.as_of.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    "as_of",
    [20250101, "yesterday", "", "2025-13-01T00:00:00Z", "2025-01-01T00:00:00+25:00", ["2025-01-01"]],
    ids=["integer", "words", "empty", "month-13", "offset-25h", "array"],
)
def test_as_of_that_is_not_an_iso_8601_string_is_422_naming_as_of(as_of: Any) -> None:
    reject(sample(as_of=as_of), 422, "as_of")


@pytest.mark.parametrize(
    "version", ["v1", "2025-01-01#3", "Ā-版本", "v" * 256], ids=["plain", "punct", "unicode", "256"]
)
def test_any_non_empty_version_string_is_accepted_as_sent(version: str) -> None:
    snap = normalize(sample(version=version))
    assert snap.version == version and snap.body["version"] == version


@pytest.mark.parametrize(
    "version", [1, 1.5, "", ["v1"], {"v": 1}, True], ids=["int", "float", "empty", "array", "object", "bool"]
)
def test_a_version_that_is_not_a_non_empty_string_is_422_naming_version(version: Any) -> None:
    reject(sample(version=version), 422, "version")


# --- weights -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weights",
    [
        {"strategy_a": 0.6, "strategy_b": 0.4},
        {"strategy_a": 0.6, "strategy_b": 0.4009},
        {"strategy_a": 0.6, "strategy_b": 0.3991},
        {"strategy_a": 1.5, "strategy_b": -0.5},
        {"strategy_a": 1},
        {"a": 0.25, "b": 0.25, "c": 0.25, "d": 0.25},
    ],
    ids=["sum-1", "sum-1.0009", "sum-0.9991", "short-position", "one-integer", "four-ids"],
)
def test_finite_weights_summing_to_one_within_1e3_are_accepted_as_sent(weights: dict[str, Any]) -> None:
    snap = normalize(sample(weights=weights))
    assert snap.body["weights"] == weights
    assert f'"weights":{canonical(weights)}' in snap.canonical.decode()  # 1 stays the integer 1


@pytest.mark.parametrize(
    "weights",
    [
        {"strategy_a": 0.6, "strategy_b": 0.4011},
        {"strategy_a": 0.6, "strategy_b": 0.3989},
        {"a": 0.59, "b": 0.4},
    ],
    ids=["sum-1.0011", "sum-0.9989", "sum-0.99"],
)
def test_weights_sum_off_by_more_than_1e3_is_422_naming_weights(weights: dict[str, Any]) -> None:
    reject(sample(weights=weights), 422, "weights")


@pytest.mark.parametrize(
    "weights",
    [{"strategy_a": 0.0}, {"strategy_a": 0.5, "strategy_b": -0.5}, {"strategy_a": -0.4, "strategy_b": -0.6}],
    ids=["zero", "sum-zero", "sum-negative"],
)
def test_weights_whose_sum_is_not_positive_are_422_naming_weights(weights: dict[str, Any]) -> None:
    reject(sample(weights=weights), 422, "weights")


@pytest.mark.parametrize(
    "weights",
    [{}, [0.6, 0.4], "strategy_a", 1.0, {"": 1.0}],
    ids=["empty", "array", "string", "number", "empty-id"],
)
def test_weights_that_are_not_a_non_empty_mapping_of_ids_are_422_naming_weights(weights: Any) -> None:
    reject(sample(weights=weights), 422, "weights")


@pytest.mark.parametrize(
    "bad",
    ["0.4", True, None, [0.4], {"w": 0.4}, math.nan, math.inf, -math.inf, 10**400],
    ids=["string", "boolean", "null", "array", "object", "nan", "inf", "minus-inf", "int-beyond-float"],
)
def test_a_weight_that_is_not_a_finite_number_is_422_naming_that_weight(bad: Any) -> None:
    reject(sample(weights={"strategy_a": 0.6, "strategy_b": bad}), 422, "weights.strategy_b")


# --- ttl_sec --------------------------------------------------------------------------------------


def test_a_missing_ttl_sec_gets_the_default_900() -> None:
    snap = normalize(sample(ttl_sec=...))
    assert snap.ttl_s == 900
    assert snap.body["ttl_sec"] == 900
    assert '"ttl_sec":900' in snap.canonical.decode()


def test_a_null_ttl_sec_gets_the_default_too() -> None:
    assert normalize(sample(ttl_sec=None)).body["ttl_sec"] == 900


def test_the_default_ttl_is_configurable() -> None:
    assert normalize(sample(ttl_sec=...), rules=ContractRules(default_ttl_s=60)).body["ttl_sec"] == 60


@pytest.mark.parametrize("ttl", [1, 10, 86_400])
def test_an_integer_ttl_between_1_and_86400_is_kept(ttl: int) -> None:
    snap = normalize(sample(ttl_sec=ttl))
    assert snap.ttl_s == ttl and snap.body["ttl_sec"] == ttl


@pytest.mark.parametrize(
    "ttl",
    [0, -1, 86_401, 10.5, 10.0, "10", True, [10]],
    ids=["0", "negative", "86401", "10.5", "10.0", "string", "bool", "array"],
)
def test_a_ttl_that_is_not_an_integer_in_1_to_86400_is_422_naming_ttl_sec(ttl: Any) -> None:
    reject(sample(ttl_sec=ttl), 422, "ttl_sec")


def test_the_ttl_maximum_is_configurable() -> None:
    rules = ContractRules(max_ttl_s=60)
    assert normalize(sample(ttl_sec=60), rules=rules).ttl_s == 60
    error = reject(sample(ttl_sec=61), 422, "ttl_sec", rules=rules)
    assert "60" in str(error)


# --- realized returns -----------------------------------------------------------------------------


def test_realized_returns_as_a_mapping_keep_their_values_as_floats() -> None:
    returns = {"strategy_a": [0.01, -0.005, 0.002], "strategy_b": [0.008, -0.004, 0.001]}
    assert normalize(sample(realized_returns=returns)).body["realized_returns"] == returns


def test_integer_returns_become_floats_keeping_the_mapping_shape() -> None:
    snap = normalize(sample(realized_returns={"strategy_a": [1, 0, -2], "strategy_b": [0.5, 3]}))
    returns = snap.body["realized_returns"]
    assert returns == {"strategy_a": [1.0, 0.0, -2.0], "strategy_b": [0.5, 3.0]}
    assert all(type(x) is float for series in returns.values() for x in series)
    assert (
        '"realized_returns":{"strategy_a":[1.0,0.0,-2.0],"strategy_b":[0.5,3.0]}' in snap.canonical.decode()
    )


def test_a_single_series_stays_a_single_series_of_floats() -> None:
    snap = normalize(sample(realized_returns=[0.01, 2, -3]))
    assert snap.body["realized_returns"] == [0.01, 2.0, -3.0]
    assert [type(x) for x in snap.body["realized_returns"]] == [float, float, float]
    assert '"realized_returns":[0.01,2.0,-3.0]' in snap.canonical.decode()


def test_the_hash_covers_the_returns_as_floats() -> None:
    snap = normalize(sample(realized_returns={"strategy_a": [1, 2]}))
    expected = json.loads(VECTOR_TEXT)
    expected["realized_returns"] = {"strategy_a": [1.0, 2.0]}
    assert snap.hash == sha256_of(canonical(expected))


@pytest.mark.parametrize(
    ("returns", "field"),
    [
        ({"strategy_a": [0.01, True]}, "realized_returns.strategy_a[1]"),
        ({"strategy_a": [0.01, "0.02"]}, "realized_returns.strategy_a[1]"),
        ({"strategy_a": [0.01, None]}, "realized_returns.strategy_a[1]"),
        ({"strategy_a": [[0.01]]}, "realized_returns.strategy_a[0]"),
        ({"strategy_a": [0.01, math.nan]}, "realized_returns.strategy_a[1]"),
        ({"strategy_a": [math.inf]}, "realized_returns.strategy_a[0]"),
        ({"strategy_a": [-math.inf]}, "realized_returns.strategy_a[0]"),
        ({"strategy_a": [10**400]}, "realized_returns.strategy_a[0]"),
        ([0.01, False], "realized_returns[1]"),
        ([math.nan], "realized_returns[0]"),
    ],
    ids=[
        "boolean",
        "string",
        "null",
        "nested",
        "nan",
        "inf",
        "minus-inf",
        "int-beyond-float",
        "single-series-boolean",
        "single-series-nan",
    ],
)
def test_a_return_that_is_not_a_finite_number_is_422_naming_its_position(returns: Any, field: str) -> None:
    reject(sample(realized_returns=returns), 422, field)


# id -> (realized_returns, the field the 422 names)
NOT_A_SERIES: dict[str, tuple[Any, str]] = {
    "empty-series": ({"strategy_a": []}, "realized_returns.strategy_a"),
    "number-not-series": ({"strategy_a": 0.01}, "realized_returns.strategy_a"),
    "object-not-series": ({"strategy_a": {"0": 0.01}}, "realized_returns.strategy_a"),
    "empty-mapping": ({}, "realized_returns"),
    "empty-single": ([], "realized_returns"),
    "string": ("0.01", "realized_returns"),
    "number": (0.01, "realized_returns"),
}


@pytest.mark.parametrize(("returns", "field"), list(NOT_A_SERIES.values()), ids=list(NOT_A_SERIES))
def test_an_empty_or_non_series_realized_returns_is_422_naming_it(returns: Any, field: str) -> None:
    reject(sample(realized_returns=returns), 422, field)


def test_a_series_of_exactly_200000_points_is_accepted() -> None:
    snap = normalize(sample(realized_returns={"strategy_a": [0.001] * 200_000}))
    assert len(snap.body["realized_returns"]["strategy_a"]) == 200_000


@pytest.mark.parametrize("point", [0.001, 1], ids=["floats", "integers"])
def test_a_series_over_200000_points_is_422_naming_the_series(point: float) -> None:
    error = reject(
        sample(realized_returns={"strategy_a": [point] * 200_001}), 422, "realized_returns.strategy_a"
    )
    assert "200000" in str(error)


def test_a_single_series_over_200000_points_is_422() -> None:
    reject(sample(realized_returns=[0.001] * 200_001), 422, "realized_returns")


def test_exactly_1000000_points_in_total_are_accepted() -> None:
    returns = {f"s{i}": [0.001] * 200_000 for i in range(5)}
    snap = normalize(sample(realized_returns=returns))
    assert sum(map(len, snap.body["realized_returns"].values())) == 1_000_000


@pytest.mark.parametrize("point", [0.001, 1], ids=["floats", "integers"])
def test_more_than_1000000_points_in_total_is_422_naming_realized_returns(point: float) -> None:
    returns: dict[str, list[float]] = {f"s{i}": [point] * 200_000 for i in range(5)}
    returns["extra"] = [point]
    error = reject(sample(realized_returns=returns), 422, "realized_returns")
    assert "1000000" in str(error)


# --- covariance ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "covariance",
    [
        {"strategy_a,strategy_a": 0.04, "strategy_a,strategy_b": 0.01, "strategy_b,strategy_a": 0.01},
        {"strategy_a,strategy_b": 1},
        {"ids": ["strategy_b", "strategy_a"], "matrix": [[0.09, 0.01], [0.01, 0.04]]},
        {"ids": ["strategy_a"], "matrix": [[1]]},
    ],
    ids=["keyed", "keyed-integer", "dense", "dense-integer"],
)
def test_a_finite_covariance_on_weight_ids_is_accepted_as_sent(covariance: dict[str, Any]) -> None:
    snap = normalize(sample(covariance=covariance))
    assert snap.body["covariance"] == covariance
    assert f'"covariance":{canonical(covariance)}' in snap.canonical.decode()  # integers stay integers


# id -> (weights, covariance, the field the 422 names)
KEYED_COVARIANCE_REJECTS: dict[str, tuple[dict[str, float], Any, str]] = {
    "nan": (TWO_IDS, {"strategy_a,strategy_b": math.nan}, "covariance.strategy_a,strategy_b"),
    "inf": (TWO_IDS, {"strategy_a,strategy_b": math.inf}, "covariance.strategy_a,strategy_b"),
    "int-beyond-float": (TWO_IDS, {"strategy_a,strategy_b": 10**400}, "covariance.strategy_a,strategy_b"),
    "unknown-id": (TWO_IDS, {"strategy_a,zzz": 0.1}, "covariance.strategy_a,zzz"),
    "one-id": (TWO_IDS, {"strategy_a": 0.1}, "covariance.strategy_a"),
    "separator-in-id": ({"a,b": 0.5, "c": 0.5}, {"a,b,c": 0.1}, "covariance.a,b,c"),
    "string": (TWO_IDS, {"strategy_a,strategy_b": "0.1"}, "covariance.strategy_a,strategy_b"),
    "boolean": (TWO_IDS, {"strategy_a,strategy_b": True}, "covariance.strategy_a,strategy_b"),
    "asymmetric-pair": (
        TWO_IDS,
        {"strategy_b,strategy_a": 0.2, "strategy_a,strategy_b": 0.1},
        "covariance.strategy_a,strategy_b",
    ),
    "array": (TWO_IDS, [[0.04, 0.01], [0.01, 0.09]], "covariance"),
    "string-covariance": (TWO_IDS, "strategy_a,strategy_b=0.1", "covariance"),
}


@pytest.mark.parametrize(
    ("weights", "covariance", "field"),
    list(KEYED_COVARIANCE_REJECTS.values()),
    ids=list(KEYED_COVARIANCE_REJECTS),
)
def test_a_keyed_covariance_off_the_rules_is_422_naming_the_entry(
    weights: dict[str, Any], covariance: Any, field: str
) -> None:
    reject(sample(weights=weights, covariance=covariance), 422, field)


@pytest.mark.parametrize(
    ("covariance", "field"),
    [
        pytest.param(
            {"ids": ["strategy_a", "zzz"], "matrix": [[0.04, 0.01], [0.01, 0.09]]},
            "covariance.ids",
            id="unknown-id",
        ),
        pytest.param(
            {"ids": ["strategy_a", "strategy_a"], "matrix": [[1, 1], [1, 1]]},
            "covariance.ids",
            id="duplicate-id",
        ),
        pytest.param({"ids": [], "matrix": []}, "covariance.ids", id="no-ids"),
        pytest.param(
            {"ids": ["strategy_a", "strategy_b"], "matrix": [[0.04, 0.01], [0.01]]},
            "covariance.matrix",
            id="short-row",
        ),
        pytest.param(
            {"ids": ["strategy_a", "strategy_b"], "matrix": [[0.04, 0.01]]},
            "covariance.matrix",
            id="missing-row",
        ),
        pytest.param(
            {"ids": ["strategy_a", "strategy_b"], "matrix": [[0.04, 0.01], [0.02, 0.09]]},
            "covariance.matrix[1][0]",
            id="asymmetric",
        ),
        pytest.param({"ids": ["strategy_a"], "matrix": [["x"]]}, "covariance.matrix[0][0]", id="string"),
        pytest.param({"ids": ["strategy_a"], "matrix": [[math.nan]]}, "covariance.matrix[0][0]", id="nan"),
        pytest.param({"ids": ["strategy_a"], "matrix": [[1]], "extra": 1}, "covariance", id="extra-key"),
    ],
)
def test_a_dense_covariance_off_the_rules_is_422_naming_the_entry(covariance: Any, field: str) -> None:
    reject(sample(covariance=covariance), 422, field)


# --- stress ----------------------------------------------------------------------------------------


def test_stress_metrics_are_kept_as_sent_integers_included() -> None:
    stress = {"crash": {"max_drawdown": 0.25, "loss": 1}, "rally": {"return": -0.1}}
    snap = normalize(sample(stress=stress))
    assert snap.body["stress"] == stress
    assert f'"stress":{canonical(stress)}' in snap.canonical.decode()


@pytest.mark.parametrize(
    ("stress", "field"),
    [
        ([{"max_drawdown": 0.25}], "stress"),
        ("crash", "stress"),
        ({"crash": 0.25}, "stress.crash"),
        ({"crash": [0.25]}, "stress.crash"),
        ({"crash": {"max_drawdown": "0.25"}}, "stress.crash.max_drawdown"),
        ({"crash": {"max_drawdown": False}}, "stress.crash.max_drawdown"),
        ({"crash": {"max_drawdown": None}}, "stress.crash.max_drawdown"),
        ({"crash": {"max_drawdown": math.nan}}, "stress.crash.max_drawdown"),
        ({"crash": {"max_drawdown": -math.inf}}, "stress.crash.max_drawdown"),
    ],
    ids=[
        "array",
        "string",
        "number-scenario",
        "array-scenario",
        "string",
        "boolean",
        "null",
        "nan",
        "minus-inf",
    ],
)
def test_stress_that_is_not_scenarios_of_finite_metrics_is_422_naming_the_metric(
    stress: Any, field: str
) -> None:
    reject(sample(stress=stress), 422, field)


def test_a_stress_scenario_may_hold_shocks_per_weight_id() -> None:
    """DESIGN.md: "a scenario may also hold `shocks`, a mapping id -> finite number"."""
    stress = {
        "crash": {"max_drawdown": 0.25, "shocks": {"strategy_a": -0.2, "strategy_b": -0.1}},
        "rates": {"shocks": {"strategy_a": 0.01}},
    }
    snap = normalize(sample(stress=stress))
    assert snap.body["stress"] == stress


@pytest.mark.parametrize(
    "shocks",
    [{"zzz": -0.2}, {"strategy_a": "-0.2"}, {"strategy_a": math.nan}, {"strategy_a": True}, [-0.2], -0.2],
    ids=["unknown-id", "string", "nan", "boolean", "array", "number"],
)
def test_shocks_off_the_rules_are_422_naming_the_shocks(shocks: Any) -> None:
    """Every shock id must be in ``weights`` and every shock a finite number."""
    with pytest.raises(ContractError) as info:
        normalize(sample(stress={"crash": {"shocks": shocks}}))
    assert info.value.field is not None and info.value.field.startswith("stress.crash.shocks")
    assert info.value.field in str(info.value)


# --- refs and constraints ------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["covariance", "realized_returns", "stress"])
def test_a_ref_given_instead_of_its_part_is_kept_as_sent(part: str) -> None:
    ref = "s3://riskhub/blobs/" + "0" * 64 + ".json"
    snap = normalize(sample(**{part: ..., f"{part}_ref": ref}))
    assert snap.body[f"{part}_ref"] == ref
    assert part not in snap.body


@pytest.mark.parametrize("part", ["covariance", "realized_returns", "stress"])
@pytest.mark.parametrize(
    "ref", ["", "   ", 5, ["x"], {"ref": "x"}, True], ids=["empty", "blank", "int", "array", "object", "bool"]
)
def test_a_ref_that_is_not_a_non_empty_string_is_422_naming_it(part: str, ref: Any) -> None:
    reject(sample(**{part: ..., f"{part}_ref": ref}), 422, f"{part}_ref")


def test_a_part_and_its_ref_together_are_422_naming_the_ref() -> None:
    doc = sample(covariance={"strategy_a,strategy_a": 0.04}, covariance_ref="s3://b/p/" + "0" * 64 + ".json")
    reject(doc, 422, "covariance_ref")


def test_constraints_are_kept_as_sent() -> None:
    constraints = {"max_weight": 0.5, "max_names": 20, "limits": [1, 2.5, None, "x"], "big": 2**70}
    snap = normalize(sample(constraints=constraints))
    assert snap.body["constraints"] == constraints
    assert f'"constraints":{canonical(constraints)}' in snap.canonical.decode()


@pytest.mark.parametrize(
    "constraints", [[], "max_weight=0.5", 0.5, True], ids=["array", "string", "number", "bool"]
)
def test_constraints_that_are_not_an_object_are_422(constraints: Any) -> None:
    reject(sample(constraints=constraints), 422, "constraints")


# --- provenance: actor --------------------------------------------------------------------------


def test_the_actor_comes_from_the_x_actor_header() -> None:
    snap = normalize(sample(provenance={"stage": "paper"}), actor="risk-engine")
    assert snap.actor == "risk-engine"
    assert snap.body["provenance"]["actor"] == "risk-engine"


def test_the_actor_may_come_from_the_body_alone() -> None:
    snap = normalize(sample(provenance={"actor": "risk-engine", "stage": "paper"}), actor=None)
    assert snap.actor == "risk-engine"


def test_an_actor_given_in_both_header_and_body_must_be_equal() -> None:
    assert normalize(sample(provenance={"actor": "gateway"}), actor="gateway").actor == "gateway"


def test_a_missing_actor_is_400_naming_provenance_actor() -> None:
    reject(sample(provenance={"stage": "paper"}), 400, "provenance.actor", actor=None)
    reject(sample(provenance=...), 400, "provenance.actor", actor=None)


def test_an_x_actor_header_that_disagrees_with_the_body_is_400_not_an_override() -> None:
    error = reject(sample(provenance={"actor": "gateway"}), 400, "provenance.actor", actor="risk-engine")
    assert "'risk-engine'" in str(error) and "'gateway'" in str(error)


@pytest.mark.parametrize(
    "actor",
    [7, "", True, ["gateway"], "gate\u0000way", "gate\udc00way"],
    ids=["int", "empty", "bool", "array", "nul", "surrogate"],
)
def test_a_body_actor_that_is_not_a_storable_non_empty_string_is_422(actor: Any) -> None:
    reject(sample(provenance={"actor": actor}), 422, "provenance.actor", actor=None, stage=None)


@pytest.mark.parametrize("provenance", [[], "gateway", 1], ids=["array", "string", "number"])
def test_provenance_that_is_not_an_object_is_422(provenance: Any) -> None:
    reject(sample(provenance=provenance), 422, "provenance")


@pytest.mark.parametrize(
    ("header", "provenance"),
    [("intruder", {"stage": "paper"}), (None, {"actor": "intruder", "stage": "paper"})],
    ids=["header", "body"],
)
def test_an_actor_outside_the_allowlist_is_403_naming_provenance_actor(
    header: str | None, provenance: dict[str, str]
) -> None:
    rules = ContractRules(allowed_actors=frozenset({"gateway"}))
    error = reject(sample(provenance=provenance), 403, "provenance.actor", actor=header, rules=rules)
    assert "'intruder'" in str(error)
    assert normalize(sample(), rules=rules).actor == "gateway"


def test_an_empty_actor_allowlist_allows_any_actor() -> None:
    assert normalize(sample(provenance={}), actor="anyone").actor == "anyone"


def test_extra_provenance_keys_are_kept() -> None:
    snap = normalize(sample(provenance={"actor": "gateway", "host": "gw-1", "build": 7}))
    assert snap.body["provenance"] == {"actor": "gateway", "stage": "paper", "host": "gw-1", "build": 7}


# --- provenance: stage ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "body_stage", "expected"),
    [
        ("paper", None, "paper"),
        ("LIVE", None, "live"),
        (None, "BackTest", "backtest"),
        ("Paper", "PAPER", "paper"),
    ],
    ids=["header", "header-upper", "body-mixed", "both-differently-cased"],
)
def test_the_stage_comes_from_the_header_or_body_lower_cased(
    header: str | None, body_stage: str | None, expected: str
) -> None:
    provenance = {"actor": "gateway"} if body_stage is None else {"actor": "gateway", "stage": body_stage}
    snap = normalize(sample(provenance=provenance), stage=header)
    assert snap.stage == expected
    assert snap.body["provenance"] == {"actor": "gateway", "stage": expected}


@pytest.mark.parametrize("body_stage", [..., None], ids=["absent", "null"])
def test_a_missing_stage_is_accepted_and_omitted_never_null(body_stage: Any) -> None:
    provenance: dict[str, Any] = {"actor": "gateway", "host": "gw-1"}
    if body_stage is not ...:
        provenance["stage"] = body_stage
    snap = normalize(sample(provenance=provenance), stage=None)
    assert snap.stage is None
    assert snap.body["provenance"] == {"actor": "gateway", "host": "gw-1"}
    assert '"provenance":{"actor":"gateway","host":"gw-1"}' in snap.canonical.decode()
    assert snap.dedupe_key == f"w1|v1|{snap.hash}|gateway|"


def test_a_missing_stage_is_400_under_require_stage() -> None:
    rules = ContractRules(require_stage=True)
    error = reject(sample(provenance={"actor": "gateway"}), 400, "provenance.stage", stage=None, rules=rules)
    assert "required" in str(error)
    assert normalize(sample(provenance={"actor": "gateway"}), stage="live", rules=rules).stage == "live"


def test_an_x_stage_header_that_disagrees_with_the_body_is_400_not_an_override() -> None:
    reject(sample(provenance={"actor": "gateway", "stage": "paper"}), 400, "provenance.stage", stage="live")


@pytest.mark.parametrize(
    ("header", "provenance"),
    [
        ("prod", {"actor": "gateway"}),
        (None, {"actor": "gateway", "stage": "Prod"}),
        ("unknown", {"actor": "gateway"}),
    ],
    ids=["header", "body", "unknown"],
)
def test_a_stage_outside_the_allowlist_is_422_naming_provenance_stage(
    header: str | None, provenance: dict[str, str]
) -> None:
    reject(sample(provenance=provenance), 422, "provenance.stage", stage=header)


def test_the_stage_allowlist_is_configurable() -> None:
    rules = ContractRules(allowed_stages=frozenset({"research"}))
    assert (
        normalize(sample(provenance={"actor": "gateway"}), stage="Research", rules=rules).stage == "research"
    )
    reject(sample(provenance={"actor": "gateway"}), 422, "provenance.stage", stage="paper", rules=rules)


@pytest.mark.parametrize("stage", [1, "", True, ["paper"]], ids=["int", "empty", "bool", "array"])
def test_a_body_stage_that_is_not_a_non_empty_string_is_422(stage: Any) -> None:
    reject(sample(provenance={"actor": "gateway", "stage": stage}), 422, "provenance.stage", stage=None)


# --- normalization ---------------------------------------------------------------------------------


def test_top_level_nulls_are_removed_but_nested_nulls_are_kept() -> None:
    doc = sample(covariance=None, stress_ref=None, note=None, extra={"a": None, "b": [None]})
    snap = normalize(doc)
    for name in ("covariance", "stress_ref", "note"):
        assert name not in snap.body
    assert snap.body["extra"] == {"a": None, "b": [None]}
    assert '"extra":{"a":null,"b":[null]}' in snap.canonical.decode()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("hash", None),
        ("created_at", "2000-01-01T00:00:00Z"),
        ("expired", True),
        ("hub_offloaded", ["stress"]),
        ("event_version", 7),
        ("idempotency_key", "w1|v1|x|gateway|paper"),
    ],
)
def test_hash_created_at_and_server_fields_are_removed_and_never_hashed(name: str, value: Any) -> None:
    snap = normalize(sample(**{name: value}))
    assert name not in snap.body
    assert f'"{name}"' not in snap.canonical.decode()
    assert snap.hash == VECTOR_SHA256


def test_unknown_fields_are_kept_and_hashed() -> None:
    snap = normalize(sample(producer_build="1.2.3"))
    assert snap.body["producer_build"] == "1.2.3"
    expected = {**json.loads(VECTOR_TEXT), "producer_build": "1.2.3"}
    assert snap.hash == sha256_of(canonical(expected))


def test_integers_outside_realized_returns_stay_integers() -> None:
    doc = sample(
        weights={"strategy_a": 1},
        stress={"crash": {"max_drawdown": 1}},
        constraints={"max_names": 20, "big": 2**64},
        provenance={"actor": "gateway", "run": 3},
        ttl_sec=60,
    )
    snap = normalize(doc)
    body = snap.body
    assert type(body["weights"]["strategy_a"]) is int
    assert type(body["stress"]["crash"]["max_drawdown"]) is int
    assert type(body["constraints"]["max_names"]) is int and body["constraints"]["big"] == 2**64
    assert type(body["provenance"]["run"]) is int
    assert type(body["ttl_sec"]) is int
    text = snap.canonical.decode()
    for token in (
        '"strategy_a":1}',
        '"max_drawdown":1}',
        '"big":18446744073709551616',
        '"run":3',
        '"ttl_sec":60',
    ):
        assert token in text


def test_the_normalized_body_is_the_parsed_body_with_only_the_documented_changes() -> None:
    raw = json.dumps(
        sample(
            weights={"strategy_a": 0.60, "strategy_b": 0.40},
            note=None,
            created_at="2000-01-01T00:00:00Z",
            hash=None,
            ttl_sec=...,
            provenance={"actor": "gateway", "desk": "Zürich"},
        )
    ).encode()
    snap = normalize(parse_json(raw), stage="PAPER")
    expected = json.loads(raw)
    for name in ("note", "created_at", "hash"):
        del expected[name]
    expected.update(
        world_id=WORLD, ttl_sec=900, provenance={"actor": "gateway", "desk": "Zürich", "stage": "paper"}
    )
    assert snap.body == expected
    assert snap.canonical == canonical(expected).encode()  # ASCII-escaped, like json.dumps
    assert b"\\u00fc" in snap.canonical
    assert snap.hash == sha256_of(canonical(expected))


def test_normalizing_does_not_change_the_callers_document() -> None:
    doc = sample(realized_returns={"strategy_a": [1, 2]}, note=None, created_at="x", hash=None)
    before = copy.deepcopy(doc)
    normalize(doc, stage="PAPER")
    assert doc == before


def test_a_retry_of_the_same_snapshot_gives_the_same_hash_and_so_does_its_normalized_body() -> None:
    first = normalize(sample(realized_returns={"strategy_a": [1, 2]}))
    again = normalize(sample(realized_returns={"strategy_a": [1, 2]}))
    assert again.hash == first.hash and again.canonical == first.canonical
    refed = normalize(first.body, actor=None, stage=None)
    assert refed.canonical == first.canonical and refed.hash == first.hash


# --- hash ------------------------------------------------------------------------------------------


def test_a_supplied_blake3_hash_is_verified_with_blake3() -> None:
    body = sample(version="v9")
    expected_text = canonical({**json.loads(VECTOR_TEXT), "version": "v9"})
    snap = normalize({**body, "hash": blake3_of(expected_text)})
    assert snap.hash == blake3_of(expected_text)
    assert snap.digests["sha256"] == sha256_of(expected_text)


def test_a_supplied_sha256_hash_is_verified_with_sha256() -> None:
    expected_text = canonical({**json.loads(VECTOR_TEXT), "ttl_sec": 11})
    assert normalize(sample(ttl_sec=11, hash=sha256_of(expected_text))).hash == sha256_of(expected_text)


# id -> (the hash claimed, changes to the sample it is claimed for)
WRONG_HASHES: dict[str, tuple[str, dict[str, Any]]] = {
    "sha256-zeros": ("sha256:" + "0" * 64, {}),
    "blake3-zeros": ("blake3:" + "0" * 64, {}),
    "sha256-other-body": (VECTOR_SHA256, {"ttl_sec": 11}),
    "blake3-other-body": (VECTOR_BLAKE3, {"version": "v2"}),
    "sha-hex-as-blake3": ("blake3:" + VECTOR_SHA256.split(":")[1], {}),
    "blake3-hex-as-sha": ("sha256:" + VECTOR_BLAKE3.split(":")[1], {}),
}


@pytest.mark.parametrize(("claimed", "changes"), list(WRONG_HASHES.values()), ids=list(WRONG_HASHES))
def test_a_hash_that_does_not_match_the_snapshot_is_422_naming_hash(
    claimed: str, changes: dict[str, Any]
) -> None:
    error = reject(sample(hash=claimed, **changes), 422, "hash")
    assert "does not match" in str(error)


@pytest.mark.parametrize(
    "claimed",
    [
        "md5:" + "0" * 32,
        "sha1:" + "0" * 40,
        "sha256:xyz",
        "SHA256:" + VECTOR_SHA256.split(":")[1],
        VECTOR_SHA256.split(":")[1],
        "sha256:" + VECTOR_SHA256.split(":")[1].upper(),
        VECTOR_SHA256 + "0",
        "",
        5,
        ["sha256"],
    ],
    ids=[
        "md5",
        "sha1",
        "short",
        "upper-prefix",
        "no-prefix",
        "upper-hex",
        "65-hex",
        "empty",
        "integer",
        "array",
    ],
)
def test_a_hash_in_another_format_is_422_naming_hash(claimed: Any) -> None:
    reject(sample(hash=claimed), 422, "hash")

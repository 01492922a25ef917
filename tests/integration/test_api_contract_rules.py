"""Every contract rule through the real HTTP API of the embedded hub.

Each rejection is checked for its exact status, an error body that names the field (in ``field``
and in the message), nothing stored, and a bump of ``risk_hub_producer_violations_total``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest

from riskhub.contract import is_world_id

from conftest import TOKEN, HubClient, corrupt_blob, sample_snapshot

WORLD = "w1"
LATEST = f"/risk-hub/worlds/{WORLD}/snapshots/latest"
LOOKUP = f"/risk-hub/worlds/{WORLD}/snapshots/lookup"
LISTING = f"/risk-hub/worlds/{WORLD}/snapshots"
# DESIGN.md's interoperability vector: the runbook sample posted to w1 (ttl 10, gateway, paper).
VECTOR_SHA256 = "sha256:c6b7b8cadc9eebf4175cfac973a360346ae2af3266ccbae8af42a9f386226338"
VECTOR_BLAKE3 = "blake3:6f51f65f0e47418ef1003d6818b3fa4d927f993bb67ab38e9c175e81cc12b3e4"
CODE_BY_STATUS = {
    400: "malformed_request",
    403: "forbidden",
    409: "version_conflict",
    413: "payload_too_large",
    422: "contract_violation",
}
# Placeholder for JSON literals json.dumps cannot write (NaN, Infinity, huge numbers).
LIT = "@literal@"
TWO_IDS = {"strategy_a": 0.6, "strategy_b": 0.4}


@pytest.fixture
def backend() -> dict[str, Any]:
    """Contract rules run before any store is touched: the embedded hub is enough here."""
    return {}


# --- helpers --------------------------------------------------------------------------------------


def violations(hub: HubClient) -> float:
    """``risk_hub_producer_violations_total`` summed over every reason and stage."""
    return sum(
        sample.value
        for family in hub.parts.metrics.registry.collect()
        if family.name == "risk_hub_producer_violations"
        for sample in family.samples
        if sample.name == "risk_hub_producer_violations_total"
    )


def without(*keys: str, **changes: Any) -> dict[str, Any]:
    """The runbook sample with ``changes`` applied and ``keys`` removed."""
    body = sample_snapshot(**changes)
    for key in keys:
        body.pop(key, None)
    return body


def literal(text: str, *drop: str, **changes: Any) -> bytes:
    """The sample as JSON text, with every ``LIT`` placeholder replaced by the raw literal ``text``."""
    return json.dumps(without(*drop, **changes)).replace(json.dumps(LIT), text).encode()


async def send(hub: HubClient, body: Any, world: str = WORLD, **kwargs: Any) -> Any:
    """POST a dict as JSON, or bytes as they are."""
    if isinstance(body, bytes):
        return await hub.post(world, None, raw=body, **kwargs)
    return await hub.post(world, body, **kwargs)


def assert_error(response: Any, status: int, field: str) -> dict[str, Any]:
    """The status, the stable error shape, and the field named in ``field`` and in the message."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"code", "message", "field"}
    assert error["code"] == CODE_BY_STATUS[status]
    assert error["field"] == field
    assert field in error["message"]
    return error


async def rejected(
    hub: HubClient, body: Any, *, status: int, field: str, world: str = WORLD, **kwargs: Any
) -> dict[str, Any]:
    """POST, expect a rejection naming ``field``, counted, with nothing stored for the world."""
    before = violations(hub)
    error = assert_error(await send(hub, body, world, **kwargs), status, field)
    assert violations(hub) > before, "a rejected write must be counted as a producer violation"
    latest = await hub.get(f"/risk-hub/worlds/{world}/snapshots/latest")
    assert latest.status_code == (404 if is_world_id(unquote(world)) else 422), (
        latest.text
    )  # no world id: 422
    return error


async def accepted(hub: HubClient, body: Any, **kwargs: Any) -> dict[str, Any]:
    """POST, expect 201, and return the stored snapshot as served by ``lookup?version=``."""
    response = await send(hub, body, **kwargs)
    assert response.status_code == 201, response.text
    stored = await hub.get(LOOKUP, version=response.json()["version"])
    assert stored.status_code == 200, stored.text
    document: dict[str, Any] = stored.json()
    assert document["hash"] == response.json()["hash"]
    return document


def dumps_hash(document: dict[str, Any]) -> str:
    """sha256 of ``json.dumps(sort_keys=True, separators=(",", ":"))``: how a peer verifies."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def normalized(body: dict[str, Any], *, ttl: int = 10) -> dict[str, Any]:
    """What the hub must hash for the sample-based ``body`` posted to w1 by gateway/paper."""
    document = {k: v for k, v in body.items() if v is not None}
    document.update(world_id=WORLD, provenance={"actor": "gateway", "stage": "paper"})
    document.setdefault("ttl_sec", ttl)
    return document


# --- JSON and the body as a whole -----------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b'{"as_of": ', b"", b"not json", b'{"version": "v1"}{', b"{'version': 'v1'}", b"\xff\xfe"],
    ids=["truncated", "empty", "text", "trailing-garbage", "single-quotes", "not-utf8"],
)
async def test_unparseable_json_is_400_naming_the_body(hub: HubClient, raw: bytes) -> None:
    await rejected(hub, raw, status=400, field="body")


@pytest.mark.parametrize(
    "raw", [b"[]", b'"snapshot"', b"1", b"null", b"true"], ids=["array", "string", "number", "null", "bool"]
)
async def test_a_body_that_is_not_an_object_is_422(hub: HubClient, raw: bytes) -> None:
    await rejected(hub, raw, status=422, field="body")


async def test_world_id_in_the_body_that_differs_from_the_path_is_400(hub: HubClient) -> None:
    error = await rejected(hub, sample_snapshot(world_id="w2"), status=400, field="world_id")
    assert "'w2'" in error["message"] and "'w1'" in error["message"]


@pytest.mark.parametrize("body_world", [None, WORLD], ids=["omitted", "equal"])
async def test_world_id_in_the_body_may_be_omitted_or_equal_to_the_path(
    hub: HubClient, body_world: str | None
) -> None:
    body = sample_snapshot() if body_world is None else sample_snapshot(world_id=body_world)
    stored = await accepted(hub, body)
    assert stored["world_id"] == WORLD
    assert stored["hash"] == VECTOR_SHA256


@pytest.mark.parametrize(
    "world",
    ["-leading-dash", "a" * 129, "bad!id", "w%C3%B6rld", "_x"],
    ids=["dash", "129", "bang", "nonascii", "underscore"],
)
async def test_an_invalid_world_id_in_the_path_is_422(hub: HubClient, world: str) -> None:
    await rejected(hub, sample_snapshot(), status=422, field="world_id", world=world)


# --- required fields and their types --------------------------------------------------------------


@pytest.mark.parametrize("field", ["as_of", "version", "weights"])
async def test_a_missing_required_field_is_422_naming_it(hub: HubClient, field: str) -> None:
    error = await rejected(hub, without(field), status=422, field=field)
    assert "required" in error["message"]


@pytest.mark.parametrize(
    "as_of",
    [20250101, "yesterday", "", "2025-13-01T00:00:00Z", "2025-01-01T00:00:00+25:00", ["2025-01-01"]],
    ids=["integer", "words", "empty", "month-13", "offset-25h", "array"],
)
async def test_as_of_must_be_an_iso_8601_string(hub: HubClient, as_of: Any) -> None:
    await rejected(hub, sample_snapshot(as_of=as_of), status=422, field="as_of")


@pytest.mark.parametrize(
    "as_of", ["2025-01-01T09:30:00+09:00", "2025-01-01T00:30:00Z", "2025-01-01T00:30:00.123456-05:00"]
)
async def test_as_of_with_z_or_an_offset_is_accepted_and_kept_exactly_as_sent(
    hub: HubClient, as_of: str
) -> None:
    stored = await accepted(hub, sample_snapshot(as_of=as_of))
    assert stored["as_of"] == as_of


@pytest.mark.parametrize(
    "as_of", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"], ids=["year-1", "year-9999"]
)
async def test_as_of_outside_the_utc_calendar_is_422_not_500(hub: HubClient, as_of: str) -> None:
    await rejected(hub, sample_snapshot(as_of=as_of), status=422, field="as_of")


@pytest.mark.parametrize(
    "version",
    [1, 1.5, "", ["v1"], {"v": 1}, True, "v" * 257],
    ids=["int", "float", "empty", "array", "object", "bool", "257-chars"],
)
async def test_version_must_be_a_non_empty_string(hub: HubClient, version: Any) -> None:
    await rejected(hub, sample_snapshot(version=version), status=422, field="version")


@pytest.mark.parametrize(
    "version",
    ["v1.2-rc_3", "v 1&x=y#z", "v1+v2%20", "Ā-版本", "v/1?..", "v\r\nX-Injected: 1"],
    ids=["plain", "query-syntax", "plus-percent", "non-latin-1", "slash", "crlf"],
)
async def test_any_version_string_is_stored_and_its_location_leads_back_to_it(
    hub: HubClient, version: str
) -> None:
    response = await hub.post(WORLD, sample_snapshot(version=version))
    assert response.status_code == 201, response.text
    assert response.json()["version"] == version
    assert "x-injected" not in response.headers
    found = await hub.client.get(response.headers["location"], headers={"authorization": f"Bearer {TOKEN}"})
    assert found.status_code == 200, found.text
    assert found.json()["version"] == version


@pytest.mark.parametrize("version", ["v\u0000", "v\ud800"], ids=["nul", "unpaired-surrogate"])
async def test_version_must_be_text_a_store_can_hold(hub: HubClient, version: str) -> None:
    error = await rejected(hub, sample_snapshot(version=version), status=422, field="version")
    assert "NUL" in error["message"]


# --- weights --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "field"),
    [
        ({}, "weights"),
        ({"": 1.0}, "weights"),
        ([0.6, 0.4], "weights"),
        ("strategy_a", "weights"),
        ({"strategy_a": "0.6", "strategy_b": 0.4}, "weights.strategy_a"),
        ({"strategy_a": 0.6, "strategy_b": True}, "weights.strategy_b"),
        ({"strategy_a": 0.6, "strategy_b": [0.4]}, "weights.strategy_b"),
        ({"strategy_a": 0.6, "strategy_b": {"w": 0.4}}, "weights.strategy_b"),
        ({"strategy_a": 0.5, "strategy_b": -0.5}, "weights"),
        ({"strategy_a": 0.0}, "weights"),
        ({"strategy_a": -0.4, "strategy_b": -0.6}, "weights"),
        ({"strategy_a": 0.59, "strategy_b": 0.4}, "weights"),
        ({"strategy_a": 0.6011, "strategy_b": 0.4}, "weights"),
    ],
    ids=[
        "empty",
        "empty-id",
        "array",
        "string",
        "string-weight",
        "boolean-weight",
        "array-weight",
        "object-weight",
        "sum-0",
        "all-zero",
        "sum-negative",
        "sum-0.99",
        "sum-1.0011",
    ],
)
async def test_weights_must_be_finite_numbers_summing_to_one(
    hub: HubClient, weights: Any, field: str
) -> None:
    await rejected(hub, sample_snapshot(weights=weights), status=422, field=field)


async def test_weights_whose_sum_is_beyond_float_range_are_422(hub: HubClient) -> None:
    error = await rejected(
        hub, sample_snapshot(weights={"a": 1e308, "b": 1e308}), status=422, field="weights"
    )
    assert "float range" in error["message"]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_non_finite_weight_literals_are_422_naming_the_weight(hub: HubClient, text: str) -> None:
    await rejected(hub, literal(text, weights={"a": LIT}), status=422, field="weights.a")


async def test_a_missing_weights_field_is_422_and_so_is_null(hub: HubClient) -> None:
    await rejected(hub, sample_snapshot(weights=None), status=422, field="weights")


@pytest.mark.parametrize(
    "weights",
    [
        {"strategy_a": 0.6, "strategy_b": 0.3995},
        {"strategy_a": 0.6, "strategy_b": 0.401},
        {"strategy_a": 1.5, "strategy_b": -0.5},
        {"strategy_a": 1},
    ],
    ids=["sum-0.9995", "sum-1.001", "short-position", "one-integer"],
)
async def test_weights_within_the_sum_tolerance_are_accepted_as_sent(
    hub: HubClient, weights: dict[str, Any]
) -> None:
    stored = await accepted(hub, sample_snapshot(weights=weights))
    assert json.dumps(stored["weights"]) == json.dumps(weights)  # 1 stays an integer


@pytest.mark.parametrize("text", ["1" + "0" * 400, "-1" + "0" * 400], ids=["positive", "negative"])
async def test_an_integer_weight_beyond_float_range_is_422_not_500(hub: HubClient, text: str) -> None:
    body = literal(text, weights={"strategy_a": 1.0, "strategy_b": LIT})
    await rejected(hub, body, status=422, field="weights.strategy_b")


# --- ttl_sec --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ttl",
    [0, -1, 10.5, 10.0, "10", True, 86_401, [10]],
    ids=["0", "negative", "10.5", "10.0", "string", "bool", "86401", "array"],
)
async def test_ttl_sec_must_be_an_integer_between_1_and_86400(hub: HubClient, ttl: Any) -> None:
    await rejected(hub, sample_snapshot(ttl_sec=ttl), status=422, field="ttl_sec")


@pytest.mark.parametrize(
    ("ttl", "stored_ttl"), [(None, 900), (1, 1), (86_400, 86_400)], ids=["missing", "1", "86400"]
)
async def test_ttl_sec_defaults_to_900_and_accepts_the_bounds(
    hub: HubClient, ttl: int | None, stored_ttl: int
) -> None:
    stored = await accepted(hub, sample_snapshot(ttl_sec=ttl))
    assert stored["ttl_sec"] == stored_ttl
    assert stored["hash"] == dumps_hash(normalized(sample_snapshot(ttl_sec=stored_ttl)))


async def test_ttl_sec_over_a_configured_maximum_is_422(make_hub: Callable[..., Any]) -> None:
    async with make_hub(max_ttl_sec=60) as hub:
        error = await rejected(hub, sample_snapshot(ttl_sec=61), status=422, field="ttl_sec")
        assert "60" in error["message"]


# --- realized returns ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("returns", "field"),
    [
        ({"strategy_a": [0.01, True]}, "realized_returns.strategy_a[1]"),
        ({"strategy_a": ["0.01"]}, "realized_returns.strategy_a[0]"),
        ({"strategy_a": [0.01, None]}, "realized_returns.strategy_a[1]"),
        ({"strategy_a": [[0.01]]}, "realized_returns.strategy_a[0]"),
        ({"strategy_a": []}, "realized_returns.strategy_a"),
        ({"strategy_a": 0.01}, "realized_returns.strategy_a"),
        ({"strategy_a": {"0": 0.01}}, "realized_returns.strategy_a"),
        ({}, "realized_returns"),
        ([], "realized_returns"),
        ([0.01, False], "realized_returns[1]"),
        ("0.01", "realized_returns"),
        (0.01, "realized_returns"),
    ],
    ids=[
        "boolean",
        "string",
        "null",
        "nested-array",
        "empty-series",
        "number-not-series",
        "object-not-series",
        "empty-mapping",
        "empty-single-series",
        "single-series-boolean",
        "string",
        "number",
    ],
)
async def test_realized_returns_must_be_non_empty_series_of_numbers(
    hub: HubClient, returns: Any, field: str
) -> None:
    await rejected(hub, sample_snapshot(realized_returns=returns), status=422, field=field)


@pytest.mark.parametrize(
    ("returns", "field"),
    [
        ({"strategy_a": [0.01, LIT]}, "realized_returns.strategy_a[1]"),
        ([LIT], "realized_returns[0]"),
    ],
    ids=["mapping", "single-series"],
)
@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_realized_returns_reject_non_finite_literals(
    hub: HubClient, returns: Any, field: str, text: str
) -> None:
    await rejected(hub, literal(text, realized_returns=returns), status=422, field=field)


async def test_a_huge_integer_return_is_422_not_500(hub: HubClient) -> None:
    body = literal("1" + "0" * 400, realized_returns={"strategy_a": [LIT]})
    await rejected(hub, body, status=422, field="realized_returns.strategy_a[0]")


async def test_a_series_over_200000_points_is_422(hub: HubClient) -> None:
    body = sample_snapshot(realized_returns={"strategy_a": [0] * 200_001})
    error = await rejected(hub, body, status=422, field="realized_returns.strategy_a")
    assert "200000" in error["message"]


async def test_more_than_1000000_points_in_total_is_422(hub: HubClient) -> None:
    body = sample_snapshot(realized_returns={f"s{i}": [0] * 180_000 for i in range(6)})
    error = await rejected(hub, body, status=422, field="realized_returns")
    assert "1000000" in error["message"]


async def test_integer_returns_become_floats_keeping_the_mapping_shape(hub: HubClient) -> None:
    body = sample_snapshot(realized_returns={"strategy_a": [1, 0, -2], "strategy_b": [0.5, 3]})
    stored = await accepted(hub, body)
    assert stored["realized_returns"] == {"strategy_a": [1.0, 0.0, -2.0], "strategy_b": [0.5, 3.0]}
    assert all(type(x) is float for series in stored["realized_returns"].values() for x in series)
    expected = normalized(body)
    expected["realized_returns"] = {"strategy_a": [1.0, 0.0, -2.0], "strategy_b": [0.5, 3.0]}
    assert stored["hash"] == dumps_hash(expected)


async def test_a_single_series_is_accepted_as_floats(hub: HubClient) -> None:
    stored = await accepted(hub, sample_snapshot(realized_returns=[0.01, 2, -0.003]))
    assert stored["realized_returns"] == [0.01, 2.0, -0.003]
    assert type(stored["realized_returns"][1]) is float


# --- covariance ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "covariance", "field"),
    [
        (TWO_IDS, {"strategy_a,zzz": 0.1}, "covariance.strategy_a,zzz"),
        (TWO_IDS, {"strategy_a": 0.1}, "covariance.strategy_a"),
        ({"a,b": 0.5, "c": 0.5}, {"a,b,c": 0.1}, "covariance.a,b,c"),
        (TWO_IDS, {"strategy_a,strategy_b": "0.1"}, "covariance.strategy_a,strategy_b"),
        (TWO_IDS, {"strategy_a,strategy_b": True}, "covariance.strategy_a,strategy_b"),
        (
            TWO_IDS,
            {"strategy_a,strategy_b": 0.1, "strategy_b,strategy_a": 0.2},
            "covariance.strategy_a,strategy_b",
        ),
        (TWO_IDS, [[0.04, 0.01], [0.01, 0.09]], "covariance"),
        (
            TWO_IDS,
            {"ids": ["strategy_a", "strategy_b"], "matrix": [[0.04, 0.01], [0.01]]},
            "covariance.matrix",
        ),
        (TWO_IDS, {"ids": ["strategy_a", "strategy_b"], "matrix": [[0.04, 0.01]]}, "covariance.matrix"),
        (
            TWO_IDS,
            {"ids": ["strategy_a", "strategy_b"], "matrix": [[0.04, 0.01], [0.02, 0.09]]},
            "covariance.matrix[1][0]",
        ),
        (TWO_IDS, {"ids": ["strategy_a", "zzz"], "matrix": [[0.04, 0.01], [0.01, 0.09]]}, "covariance.ids"),
        (TWO_IDS, {"ids": ["strategy_a", "strategy_a"], "matrix": [[1, 1], [1, 1]]}, "covariance.ids"),
        (TWO_IDS, {"ids": [], "matrix": []}, "covariance.ids"),
        (TWO_IDS, {"ids": ["strategy_a"], "matrix": [["x"]]}, "covariance.matrix[0][0]"),
        (TWO_IDS, {"ids": ["strategy_a"], "matrix": [[1]], "extra": 1}, "covariance"),
    ],
    ids=[
        "keyed-unknown-id",
        "keyed-one-id",
        "keyed-separator-in-id",
        "keyed-string",
        "keyed-boolean",
        "keyed-asymmetric",
        "not-an-object",
        "dense-not-square",
        "dense-missing-row",
        "dense-asymmetric",
        "dense-unknown-id",
        "dense-duplicate-id",
        "dense-no-ids",
        "dense-string",
        "dense-extra-key",
    ],
)
async def test_covariance_must_be_finite_symmetric_and_refer_to_weights(
    hub: HubClient, weights: dict[str, Any], covariance: Any, field: str
) -> None:
    body = sample_snapshot(weights=weights, covariance=covariance)
    await rejected(hub, body, status=422, field=field)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "1" + "0" * 400])
async def test_covariance_rejects_non_finite_and_out_of_range_literals(hub: HubClient, text: str) -> None:
    keyed = literal(text, covariance={"strategy_a,strategy_a": LIT})
    await rejected(hub, keyed, status=422, field="covariance.strategy_a,strategy_a")
    dense = literal(text, covariance={"ids": ["strategy_a"], "matrix": [[LIT]]})
    await rejected(hub, dense, status=422, field="covariance.matrix[0][0]")


@pytest.mark.parametrize(
    "covariance",
    [
        {"strategy_a,strategy_a": 0.04, "strategy_a,strategy_b": 0.01, "strategy_b,strategy_a": 0.01},
        {"ids": ["strategy_b", "strategy_a"], "matrix": [[0.09, 0.01], [0.01, 0.04]]},
    ],
    ids=["keyed", "dense"],
)
async def test_a_valid_covariance_is_accepted_as_sent(hub: HubClient, covariance: dict[str, Any]) -> None:
    stored = await accepted(hub, sample_snapshot(covariance=covariance))
    assert stored["covariance"] == covariance
    assert stored["hash"] == dumps_hash(normalized(sample_snapshot(covariance=covariance)))


# --- stress and constraints -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stress", "field"),
    [
        ([{"max_drawdown": 0.25}], "stress"),
        ({"crash": 0.25}, "stress.crash"),
        ({"crash": [0.25]}, "stress.crash"),
        ({"crash": {"max_drawdown": "0.25"}}, "stress.crash.max_drawdown"),
        ({"crash": {"max_drawdown": False}}, "stress.crash.max_drawdown"),
        ({"crash": {"max_drawdown": {"p": 0.25}}}, "stress.crash.max_drawdown"),
    ],
    ids=["array", "number-metrics", "array-metrics", "string-metric", "boolean-metric", "object-metric"],
)
async def test_stress_must_map_scenarios_to_numeric_metrics(hub: HubClient, stress: Any, field: str) -> None:
    await rejected(hub, sample_snapshot(stress=stress), status=422, field=field)


@pytest.mark.parametrize("text", ["NaN", "-Infinity", "1" + "0" * 400])
async def test_stress_rejects_non_finite_and_out_of_range_literals(hub: HubClient, text: str) -> None:
    body = literal(text, stress={"crash": {"max_drawdown": LIT}})
    await rejected(hub, body, status=422, field="stress.crash.max_drawdown")


@pytest.mark.parametrize(
    "constraints", [[], "max_weight=0.5", 0.5, True], ids=["array", "string", "number", "bool"]
)
async def test_constraints_must_be_an_object(hub: HubClient, constraints: Any) -> None:
    await rejected(hub, sample_snapshot(constraints=constraints), status=422, field="constraints")


async def test_constraints_are_stored_as_sent(hub: HubClient) -> None:
    constraints = {"max_weight": 0.5, "limits": [1, 2.5, None, "x"], "nested": {"k": {"deep": True}}}
    stored = await accepted(hub, sample_snapshot(constraints=constraints))
    assert json.dumps(stored["constraints"], sort_keys=True) == json.dumps(constraints, sort_keys=True)


# --- refs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["covariance", "realized_returns", "stress"])
@pytest.mark.parametrize(
    "ref",
    [
        "",
        "   ",
        5,
        ["file:///x"],
        {"ref": "x"},
        "file:///etc/passwd",
        "s3://other-bucket/x.json",
        "https://evil/x",
    ],
    ids=["empty", "blank", "integer", "array", "object", "etc-passwd", "foreign-bucket", "https"],
)
async def test_a_ref_must_be_a_non_empty_string_into_the_store(hub: HubClient, part: str, ref: Any) -> None:
    await rejected(hub, without(part, **{f"{part}_ref": ref}), status=422, field=f"{part}_ref")


async def blob_root(hub: HubClient, content: bytes) -> tuple[str, str]:
    """Store ``content`` as a blob; return its ref and the store's ``file://`` root."""
    ref = await hub.parts.blobs.put(content)
    return ref, ref.rsplit("/", 1)[0]


@pytest.mark.parametrize(
    "make_ref",
    [
        lambda root, ref: f"{root}/../x",
        lambda root, ref: f"{root}/../{ref.rsplit('/', 1)[1]}",
        lambda root, ref: f"{root}/sub/../{ref.rsplit('/', 1)[1]}",
        lambda root, ref: f"{root}/{'0' * 64}.json",
        lambda root, ref: ref.replace("file://", "file:///"),
        lambda root, ref: ref + "x",
    ],
    ids=["dotdot", "dotdot-existing-name", "sub-dotdot", "absent-blob", "triple-slash", "suffix"],
)
async def test_a_ref_outside_the_store_or_to_a_missing_blob_is_422(
    hub: HubClient, make_ref: Callable[[str, str], str]
) -> None:
    ref, root = await blob_root(hub, b'{"strategy_a,strategy_a":0.04}')
    body = sample_snapshot(covariance_ref=make_ref(root, ref))
    await rejected(hub, body, status=422, field="covariance_ref")


async def test_both_a_part_and_its_ref_is_422(hub: HubClient) -> None:
    ref, _ = await blob_root(hub, b'{"strategy_a,strategy_a":0.04}')
    body = sample_snapshot(covariance={"strategy_a,strategy_a": 0.04}, covariance_ref=ref)
    error = await rejected(hub, body, status=422, field="covariance_ref")
    assert "not both" in error["message"]


@pytest.mark.parametrize(
    ("part", "content", "message"),
    [
        ("covariance", b"not json", "the referenced blob is not JSON"),
        (
            "covariance",
            b'{"strategy_a,strategy_a": NaN}',
            "covariance: strategy_a,strategy_a: must be a finite",
        ),
        ("covariance", b'{"strategy_z,strategy_z": 0.04}', "covariance"),
        ("realized_returns", b'{"strategy_a": []}', "realized_returns.strategy_a"),
        ("stress", b'{"crash": {"max_drawdown": "0.25"}}', "stress.crash.max_drawdown"),
    ],
    ids=["not-json", "nan", "unknown-id", "empty-series", "string-metric"],
)
async def test_a_ref_must_hold_a_valid_part(hub: HubClient, part: str, content: bytes, message: str) -> None:
    """Refs are content-addressed, so what one holds never changes: a blob that is no valid part
    would fail every expand, and every worker run on its event, forever."""
    ref, _ = await blob_root(hub, content)
    error = await rejected(hub, without(part, **{f"{part}_ref": ref}), status=422, field=f"{part}_ref")
    assert message in error["message"]


async def test_a_ref_whose_blob_does_not_match_its_address_is_422(hub: HubClient) -> None:
    ref, _ = await blob_root(hub, b'{"strategy_a,strategy_a":0.04}')
    await corrupt_blob(hub, ref)
    error = await rejected(hub, sample_snapshot(covariance_ref=ref), status=422, field="covariance_ref")
    assert "does not match its sha256 address" in error["message"]


async def test_a_ref_to_an_existing_blob_in_the_store_is_accepted(hub: HubClient) -> None:
    ref, _ = await blob_root(hub, b'{"strategy_a,strategy_a":0.04}')
    stored = await accepted(hub, sample_snapshot(covariance_ref=ref))
    assert stored["covariance_ref"] == ref
    assert "hub_offloaded" not in stored
    assert stored["hash"] == dumps_hash(normalized(sample_snapshot(covariance_ref=ref)))


async def test_a_ref_checked_once_is_checked_again_for_other_ids_and_must_still_exist(hub: HubClient) -> None:
    """The hub remembers refs it checked (a blob's content never changes), per set of weight ids:
    the same ref under weights without its ids is still refused, and a blob gone since is 422."""
    ref, _ = await blob_root(hub, b'{"strategy_a,strategy_a":0.04}')
    await accepted(hub, sample_snapshot(version="v1", covariance_ref=ref))
    await accepted(hub, sample_snapshot(version="v2", covariance_ref=ref))
    other_ids = sample_snapshot(version="v3", covariance_ref=ref, weights={"strategy_b": 1.0})
    error = await rejected(hub, other_ids, status=422, field="covariance_ref", world="w2")
    assert "strategy_a" in error["message"]
    assert ref.startswith("file://")  # the embedded hub's store; an operator removes the blob
    await asyncio.to_thread(Path(ref.removeprefix("file://")).unlink)
    gone = sample_snapshot(version="v4", covariance_ref=ref)
    await rejected(hub, gone, status=422, field="covariance_ref", world="w2")


# --- actor and stage -----------------------------------------------------------------------------


async def test_a_missing_actor_is_400(hub: HubClient) -> None:
    body = sample_snapshot(provenance={"stage": "paper"})
    await rejected(hub, body, status=400, field="provenance.actor", actor=None)


@pytest.mark.parametrize(
    ("headers", "provenance", "field"),
    [
        ({"actor": "risk-engine"}, {"actor": "gateway", "stage": "paper"}, "provenance.actor"),
        ({"stage": "live"}, {"actor": "gateway", "stage": "paper"}, "provenance.stage"),
    ],
    ids=["actor", "stage"],
)
async def test_a_header_that_disagrees_with_the_body_is_400_not_an_override(
    hub: HubClient, headers: dict[str, str], provenance: dict[str, str], field: str
) -> None:
    body = sample_snapshot(provenance=provenance)
    error = await rejected(hub, body, status=400, field=field, **headers)
    assert "header" in error["message"]


@pytest.mark.parametrize(
    ("provenance", "field"),
    [
        ([], "provenance"),
        ("gateway", "provenance"),
        ({"actor": 7}, "provenance.actor"),
        ({"actor": ""}, "provenance.actor"),
        ({"actor": "gate\u0000way"}, "provenance.actor"),
        ({"actor": "gate\udc00way"}, "provenance.actor"),
        ({"actor": "gateway", "stage": 1}, "provenance.stage"),
        ({"actor": "gateway", "stage": ""}, "provenance.stage"),
    ],
    ids=[
        "array",
        "string",
        "actor-int",
        "actor-empty",
        "actor-nul",
        "actor-surrogate",
        "stage-int",
        "stage-empty",
    ],
)
async def test_provenance_must_be_an_object_of_non_empty_strings(
    hub: HubClient, provenance: Any, field: str
) -> None:
    await rejected(
        hub, sample_snapshot(provenance=provenance), status=422, field=field, actor=None, stage=None
    )


@pytest.mark.parametrize(
    ("header", "provenance"),
    [("prod", {"actor": "gateway"}), (None, {"actor": "gateway", "stage": "Prod"}), ("unknown", {})],
    ids=["header", "body", "unknown"],
)
async def test_a_stage_outside_the_allowlist_is_422(
    hub: HubClient, header: str | None, provenance: dict[str, str]
) -> None:
    body = sample_snapshot(provenance=provenance)
    await rejected(hub, body, status=422, field="provenance.stage", stage=header)


@pytest.mark.parametrize(
    ("header", "body_stage"),
    [("Paper", "paper"), ("PAPER", "Paper"), ("LIVE", None), (None, "BackTest")],
    ids=["header-case", "both-cases", "header-only", "body-only"],
)
async def test_stages_agree_case_insensitively_and_are_stored_lower_case(
    hub: HubClient, header: str | None, body_stage: str | None
) -> None:
    provenance = {"actor": "gateway"} if body_stage is None else {"actor": "gateway", "stage": body_stage}
    stored = await accepted(hub, sample_snapshot(provenance=provenance), stage=header)
    expected = (header or body_stage or "").lower()
    assert stored["provenance"] == {"actor": "gateway", "stage": expected}


async def test_a_missing_stage_is_accepted_stored_without_stage_and_counted(hub: HubClient) -> None:
    body = sample_snapshot(provenance={"actor": "gateway", "stage": None, "host": "gw-1"})
    response = await hub.post(WORLD, body, stage=None)
    assert response.status_code == 201, response.text
    assert response.json()["stage"] is None
    stored = (await hub.get(LOOKUP, version="v1")).json()
    assert stored["provenance"] == {"actor": "gateway", "host": "gw-1"}
    labels = {"reason": "missing_stage", "stage": "unknown"}
    assert hub.metric("risk_hub_producer_violations_total", **labels) == 1
    assert hub.metric("risk_hub_snapshot_accepted_total", world_id=WORLD, stage="unknown") == 1
    assert (await hub.get(LATEST)).json()["version"] == "v1"


async def test_a_missing_stage_is_400_under_require_stage(make_hub: Callable[..., Any]) -> None:
    async with make_hub(require_stage=True) as hub:
        body = sample_snapshot(provenance={"actor": "gateway"})
        error = await rejected(hub, body, status=400, field="provenance.stage", stage=None)
        assert "required" in error["message"]
        stored = await accepted(hub, body, stage="live")
        assert stored["provenance"]["stage"] == "live"


@pytest.mark.parametrize(
    ("header", "provenance"),
    [("intruder", {"stage": "paper"}), (None, {"actor": "intruder", "stage": "paper"})],
    ids=["header", "body"],
)
async def test_an_actor_outside_the_allowlist_is_403_and_counted(
    make_hub: Callable[..., Any], header: str | None, provenance: dict[str, str]
) -> None:
    async with make_hub(allowed_actors=["gateway"]) as hub:
        body = sample_snapshot(provenance=provenance)
        error = await rejected(hub, body, status=403, field="provenance.actor", actor=header)
        assert "'intruder'" in error["message"]
        labels = {"reason": "actor_not_allowed", "stage": "paper"}
        assert hub.metric("risk_hub_producer_violations_total", **labels) == 1
        assert (await accepted(hub, sample_snapshot()))["provenance"]["actor"] == "gateway"


# --- hash ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claimed",
    [
        "md5:" + "0" * 32,
        "sha256:xyz",
        "SHA256:" + VECTOR_SHA256.split(":")[1],
        VECTOR_SHA256.split(":")[1],
        VECTOR_SHA256.upper().replace("SHA256", "sha256"),
        VECTOR_SHA256 + "0",
        5,
        ["sha256"],
    ],
    ids=["md5", "short", "upper-prefix", "no-prefix", "upper-hex", "65-hex", "integer", "array"],
)
async def test_a_hash_in_the_wrong_format_is_422(hub: HubClient, claimed: Any) -> None:
    await rejected(hub, sample_snapshot(hash=claimed), status=422, field="hash")


@pytest.mark.parametrize(
    ("claimed", "changes"),
    [
        ("sha256:" + "0" * 64, {}),
        ("blake3:" + "0" * 64, {}),
        (VECTOR_SHA256, {"ttl_sec": 11}),
        (VECTOR_BLAKE3, {"version": "v2"}),
    ],
    ids=["sha256-zeros", "blake3-zeros", "sha256-of-another-body", "blake3-of-another-body"],
)
async def test_a_hash_that_does_not_match_is_422(
    hub: HubClient, claimed: str, changes: dict[str, Any]
) -> None:
    error = await rejected(hub, sample_snapshot(hash=claimed, **changes), status=422, field="hash")
    assert "does not match" in error["message"]


@pytest.mark.parametrize("claimed", [VECTOR_BLAKE3, VECTOR_SHA256], ids=["blake3", "sha256"])
async def test_the_design_vector_hash_is_accepted_unchanged(hub: HubClient, claimed: str) -> None:
    stored = await accepted(hub, sample_snapshot(hash=claimed))
    assert stored["hash"] == claimed


# --- fields the server sets or drops --------------------------------------------------------------


async def test_a_producer_supplied_created_at_is_ignored(hub: HubClient) -> None:
    stored = await accepted(hub, sample_snapshot(created_at="2000-01-01T00:00:00Z"))
    created_at = datetime.fromisoformat(stored["created_at"])
    assert abs(created_at - datetime.now(UTC)) < timedelta(minutes=5)
    assert stored["hash"] == VECTOR_SHA256


async def test_server_and_event_fields_in_the_body_are_ignored(hub: HubClient) -> None:
    body = sample_snapshot(
        expired=True, hub_offloaded=["stress"], event_version=7, idempotency_key="w1|v1|x|gateway|paper"
    )
    stored = await accepted(hub, body)
    assert stored["expired"] is False
    assert stored["stress"] == sample_snapshot()["stress"]
    for name in ("hub_offloaded", "event_version", "idempotency_key"):
        assert name not in stored
    assert stored["hash"] == VECTOR_SHA256


async def test_top_level_nulls_are_removed_before_hashing(hub: HubClient) -> None:
    body = sample_snapshot(covariance=None, covariance_ref=None, stress_ref=None, constraints=None, note=None)
    stored = await accepted(hub, body)
    for name in ("covariance", "covariance_ref", "stress_ref", "constraints", "note"):
        assert name not in stored
    assert stored["hash"] == VECTOR_SHA256


async def test_nested_nulls_and_unknown_fields_are_kept_and_hashed(hub: HubClient) -> None:
    body = sample_snapshot(note={"a": None, "b": [None]}, producer_build="1.2.3")
    stored = await accepted(hub, body)
    assert stored["note"] == {"a": None, "b": [None]}
    assert stored["producer_build"] == "1.2.3"
    assert stored["hash"] == dumps_hash(normalized(body))


# --- JSON the stdlib parses but the fast path might not ---------------------------------------------


@pytest.mark.parametrize(
    "text",
    [str(2**64), str(-(2**63) - 1), str(10**30), "1" + "0" * 400],
    ids=["2^64", "-2^63-1", "1e30-int", "400-digits"],
)
async def test_integer_literals_beyond_64_bits_stay_integers(hub: HubClient, text: str) -> None:
    body = literal(text, constraints={"max_notional": LIT})
    stored = await accepted(hub, body)
    assert stored["constraints"]["max_notional"] == int(text)
    assert type(stored["constraints"]["max_notional"]) is int
    assert stored["hash"] == dumps_hash(normalized(json.loads(body)))


@pytest.mark.parametrize(
    ("text", "changes"),
    [
        ("NaN", {"constraints": {"x": LIT}}),
        ("Infinity", {"note": LIT}),
        ("NaN", {"provenance": {"actor": "gateway", "stage": "paper", "score": LIT}}),
        ("NaN", {"constraints": {"x": LIT, "desk": "Zürich"}}),
    ],
    ids=["constraints", "unknown-field", "provenance-extra", "with-non-ascii"],
)
async def test_non_finite_literals_outside_the_typed_parts_are_422_not_hashed_as_null(
    hub: HubClient, text: str, changes: dict[str, Any]
) -> None:
    # json.dumps would write the literal, orjson writes null: either way no peer can verify the
    # hash, so the only sound answer is a 422 that names where the literal is.
    before = violations(hub)
    response = await send(hub, literal(text, **changes))
    part = next(iter(changes))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["field"].startswith(part) and error["field"] in error["message"]
    assert violations(hub) > before
    assert (await hub.get(LATEST)).status_code == 404


@pytest.mark.parametrize("depth", [256, 300, 900], ids=["256", "300", "900"])
async def test_deeply_nested_unknown_fields_are_answered_without_a_5xx(hub: HubClient, depth: int) -> None:
    body = literal("[" * depth + "]" * depth, constraints={"x": LIT})
    response = await send(hub, body)
    assert response.status_code in (201, 400, 422), response.text
    if response.status_code != 201:
        assert_error(response, response.status_code, response.json()["error"]["field"])


@pytest.mark.parametrize(
    "changes",
    [{"constraints": {"x": "\ud800"}}, {"constraints": {"\udfff": 1}}, {"note": "a\udc80b"}],
    ids=["value", "key", "unknown-field"],
)
async def test_lone_surrogates_are_answered_without_a_5xx(hub: HubClient, changes: dict[str, Any]) -> None:
    response = await send(hub, json.dumps(sample_snapshot(**changes)).encode())
    assert response.status_code in (201, 422), response.text
    if response.status_code == 201:
        stored = (await hub.get(LOOKUP, version="v1")).json()
        assert stored["hash"] == dumps_hash(normalized(sample_snapshot(**changes)))
    else:
        assert_error(response, 422, next(iter(changes)))


# --- 409 and 413 ---------------------------------------------------------------------------------


async def test_a_different_snapshot_under_an_existing_version_is_409_and_counted(hub: HubClient) -> None:
    assert (await hub.post(WORLD, sample_snapshot())).status_code == 201
    before = violations(hub)
    response = await hub.post(WORLD, sample_snapshot(weights={"strategy_a": 0.5, "strategy_b": 0.5}))
    error = assert_error(response, 409, "version")
    assert "v1" in error["message"]
    assert violations(hub) > before, "a rejected write must be counted as a producer violation"
    assert (await hub.get(LATEST)).json()["weights"] == TWO_IDS


async def test_a_body_over_max_body_bytes_is_413_and_counted(make_hub: Callable[..., Any]) -> None:
    async with make_hub(max_body_bytes=2048) as hub:
        body = sample_snapshot(constraints={"note": "x" * 4096})
        await rejected(hub, body, status=413, field="body")


# --- query parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        (LISTING, {"limit": "0"}, "limit"),
        (LISTING, {"limit": "-1"}, "limit"),
        (LISTING, {"limit": "1001"}, "limit"),
        (LISTING, {"limit": "abc"}, "limit"),
        (LISTING, {"limit": "1.5"}, "limit"),
        (LISTING, {"stage": "junk"}, "stage"),
        (LATEST, {"stage": "junk"}, "stage"),
        (LATEST, {"expand": "maybe"}, "expand"),
        (LOOKUP, {"as_of": "yesterday"}, "as_of"),
        (LOOKUP, {"as_of": "0001-01-01T00:00:00+01:00"}, "as_of"),
        (LOOKUP, {}, "version"),
        (LOOKUP, {"version": "v1", "as_of": "2025-01-01T00:00:00Z"}, "version"),
    ],
    ids=[
        "limit-0",
        "limit-negative",
        "limit-1001",
        "limit-abc",
        "limit-float",
        "list-stage-junk",
        "latest-stage-junk",
        "expand-maybe",
        "lookup-as-of-junk",
        "lookup-as-of-year-1",
        "lookup-neither",
        "lookup-both",
    ],
)
async def test_a_bad_query_parameter_is_422_naming_it(
    hub: HubClient, path: str, params: dict[str, str], field: str
) -> None:
    assert (await hub.post(WORLD, sample_snapshot())).status_code == 201
    assert_error(await hub.get(path, **params), 422, field)


async def test_a_read_without_a_token_is_refused_before_its_query_is_looked_at(hub: HubClient) -> None:
    for answer in (
        await hub.get(LATEST, token=None, expand="maybe"),
        await hub.get(LISTING, token="wrong", limit="abc"),
    ):
        assert answer.status_code == 401, answer.text
        assert answer.json()["error"]["code"] == "unauthorized"


async def test_unknown_query_parameters_are_ignored(hub: HubClient) -> None:
    assert (await hub.post(WORLD, sample_snapshot())).status_code == 201
    assert (await hub.get(LATEST, expand="false", page="2")).json()["version"] == "v1"

"""Generated input against the in-process hub: valid snapshots round-trip through POST and lookup,
and no request, however malformed, is answered with a 5xx."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import blake3
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import HubClient, sample_snapshot

SERVER_FIELDS = ("created_at", "expired", "hub_offloaded", "event_version", "idempotency_key")
STAGES = ("backtest", "paper", "live")
FIXTURE_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def backend() -> dict[str, Any]:
    """The embedded hub: these properties are about the API and the contract, not the adapters."""
    return {}


# --- strategies -----------------------------------------------------------------------------------

world_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}", fullmatch=True)
ids = st.text(min_size=1, max_size=16)
# Any text but NUL and lone surrogates (the contract refuses them: no store can index them).
versions = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=64
)
header_safe = st.from_regex(r"[A-Za-z0-9_.-]{1,24}", fullmatch=True)
finite = st.floats(allow_nan=False, allow_infinity=False)
numbers = finite | st.integers(min_value=-(2**53), max_value=2**53)
json_scalars = st.none() | st.booleans() | st.integers() | finite | st.text()
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
# ISO-8601 offsets are whole minutes (a sub-minute offset would also turn "+00:00:00.000001" into
# "Z:00.000001" below).
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
moments = st.datetimes(  # the past: an as_of more than 300 s ahead of the hub's clock is refused
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2025, 12, 31),
    timezones=st.none() | st.just(UTC) | offsets,
)


@st.composite
def as_of_texts(draw: st.DrawFn) -> str:
    text = draw(moments).isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


@st.composite
def weight_maps(draw: st.DrawFn) -> dict[str, float]:
    """1-20 ids with positive weights that sum to 1 within 1e-9."""
    names = draw(st.lists(ids, min_size=1, max_size=20, unique=True))
    raw = draw(st.lists(st.floats(min_value=0.001, max_value=1000), min_size=len(names), max_size=len(names)))
    total = math.fsum(raw)
    values = [x / total for x in raw]
    values[-1] = 1.0 - math.fsum(values[:-1])
    assert abs(math.fsum(values) - 1.0) <= 1e-9
    return dict(zip(names, values, strict=True))


series = st.lists(numbers, min_size=1, max_size=8)
OPTIONAL_PARTS: dict[str, st.SearchStrategy[Any]] = {
    "ttl_sec": st.integers(min_value=1, max_value=86_400),
    "realized_returns": st.dictionaries(ids, series, min_size=1, max_size=5) | series,
    "stress": st.dictionaries(ids, st.dictionaries(ids, numbers, max_size=4), max_size=4),
    "constraints": st.dictionaries(st.text(max_size=12), json_values, max_size=4),
    "created_at": st.just("2000-01-01T00:00:00Z"),
    "expired": st.booleans(),
    "hub_offloaded": st.just(["covariance"]),
    "event_version": st.integers(),
    "idempotency_key": st.text(max_size=20),
    "covariance": st.none(),
}


@st.composite
def valid_posts(draw: st.DrawFn) -> dict[str, Any]:
    """A valid POST: world, body and headers, everything the contract leaves open varied."""
    world = draw(world_ids)
    body: dict[str, Any] = {
        "as_of": draw(as_of_texts()),
        "version": draw(versions),
        "weights": draw(weight_maps()),
    }
    for name, strategy in OPTIONAL_PARTS.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    if draw(st.booleans()):
        body["world_id"] = world
    extras = draw(st.dictionaries(st.text(max_size=10).map(lambda k: f"x_{k}"), json_values, max_size=3))
    body.update(extras)
    actor, stage = draw(header_safe), draw(st.none() | st.sampled_from(STAGES))
    if stage is not None:
        stage = "".join(draw(st.sampled_from([c, c.upper()])) for c in stage)
    headers, provenance = _place(draw, actor, stage)
    provenance.update(draw(st.dictionaries(st.sampled_from(["host", "build", "run"]), json_values)))
    if provenance or draw(st.booleans()):
        body["provenance"] = provenance
    return {
        "world": world,
        "body": body,
        "headers": headers,
        "hash": draw(st.sampled_from([None, "sha256", "blake3"])),
    }


def _place(draw: st.DrawFn, actor: str, stage: str | None) -> tuple[dict[str, str | None], dict[str, Any]]:
    """Put actor and stage in the headers, the body, or both (always agreeing)."""
    headers: dict[str, str | None] = {"actor": None, "stage": None}
    provenance: dict[str, Any] = {}
    for name, value in (("actor", actor), ("stage", stage)):
        if value is None:
            continue
        where = draw(st.sampled_from(["header", "body", "both"]))
        if where != "body":
            headers[name] = value
        if where != "header":
            # actors are compared exactly, stages case-insensitively
            provenance[name] = value.lower() if name == "stage" and draw(st.booleans()) else value
    return headers, provenance


# --- the documented normalization, written independently of the hub ------------------------------


def expected_document(world: str, body: dict[str, Any], actor: str, stage: str | None) -> dict[str, Any]:
    """The normalized snapshot DESIGN.md describes for ``body`` posted to ``world``."""
    doc = {k: v for k, v in body.items() if v is not None and k != "hash" and k not in SERVER_FIELDS}
    doc["world_id"] = world
    doc.setdefault("ttl_sec", 900)
    returns = doc.get("realized_returns")
    if isinstance(returns, list):
        doc["realized_returns"] = [float(x) for x in returns]
    elif isinstance(returns, dict):
        doc["realized_returns"] = {k: [float(x) for x in v] for k, v in returns.items()}
    provenance = {k: v for k, v in doc.get("provenance", {}).items() if k != "stage"}
    provenance["actor"] = actor
    if stage is not None:
        provenance["stage"] = stage.lower()
    doc["provenance"] = provenance
    return doc


def dumps(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def hash_of(document: dict[str, Any], algorithm: str) -> str:
    if algorithm == "blake3":
        return "blake3:" + blake3.blake3(dumps(document)).hexdigest()
    return "sha256:" + hashlib.sha256(dumps(document)).hexdigest()


@FIXTURE_SETTINGS
@given(case=valid_posts())
async def test_a_valid_snapshot_round_trips_unchanged_apart_from_server_fields(
    make_hub: Callable[..., Any], tmp_path: Path, case: dict[str, Any]
) -> None:
    world, body, headers = case["world"], case["body"], case["headers"]
    actor = headers["actor"] or body["provenance"]["actor"]
    stage = headers["stage"] or body.get("provenance", {}).get("stage")
    expected = expected_document(world, body, actor, stage)
    claimed = hash_of(expected, case["hash"] or "sha256")
    if case["hash"] is not None:
        body = {**body, "hash": claimed}
    async with make_hub(data_dir=tmp_path / uuid.uuid4().hex) as hub:
        response = await hub.post(world, body, actor=headers["actor"], stage=headers["stage"])
        assert response.status_code == 201, response.text
        assert response.json()["hash"] == claimed
        found = await hub.get(f"/risk-hub/worlds/{world}/snapshots/lookup", version=body["version"])
        assert found.status_code == 200, found.text
    stored = found.json()
    assert stored["hash"] == claimed
    assert stored["expired"] is False
    assert "hub_offloaded" not in stored
    served = {k: v for k, v in stored.items() if k not in ("created_at", "expired", "hash", "hub_offloaded")}
    assert dumps(served) == dumps(expected)


# --- nothing yields a 5xx -------------------------------------------------------------------------

wild_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400)
    | st.floats()
    | st.text()
)
wild_values = st.recursive(
    wild_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=16,
)
FIELDS = (
    "world_id",
    "as_of",
    "version",
    "weights",
    "ttl_sec",
    "covariance",
    "covariance_ref",
    "realized_returns",
    "realized_returns_ref",
    "stress",
    "stress_ref",
    "constraints",
    "provenance",
    "hash",
    "created_at",
    "hub_offloaded",
)
NESTED = (
    ("weights", "strategy_a"),
    ("realized_returns", "strategy_a"),
    ("stress", "crash"),
    ("stress", "crash", "max_drawdown"),
    ("provenance", "actor"),
    ("provenance", "stage"),
)
header_values = st.none() | st.sampled_from(["gateway", "Paper", "LIVE", "junk", ""]) | header_safe


@st.composite
def mutated_samples(draw: st.DrawFn) -> bytes:
    """The runbook sample with wrong values at one or more places."""
    body = sample_snapshot()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(FIELDS).map(lambda f: (f,)) | st.sampled_from(NESTED))
        target = body
        for key in path[:-1]:
            if not isinstance(target.get(key), dict):
                target[key] = {}
            target = target[key]
        target[path[-1]] = draw(wild_values)
    if draw(st.booleans()):
        body["realized_returns"] = {"strategy_a": draw(st.lists(wild_scalars, max_size=6))}
    return json.dumps(body).encode()


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    """The sample with a deeply nested array or object in one field (or as the whole body)."""
    depth = draw(st.integers(min_value=1, max_value=5000))
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    nested = opening * depth + draw(st.sampled_from(["1", "null", '"x"', "[]", "{}"])) + closing * depth
    field = draw(st.sampled_from((*FIELDS, "x_unknown", None)))
    if field is None:
        return nested.encode()
    return json.dumps(sample_snapshot(**{field: "@nested@"})).replace('"@nested@"', nested).encode()


raw_bodies = (
    st.binary(max_size=300)
    | wild_values.map(lambda v: json.dumps(v).encode())
    | st.dictionaries(st.sampled_from(FIELDS), wild_values).map(lambda v: json.dumps(v).encode())
    | mutated_samples()
    | deeply_nested()
)


def assert_not_a_server_error(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "field"}
        assert isinstance(error["message"], str) and error["message"]


def sample_with(text: str, **changes: Any) -> bytes:
    """The sample as JSON, with the placeholder ``@@`` replaced by the raw JSON ``text``."""
    return json.dumps(sample_snapshot(**changes)).replace('"@@"', text).encode()


@FIXTURE_SETTINGS
@example(
    raw=sample_with("1" + "0" * 400, weights={"strategy_a": "@@"}), actor="gateway", stage="paper", world="w1"
)
@example(raw=sample_with("[" * 300 + "]" * 300, note="@@"), actor="gateway", stage="paper", world="w1")
@example(raw=sample_with('"\\ud800"', note="@@"), actor="gateway", stage="paper", world="w1")
@example(
    raw=sample_with('{"x":NaN,"y":"\\u00e9"}', constraints="@@"), actor="gateway", stage=None, world="w1"
)
@example(
    raw=sample_with('"0001-01-01T00:00:00+01:00"', as_of="@@"), actor="gateway", stage="paper", world="w1"
)
@example(raw=sample_with('"\\u0100"', version="@@"), actor="gateway", stage="paper", world="w1")
@given(
    raw=raw_bodies, actor=header_values, stage=header_values, world=st.sampled_from(["w1", "w-2"]) | st.text()
)
async def test_no_body_or_header_yields_a_5xx(
    hub: HubClient, raw: bytes, actor: str | None, stage: str | None, world: str
) -> None:
    response = await hub.post(quote(world, safe="") or "w1", None, raw=raw, actor=actor, stage=stage)
    assert_not_a_server_error(response)


query_values = st.text(max_size=20) | st.sampled_from(
    ["0", "-1", "1001", "1e3", "true", "paper", "2025-01-01"]
)


@FIXTURE_SETTINGS
@given(
    endpoint=st.sampled_from(["latest", "", "lookup"]),
    params=st.dictionaries(
        st.sampled_from(["limit", "stage", "actor", "expand", "version", "as_of"]), query_values
    ),
    world=st.sampled_from(["w1"]) | st.text(),
)
async def test_no_query_yields_a_5xx(
    hub: HubClient, endpoint: str, params: dict[str, str], world: str
) -> None:
    assert (await hub.post("w1", sample_snapshot(ttl_sec=3600))).status_code in (200, 201)
    path = f"/risk-hub/worlds/{quote(world, safe='') or 'w1'}/snapshots"
    response = await hub.get(f"{path}/{endpoint}" if endpoint else path, **params)
    assert_not_a_server_error(response)

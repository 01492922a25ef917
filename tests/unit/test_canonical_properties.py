"""Canonical JSON and the snapshot hash, as properties (pure, no I/O besides the runbook sample).

Peers verify hashes with ``json.dumps(obj, sort_keys=True, separators=(",", ":"))``: the hub's fast
canonicalizer must produce exactly those bytes for every JSON value.
"""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from riskhub.contract import digest, normalize_snapshot, snapshot_hash
from riskhub.contract.canonical import canonical_json, loads_exact, merge_objects
from vectors import VECTOR_BLAKE3, VECTOR_SHA256, VECTOR_TEXT

from conftest import sample_snapshot

# Floats where orjson and json.dumps are known to disagree, and the rest of the range.
tiny_floats = st.floats(min_value=1e-10, max_value=1e-3) | st.floats(min_value=-1e-3, max_value=-1e-10)
floats = st.floats(allow_nan=False, allow_infinity=False) | tiny_floats
integers = (
    st.integers() | st.integers(min_value=2**63 - 2, max_value=2**70) | st.integers(max_value=-(2**63) + 2)
)
tricky_text = st.sampled_from(["é", "\x7f", "\x00", "\u2028", "\U0001f600", "\\", '"', "</script>", "\ufeff"])
text = st.text() | tricky_text | st.text(st.characters(max_codepoint=0x7F))
scalars = st.none() | st.booleans() | integers | floats | text
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(text, children, max_size=6),
    max_leaves=40,
)


def reference(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


@settings(max_examples=500, deadline=None)
@given(json_values)
@example(3.93e-05)
@example(1e-05)
@example(-1e-07)
@example(1e16)
@example(5e-324)
@example("é")
@example("\x7f")
@example({"w": [3.93e-05, 1e-05, -1e-07, 1e16, 5e-324, 1.5e-7, 0.0001, 1e-4, 2**64, -(2**63) - 1]})
@example({"é": "\x7f", "a": {"b": [None, True, False, 0, -0.0, 1e308, 2.2250738585072014e-308]}})
def test_canonical_json_is_exactly_json_dumps(value: Any) -> None:
    assert canonical_json(value) == reference(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(text, json_values, max_size=5), st.dictionaries(text, json_values, max_size=5))
@example({}, {})
@example({"a": 1}, {})
@example({}, {"b": [2]})
def test_merging_serialized_objects_equals_merging_the_objects(first: Any, second: Any) -> None:
    # distinct keys, as the hub's are
    first = {f"1{key}": value for key, value in first.items()}
    second = {f"2{key}": value for key, value in second.items()}
    spaced = json.dumps(first, indent=1).encode()  # whitespace around the braces is allowed
    merged = merge_objects(spaced, canonical_json(second))
    assert json.loads(merged) == {**first, **second}
    assert list(json.loads(merged)) == [*first, *sorted(second)]  # canonical JSON sorts keys


@pytest.mark.parametrize(
    "value",
    [1e-9, 1.5e-9, 9.99e-5, 1e-4, 1.0000000000000001e-05, 123e-7, 1e-10, 1e-100, 1e22, 1e-5],
)
def test_canonical_json_matches_json_dumps_around_the_exponent_switch(value: float) -> None:
    for number in (value, -value):
        assert canonical_json({"x": number, "y": [number]}) == reference({"x": number, "y": [number]})


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's insertion order shuffled (recursively)."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {key: shuffled(value[key], rng) for key in keys}
    if isinstance(value, list):
        return [shuffled(item, rng) for item in value]
    return value


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(text, json_values, min_size=2, max_size=5), st.randoms(use_true_random=False))
def test_the_hash_does_not_depend_on_key_order(body: dict[str, Any], rng: random.Random) -> None:
    other = shuffled(body, rng)
    for algorithm in ("sha256", "blake3"):
        assert snapshot_hash(other, algorithm) == snapshot_hash(body, algorithm)


# --- valid snapshots ------------------------------------------------------------------------------

ids = st.text(min_size=1, max_size=12).filter(lambda s: "," not in s)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
point = finite | st.integers(min_value=-(10**6), max_value=10**6)
stages = st.sampled_from(["backtest", "paper", "live", "Paper", "LIVE", "BackTest"])
actors = st.from_regex(r"[A-Za-z0-9_.-]{1,16}", fullmatch=True)
# Any text but NUL and lone surrogates (the contract refuses them: no store can index them).
versions = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), min_size=1, max_size=40
)


@st.composite
def weights(draw: st.DrawFn) -> dict[str, float]:
    names = draw(st.lists(ids, min_size=1, max_size=20, unique=True))
    raw = draw(st.lists(st.floats(min_value=0.01, max_value=100), min_size=len(names), max_size=len(names)))
    total = sum(raw)
    values = [x / total for x in raw]
    values[-1] = 1.0 - sum(values[:-1])
    return dict(zip(names, values, strict=True))


@st.composite
def snapshots(draw: st.DrawFn) -> dict[str, Any]:
    """A valid snapshot body (headers chosen separately)."""
    w = draw(weights())
    body: dict[str, Any] = {
        "as_of": draw(st.sampled_from(["2025-01-01T00:00:00Z", "2025-01-01T09:00:00+09:00", "2024-02-29"])),
        "version": draw(versions),
        "weights": w,
    }
    optional = {
        "ttl_sec": st.integers(min_value=1, max_value=86_400),
        "realized_returns": st.dictionaries(
            ids, st.lists(point, min_size=1, max_size=5), min_size=1, max_size=4
        )
        | st.lists(point, min_size=1, max_size=5),
        # metric names other than "shocks" (a mapping id -> return, checked against weights)
        "stress": st.dictionaries(
            ids, st.dictionaries(ids.filter(lambda k: k != "shocks"), finite, max_size=3), max_size=3
        ),
        "constraints": st.dictionaries(text, json_values, max_size=3),
        "covariance": st.just({f"{a},{a}": 0.01 for a in w}),
        "x_extra": json_values,
        "hash": st.none(),
        "created_at": st.just("2000-01-01T00:00:00Z"),
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    if draw(st.booleans()):
        body["provenance"] = draw(
            st.dictionaries(ids.filter(lambda k: k not in ("actor", "stage")), json_values)
        )
    return body


@settings(max_examples=150, deadline=None)
@given(snapshots(), actors, st.none() | stages)
def test_normalizing_a_normalized_snapshot_changes_nothing(
    body: dict[str, Any], actor: str, stage: str | None
) -> None:
    first = normalize_snapshot(body, world_id="w1", actor=actor, stage=stage)
    second = normalize_snapshot(first.body, world_id="w1", actor=actor, stage=stage)
    assert second.body == first.body
    assert second.digests == first.digests
    assert canonical_json(second.body) == canonical_json(first.body) == reference(first.body)
    assert first.hash == first.digests["sha256"]
    assert first.body["provenance"]["actor"] == actor
    assert first.body["provenance"].get("stage", "absent") == (stage or "absent").lower()


@settings(max_examples=100, deadline=None)
@given(snapshots(), actors, st.none() | stages, st.sampled_from(["sha256", "blake3"]))
def test_a_producer_hash_computed_like_the_hub_is_accepted(
    body: dict[str, Any], actor: str, stage: str | None, algorithm: str
) -> None:
    snap = normalize_snapshot(body, world_id="w1", actor=actor, stage=stage)
    claimed = snapshot_hash(snap.body, algorithm)
    again = normalize_snapshot({**body, "hash": claimed}, world_id="w1", actor=actor, stage=stage)
    assert again.hash == claimed


def test_the_runbook_sample_gives_the_design_vector() -> None:
    snap = normalize_snapshot(sample_snapshot(), world_id="w1", actor="gateway", stage="paper")
    assert canonical_json(snap.body) == VECTOR_TEXT.encode()
    assert reference(snap.body) == VECTOR_TEXT.encode()
    assert snap.digests == {"sha256": VECTOR_SHA256}  # blake3 only when a producer sends it
    assert digest(canonical_json(snap.body), "blake3") == VECTOR_BLAKE3
    assert snap.hash == VECTOR_SHA256
    assert snapshot_hash(json.loads(VECTOR_TEXT), "blake3") == VECTOR_BLAKE3


@pytest.mark.parametrize("claimed", [VECTOR_BLAKE3, VECTOR_SHA256])
def test_the_design_vector_hash_is_accepted_as_sent(claimed: str) -> None:
    body = sample_snapshot(hash=claimed)
    assert normalize_snapshot(body, world_id="w1", actor="gateway", stage="Paper").hash == claimed


def test_the_vector_does_not_depend_on_where_actor_and_stage_come_from() -> None:
    from_headers = sample_snapshot(provenance={})
    snap = normalize_snapshot(from_headers, world_id="w1", actor="gateway", stage="PAPER")
    assert digest(canonical_json(snap.body), "blake3") == VECTOR_BLAKE3
    from_body = normalize_snapshot(sample_snapshot(), world_id="w1")
    assert from_body.digests["sha256"] == VECTOR_SHA256


# Text that looks like orjson's tiny floats, where the respelling must not reach (inside strings),
# and numbers that only contain the marker (10.00001).
number_like_text = st.sampled_from(
    ["0.00001", "x:0.00001", "[0.0000393,", "1.5e-7", "e-5", ":-0.00002]", "a\\0.00001", '"0.00001"']
)
tiny_values = st.floats(min_value=1e-10, max_value=1e-4) | st.floats(min_value=-1e-4, max_value=-1e-10)
marker_holders = st.sampled_from([10.00001, -10.00001, 100.00003, 20.000015, 1e-4, 1.5e-7])


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        number_like_text | text,
        st.lists(tiny_values | marker_holders | number_like_text, max_size=30) | tiny_values,
        max_size=12,
    )
)
@example({"0.00001": [3.93e-05, "x:0.00001", 1.5e-07], "y": 10.00001})
@example({"[0.0000393,": 4.2e-05})
def test_tiny_floats_are_respelled_only_outside_strings(value: Any) -> None:
    assert canonical_json(value) == reference(value)


def test_a_numpy_producers_covariance_is_exactly_json_dumps() -> None:
    rng = random.Random(7)
    ids = [f"s{i:03d}" for i in range(20)]
    cov = {f"{a},{b}": rng.gauss(0, 4e-5) for a in ids for b in ids}
    doc = {"covariance": cov, "weights": {a: rng.random() / 20 for a in ids}, "tiny": [1e-5, 9.9e-5, 1e-10]}
    assert canonical_json(doc) == reference(doc)


full_precision = st.floats(min_value=-1, max_value=1, allow_nan=False).filter(lambda x: abs(x) > 1e-300)


@settings(max_examples=200, deadline=None)
@given(st.lists(full_precision | integers, max_size=20))
@example([0.0012345678901234567, 2**64, -(2**63) - 1, 18446744073709551615])
@example([1.2345678901234567e-05, 12345678901234567890123])
def test_loads_exact_parses_as_json_loads(values: list[Any]) -> None:
    text = json.dumps({"v": values})
    parsed = loads_exact(text.encode())
    assert parsed == json.loads(text)
    assert [type(v) for v in parsed["v"]] == [type(v) for v in values]

"""`make profile` charges each py-spy sample to the innermost step its stack is in, within the
phase (HTTP request, relay, consumer, risk workers) that runs it."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import stacks  # bench/ is a directory of scripts, not a package

LOOP = "run_forever (asyncio/base_events.py:608);_run_once (asyncio/base_events.py:1922)"
REQUEST = f"{LOOP};run_asgi (uvicorn/protocols/http/httptools_impl.py:401);app (starlette/routing.py:73)"
WRITE = (
    f"{REQUEST};post_snapshot (riskhub/api/routes.py:130);write_snapshot (riskhub/hub.py:122)"
    ";_validate (riskhub/hub.py:163);normalize_snapshot (riskhub/contract/__init__.py:190)"
)
WORKER = (
    f"{LOOP};_consume (riskhub/bus/consumer.py:210);extended_validation (riskhub/risk/workers.py:85)"
    ";verify_hash (riskhub/contract/hashing.py:81)"
)
RAW = "\n".join(
    [
        f"{WRITE};canonical_json (riskhub/contract/canonical.py:45) 30",
        f"{WRITE};canonical_json (riskhub/contract/canonical.py:60);_respell_tiny_floats "
        "(riskhub/contract/canonical.py:80) 10",
        f"{WRITE};digest (riskhub/contract/hashing.py:50) 4",
        f"{REQUEST};parse_dict (riskhub/api/bench.py:30);loads (json/__init__.py:346);decode "
        "(json/decoder.py:337) 7",
        f"{WORKER};snapshot_hash (riskhub/contract/hashing.py:58);canonical_json "
        "(riskhub/contract/canonical.py:45) 20",
        f"{WORKER};helper (somewhere/else.py:3) 3",
        "_bootstrap (threading.py:1002);mystery (somewhere/else.py:3) 2",
        f"{LOOP};select (selectors.py:468) 5",
        "not a sample line",
        "",
    ]
)


def test_a_sample_is_charged_to_its_innermost_step_in_its_innermost_phase() -> None:
    counts = stacks.charge(stacks.parse_raw(RAW))
    canonical = "canonical JSON (orjson + float respelling)"
    assert counts == {
        ("HTTP request", canonical): 40,
        ("HTTP request", "hash digest"): 4,
        ("HTTP request", "json.loads (stdlib)"): 7,
        ("risk workers", canonical): 20,  # canonical JSON, though called under verify_hash
        ("risk workers", "other contract rules"): 3,  # an unknown callee: its caller's step
        (stacks.EVENT_LOOP, "asyncio"): 5,
        (stacks.EVENT_LOOP, stacks.OTHER): 2,
    }


def test_the_samples_no_step_explains_are_listed_by_their_innermost_frame() -> None:
    assert stacks.unexplained(stacks.parse_raw(RAW)) == [("mystery (somewhere/else.py)", 2)]


def test_a_frame_without_a_file_keeps_its_text_and_matches_no_path_rule() -> None:
    (sample,) = stacks.parse_raw("<native code>;weird frame (no line) 3")
    assert sample.frames == (("<native code>", ""), ("weird frame", "no line"))
    assert stacks.innermost(sample.frames, stacks.STEPS, stacks.OTHER) == stacks.OTHER

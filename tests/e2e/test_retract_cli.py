"""`riskhub snapshots retract` against a real `riskhub serve`: the serving process forgets the
version at once (its in-process cache included), and the command says what it did."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx

from live_hub import operator_env, run_riskhub

from conftest import SAMPLE, TOKEN, ServerProcess

HEADERS = {"authorization": f"Bearer {TOKEN}", "x-actor": "gateway", "x-stage": "paper"}


def test_retract_takes_a_version_out_of_latest(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    url = f"{server.url}/risk-hub/worlds/w1/snapshots"
    for version, as_of in (("v1", "2025-01-01T00:00:00Z"), ("v2", "2025-01-02T00:00:00Z")):
        body = {**json.loads(SAMPLE.read_text()), "version": version, "as_of": as_of, "ttl_sec": 3600}
        assert httpx.post(url, json=body, headers=HEADERS).status_code == 201
    assert httpx.get(f"{url}/latest", headers=HEADERS).json()["version"] == "v2"  # now cached
    env = operator_env(HUB_TOKEN=TOKEN, WS_URL=server.url)
    args = ("snapshots", "retract", "--world", "w1", "--version", "v2", "--reason", "wrong prices")
    done = run_riskhub(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("retracted w1/v2 (sha256:") and "wrong prices" in done.stdout
    assert httpx.get(f"{url}/latest", headers=HEADERS).json()["version"] == "v1"
    again = run_riskhub(*args, env=env)
    assert again.returncode == 2 and "already retracted" in again.stderr
    missing = run_riskhub(
        "snapshots", "retract", "--world", "w1", "--version", "v9", "--reason", "x", env=env
    )
    assert missing.returncode == 2 and "v9" in missing.stderr

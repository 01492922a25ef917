"""Backfill from the store into Redis, through the runbook's script with the runbook's flags."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from conftest import ROOT, Production, sample_snapshot
from services import free_port


def run_backfill(
    production: Production, *args: str, redis: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RISKHUB_DATABASE_SCHEMA": production.namespace,
        "RISKHUB_CACHE_PREFIX": f"{production.namespace}:",
    }
    script = ROOT / "scripts/backfill_risk_snapshots.py"
    redis_url = redis or production.redis.url
    command = [sys.executable, str(script), "--dsn", production.postgres.dsn, "--redis", redis_url]
    return subprocess.run([*command, *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("backend", [{"backend": "production"}])
async def test_backfill_repopulates_the_cache_from_the_store(
    make_hub: Callable[..., Any], production: Production
) -> None:
    async with make_hub(**production.settings()) as hub:
        for world, version, as_of in (
            ("w1", "a", "2025-01-01"),
            ("w1", "b", "2025-01-02"),
            ("w2", "c", "2025-01-01"),
        ):
            body = sample_snapshot(version=version, as_of=f"{as_of}T00:00:00Z", ttl_sec=3600)
            assert (await hub.post(world, body)).status_code == 201
    client = aioredis.Redis.from_url(production.redis.url)
    keys = [k async for k in client.scan_iter(f"{production.namespace}:latest:*")]
    await client.delete(*keys)

    result = run_backfill(production, "--world", "w1", "--world", "w2", "--world", "nobody")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "backfilled 3 worlds: 4 cache entries, 0 events re-emitted, 1 skipped",
        "skipped nobody: no snapshot",
    ]
    cached = await client.get(f"{production.namespace}:latest:w1")
    assert cached is not None and b'["w1","b",' in cached.split(b"\n", 1)[0]
    assert await client.exists(f"{production.namespace}:latest:w1:paper")

    again = run_backfill(production, "--all", "--re-emit")
    assert again.returncode == 0, again.stderr
    assert "backfilled 2 worlds" in again.stdout and "2 events re-emitted" in again.stdout
    await client.aclose()


@pytest.mark.parametrize("backend", [{"backend": "production"}])
async def test_backfill_skips_an_expired_latest_says_so_and_fails_on_an_unreachable_cache(
    make_hub: Callable[..., Any], production: Production
) -> None:
    async with make_hub(**production.settings()) as hub:
        assert (await hub.post("w1", sample_snapshot(version="short", ttl_sec=1))).status_code == 201
    await asyncio.sleep(1.2)  # expired: nothing to write, the cache keeps no expired snapshot

    live = run_backfill(production, "--world", "w1", "--re-emit")
    assert live.returncode == 0, live.stderr
    [summary, skipped] = live.stdout.splitlines()
    assert summary == "backfilled 1 worlds: 0 cache entries, 0 events re-emitted, 1 skipped"
    assert re.fullmatch(r"skipped w1: its latest snapshot \(short\) expired at 20\d\d-.*Z", skipped)

    down = run_backfill(production, "--world", "w1", redis=f"redis://127.0.0.1:{free_port()}")
    assert (down.returncode, down.stdout.strip()) == (2, "")
    assert down.stderr.startswith("error: cache: ") and len(down.stderr.strip().splitlines()) == 1


def test_backfill_needs_worlds_and_redis(production: Production) -> None:
    no_world = run_backfill(production)
    assert no_world.returncode == 2 and "--world" in no_world.stderr

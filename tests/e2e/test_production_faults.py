"""Real `riskhub serve` processes on PostgreSQL + Redis + S3, with those services stopped and
restarted under them. Each fault test starts its own services so the rest of the suite is
undisturbed."""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import SAMPLE, TOKEN, Production, ServerProcess
from services import start_postgres, start_redis, start_s3

AUTH = {"authorization": f"Bearer {TOKEN}"}
WRITE = {**AUTH, "x-actor": "gateway", "x-stage": "paper", "content-type": "application/json"}


def body(version: str, *, weights: dict[str, float] | None = None, **extra: Any) -> bytes:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    doc.update(version=version, ttl_sec=3600, **extra)
    if weights is not None:
        doc["weights"] = weights
    return json.dumps(doc).encode()


def post(server: ServerProcess, world: str, content: bytes) -> httpx.Response:
    return httpx.post(
        f"{server.url}/risk-hub/worlds/{world}/snapshots", content=content, headers=WRITE, timeout=15
    )


def get(server: ServerProcess, path: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers=AUTH, params=params, timeout=15)


def metric_sum(server: ServerProcess, name: str) -> float:
    total = 0.0
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for(check: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


@pytest.fixture
def own_services(tmp_path: Path) -> Iterator[Production]:
    """Dedicated PostgreSQL, Redis and S3 for one fault test."""
    (tmp_path / "svc").mkdir()
    pg, redis, s3 = (
        start_postgres(tmp_path / "svc"),
        start_redis(tmp_path / "svc"),
        start_s3(tmp_path / "svc"),
    )
    s3.create_bucket("riskhub-test")
    try:
        yield Production(pg, redis, s3, "public")
    finally:
        for svc in (pg, redis, s3):
            svc.destroy()


def production_server(
    server_factory: Callable[..., ServerProcess], services: Production, **env: str
) -> ServerProcess:
    settings = services.env()
    settings.pop("RISKHUB_DATABASE_SCHEMA") if services.namespace == "public" else None
    return server_factory(
        **settings,
        AWS_ACCESS_KEY_ID=services.s3.access_key,
        AWS_SECRET_ACCESS_KEY=services.s3.secret_key,
        **env,
    )


def test_redis_down_reads_and_writes_use_the_store_and_the_cache_refills(
    server_factory: Callable[..., ServerProcess], own_services: Production
) -> None:
    server = production_server(server_factory, own_services)
    assert post(server, "w1", body("v1")).status_code == 201
    own_services.redis.stop()
    assert post(server, "w1", body("v2", as_of="2025-01-02T00:00:00Z")).status_code == 201
    latest = get(server, "/risk-hub/worlds/w1/snapshots/latest")
    assert latest.status_code == 200 and latest.json()["version"] == "v2"
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["checks"]["cache"].startswith("down")
    assert metric_sum(server, 'risk_hub_cache_requests_total{result="error"}') >= 1
    own_services.redis.start()
    hits_before = metric_sum(server, 'risk_hub_cache_requests_total{result="hit"}')
    assert get(server, "/risk-hub/worlds/w1/snapshots/latest").json()["version"] == "v2"  # miss, refill
    assert get(server, "/risk-hub/worlds/w1/snapshots/latest").json()["version"] == "v2"  # hit
    assert metric_sum(server, 'risk_hub_cache_requests_total{result="hit"}') == hits_before + 1
    assert httpx.get(f"{server.url}/readyz").json()["status"] == "ok"


def test_postgres_down_writes_get_503_and_the_hub_recovers_by_itself(
    server_factory: Callable[..., ServerProcess], own_services: Production
) -> None:
    server = production_server(server_factory, own_services)
    assert post(server, "w1", body("v1")).status_code == 201
    own_services.postgres.stop()
    refused = post(server, "w1", body("v2", as_of="2025-01-02T00:00:00Z"))
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["error"]["code"] == "store_unavailable"
    assert "nothing was written" in refused.json()["error"]["message"]
    history = get(server, "/risk-hub/worlds/w1/snapshots")  # a read wrote nothing to begin with
    assert history.status_code == 503 and "written" not in history.json()["error"]["message"]
    assert httpx.get(f"{server.url}/readyz").status_code == 503
    scrape = httpx.get(f"{server.url}/metrics")  # the 5xx burst must stay visible meanwhile
    assert scrape.status_code == 200
    assert 'status="503"' in scrape.text
    own_services.postgres.start()
    wait_for(lambda: post(server, "w1", body("v2", as_of="2025-01-02T00:00:00Z")).status_code == 201)
    history = get(server, "/risk-hub/worlds/w1/snapshots").json()["snapshots"]
    assert [s["version"] for s in history] == ["v2", "v1"]  # nothing half-written, nothing lost
    wait_for(lambda: metric_sum(server, "risk_hub_snapshot_processed_total") == 2)


def test_s3_unreachable_large_posts_get_503_small_ones_succeed(
    server_factory: Callable[..., ServerProcess], own_services: Production
) -> None:
    server = production_server(server_factory, own_services, RISKHUB_INLINE_COV_THRESHOLD="1024")
    ids = [f"s{i}" for i in range(12)]
    big = body(
        "big", weights={i: 1 / 12 for i in ids}, covariance={f"{a},{b}": 0.02 for a in ids for b in ids}
    )
    own_services.s3.stop()
    refused = post(server, "w1", big)
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "blob_store_unavailable"
    assert post(server, "w1", body("small")).status_code == 201
    assert get(server, "/risk-hub/worlds/w1/snapshots/lookup", version="big").status_code == 404
    own_services.s3.start()
    assert post(server, "w1", big).status_code == 201
    expanded = get(server, "/risk-hub/worlds/w1/snapshots/lookup", version="big", expand="true").json()
    assert expanded["covariance"]["s0,s1"] == 0.02


def test_two_hub_processes_share_one_database_without_duplicates_or_losses(
    server_factory: Callable[..., ServerProcess], production: Production
) -> None:
    env = {**production.env(), "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    servers = [server_factory(**env), server_factory(**env)]
    worlds = [f"w{i}" for i in range(4)]
    jobs = []
    for n in range(30):
        world = worlds[n % 4]
        jobs.append((servers[n % 2], world, body(f"v{n // 4:03d}", as_of=f"2025-01-01T00:00:{n:02d}Z")))
        jobs.append((servers[(n + 1) % 2], world, body(f"v{n // 4:03d}", as_of=f"2025-01-01T00:00:{n:02d}Z")))
    conflicting = [(servers[0], "w0", body("v000", weights={"strategy_a": 0.5, "strategy_b": 0.5}))]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda job: post(*job).status_code, jobs + conflicting))
    # Each snapshot is sent twice, once to each process: exactly one 201 and one 200 per pair.
    pairs = [sorted(statuses[i : i + 2]) for i in range(0, len(jobs), 2)]
    assert pairs == [[200, 201]] * 30
    assert statuses[-1] == 409
    for world in worlds:
        history = get(servers[0], f"/risk-hub/worlds/{world}/snapshots", limit=100).json()["snapshots"]
        assert (
            len(history)
            == len({h["version"] for h in history})
            == sum(1 for n in range(30) if n % 4 == worlds.index(world))
        )
    wait_for(lambda: sum(metric_sum(s, "risk_hub_outbox_published_total") for s in servers) >= 30)
    time.sleep(1.5)  # a late duplicate publication would show up now
    assert sum(metric_sum(s, "risk_hub_outbox_published_total") for s in servers) == 30
    assert sum(metric_sum(s, "risk_hub_snapshot_processed_total") for s in servers) == 30
    assert sum(metric_sum(s, "risk_hub_snapshot_dedupe_total") for s in servers) == 30  # the 200s

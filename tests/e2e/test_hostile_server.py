"""Hostile input against a real `riskhub serve` over real sockets: the connection stays usable
after a 4xx, a 15 MB write does not stall the event loop, and a burst of huge refused bodies
does not keep the memory it took."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from conftest import SAMPLE, TOKEN, ServerProcess

HEADERS = {"authorization": f"Bearer {TOKEN}", "x-actor": "gateway", "x-stage": "paper"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_the_connection_stays_usable_after_every_4xx(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    sample = json.loads(SAMPLE.read_text())
    deep = json.dumps(sample)[:-1].encode() + b',"constraints":{"d":' + b"[" * 990 + b"]" * 990 + b"}}"
    bad_bodies = [
        (deep, 400),
        (b'{"version":"v1","version":"v2"}', 400),
        (json.dumps({**sample, "as_of": "9999-01-01T00:00:00Z"}).encode(), 422),
        (b"{not json", 400),
    ]
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for body, status in bad_bodies:
            connection.request("POST", "/risk-hub/worlds/w1/snapshots", body=body, headers=HEADERS)
            response = connection.getresponse()
            assert (response.status, response.getheader("connection")) == (status, None), response.read()
            response.read()
            socket_before = connection.sock
            connection.request("GET", "/healthz")  # the same socket, kept alive
            health = connection.getresponse()
            assert health.status == 200 and health.read() == b'{"status":"ok"}'
            assert connection.sock is socket_before
    finally:
        connection.close()


def test_healthz_answers_within_250_ms_during_a_15_mb_write(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    sample = json.loads(SAMPLE.read_text())
    ids = [f"id{i:05d}" for i in range(1000)]
    series = [0.000123456789012 * (i % 7) for i in range(1000)]  # full precision, as numpy writes them
    body = {**sample, "weights": dict.fromkeys(ids, 1 / 1000), "realized_returns": dict.fromkeys(ids, series)}
    raw = json.dumps(body).encode()
    assert len(raw) > 15_000_000
    answers: list[int] = []

    def write() -> None:
        response = httpx.post(
            f"{server.url}/risk-hub/worlds/w1/snapshots", content=raw, headers=HEADERS, timeout=120
        )
        answers.append(response.status_code)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(0.3)  # the body is on its way or being validated
    worst = 0.0
    while writer.is_alive():
        started = time.monotonic()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        worst = max(worst, time.monotonic() - started)
        time.sleep(0.05)
    writer.join()
    assert answers == [201]
    assert worst < 0.25, f"/healthz took {worst * 1000:.0f} ms during the write"
    print(f"\nslowest /healthz during a {len(raw) / 1e6:.1f} MB write: {worst * 1000:.0f} ms")


def test_a_burst_of_huge_refused_covariances_gives_its_memory_back(
    server_factory: Callable[..., ServerProcess],
) -> None:
    server = server_factory()
    assert server.proc is not None
    sample = json.loads(SAMPLE.read_text())
    ids = [f"i{i}" for i in range(548)]  # 548 x 548 = 300,304 keys
    weights = dict.fromkeys(ids, 1 / len(ids))
    httpx.get(f"{server.url}/healthz")
    start = rss_mb(server.proc.pid)
    for n in range(8):  # each answered 422: one key names an id not in weights
        covariance = {f"{a},{b}": 0.01 for a in ids for b in ids}
        covariance[f"i0,zz{n}"] = 0.01
        body = json.dumps(
            {**sample, "version": f"v{n}", "weights": weights, "covariance": covariance}
        ).encode()
        response = httpx.post(
            f"{server.url}/risk-hub/worlds/w1/snapshots", content=body, headers=HEADERS, timeout=120
        )
        assert response.status_code == 422, response.text
    time.sleep(1)
    end = rss_mb(server.proc.pid)
    print(f"\nRSS {start:.0f} MB before, {end:.0f} MB after 8 refused 300,000-key covariances")
    assert end - start < 50, (start, end)

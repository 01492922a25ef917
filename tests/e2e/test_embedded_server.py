"""A real `riskhub serve` process on embedded defaults, spoken to over real HTTP."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from conftest import SAMPLE, TOKEN, ServerProcess
from services import free_port, tcp_accepts

HEADERS = {
    "authorization": f"Bearer {TOKEN}",
    "x-actor": "gateway",
    "x-stage": "paper",
    "content-type": "application/json",
}


def post(server: ServerProcess, world: str, body: bytes) -> httpx.Response:
    return httpx.post(f"{server.url}/risk-hub/worlds/{world}/snapshots", content=body, headers=HEADERS)


def latest(server: ServerProcess, world: str) -> httpx.Response:
    return httpx.get(
        f"{server.url}/risk-hub/worlds/{world}/snapshots/latest",
        headers={"authorization": f"Bearer {TOKEN}"},
    )


def metric(server: ServerProcess, line_prefix: str) -> float:
    for line in httpx.get(f"{server.url}/metrics").text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_runbook_sample_lifecycle(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory()
    sample = SAMPLE.read_bytes()
    assert post(server, "w1", sample).status_code == 201
    dedupe = 'risk_hub_snapshot_dedupe_total{stage="paper",world_id="w1"}'
    assert metric(server, dedupe) == 0
    assert post(server, "w1", sample).status_code == 200
    assert metric(server, dedupe) == 1
    other = json.loads(sample)
    other["weights"] = {"strategy_a": 0.5, "strategy_b": 0.5}
    assert post(server, "w1", json.dumps(other).encode()).status_code == 409
    assert latest(server, "w1").json()["version"] == "v1"
    short = json.loads(sample)
    short.update(version="short-lived", as_of="2025-01-02T00:00:00Z", ttl_sec=1)
    assert post(server, "w1", json.dumps(short).encode()).status_code == 201
    assert latest(server, "w1").json()["version"] == "short-lived"
    time.sleep(1.2)
    expired = latest(server, "w1")
    assert expired.status_code == 404
    assert "short-lived" in expired.json()["error"]["message"]


def snapshot_body(index: int) -> bytes:
    doc: dict[str, Any] = json.loads(SAMPLE.read_text())
    doc.update(version=f"v{index:04d}", as_of=f"2025-01-01T00:{index // 60:02d}:{index % 60:02d}Z")
    doc["ttl_sec"] = 3600
    return json.dumps(doc).encode()


def outbox_and_effects(db: Path) -> tuple[int, int, int, int]:
    """(snapshots, outbox rows, published outbox rows, processed keys)."""
    with sqlite3.connect(db) as conn:
        return (
            conn.execute("SELECT count(*) FROM risk_snapshots").fetchone()[0],
            conn.execute("SELECT count(*) FROM risk_outbox").fetchone()[0],
            conn.execute("SELECT count(*) FROM risk_outbox WHERE status = 'published'").fetchone()[0],
            conn.execute("SELECT count(*) FROM risk_processed WHERE outcome = 'processed'").fetchone()[0],
        )


def wait_for(check: Callable[[], bool], timeout_s: float = 15) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.1)


def test_crash_and_restart_keep_every_snapshot_and_event(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_factory()
    accepted = [i for i in range(120) if post(server, "w-crash", snapshot_body(i)).status_code == 201]
    assert len(accepted) == 120
    server.stop(signal.SIGKILL)  # no shutdown hook runs: committed state only
    server.start()
    db = tmp_path / "server-data" / "riskhub.sqlite3"
    versions = httpx.get(
        f"{server.url}/risk-hub/worlds/w-crash/snapshots",
        params={"limit": 1000},
        headers={"authorization": f"Bearer {TOKEN}"},
    ).json()["snapshots"]
    assert len(versions) == 120
    assert latest(server, "w-crash").json()["version"] == "v0119"
    wait_for(lambda: outbox_and_effects(db)[2] == 120)
    wait_for(lambda: outbox_and_effects(db)[3] == 120)
    # one outbox row per snapshot, each published, each event's effects recorded once
    assert outbox_and_effects(db) == (120, 120, 120, 120)


def test_serve_without_settings_generates_a_token_and_accepts_writes(tmp_path: Path) -> None:
    # What `make run` does on a fresh machine: no RISKHUB_* at all.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RISKHUB_")}
    port = free_port()
    with subprocess.Popen(
        [sys.executable, "-m", "riskhub.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as proc:
        try:
            token = read_generated_token(proc)
            wait_for(lambda: tcp_accepts(port))
            response = httpx.post(
                f"http://127.0.0.1:{port}/risk-hub/worlds/w1/snapshots",
                content=SAMPLE.read_bytes(),
                headers={**HEADERS, "authorization": f"Bearer {token}"},
            )
            assert response.status_code == 201, response.text
            assert (tmp_path / "riskhub-data" / "riskhub.sqlite3").exists()
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def read_generated_token(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    for line in proc.stdout:
        if "generated read-write token" in line:
            return line.rsplit(" ", 1)[1].strip()
    raise AssertionError("serve printed no generated token")
